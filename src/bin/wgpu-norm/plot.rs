//! The `bench --plot` chart: GB/s of layer norm and of the copy, per shape.

use plotters::prelude::*;
use wgpu_norm::BenchRow;

/// The chart as SVG text (written by the caller through its outputs).
pub fn bandwidth_svg(
    adapter: &wgpu::AdapterInfo,
    rows: &[BenchRow],
) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    draw(&mut svg, adapter, rows)?;
    Ok(svg)
}

fn draw(
    svg: &mut String,
    adapter: &wgpu::AdapterInfo,
    rows: &[BenchRow],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = rows
        .iter()
        .map(|r| r.gbps.max(r.copy_gbps))
        .fold(0.0, f64::max)
        * 1.15;
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{} ({})", r.shape, r.kernel.split(',').next().unwrap_or("")))
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "layer norm vs copy, {} ({:?})",
                adapter.name, adapter.backend
            ),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..rows.len() as f64, 0.0..top.max(1e-3))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len().max(1))
        .x_label_formatter(&|v| {
            let i = v.floor() as usize;
            labels.get(i).cloned().unwrap_or_default()
        })
        .y_desc("GB/s (x read + y written)")
        .draw()?;
    let bar = |i: usize, offset: f64, value: f64, color: RGBColor| {
        Rectangle::new(
            [(i as f64 + offset, 0.0), (i as f64 + offset + 0.35, value)],
            color.filled(),
        )
    };
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .map(|(i, r)| bar(i, 0.12, r.gbps, BLUE)),
        )?
        .label("layer norm")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], BLUE.filled()));
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .map(|(i, r)| bar(i, 0.5, r.copy_gbps, RGBColor(150, 150, 150))),
        )?
        .label("copy (the floor)")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 5), (x + 10, y + 5)],
                RGBColor(150, 150, 150).filled(),
            )
        });
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}
