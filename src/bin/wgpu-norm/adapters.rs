//! `wgpu-norm adapters`: every adapter wgpu finds, on every backend compiled in.

use serde_json::json;

use crate::common::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// One JSON object per adapter, one per line.
    #[arg(long)]
    json: bool,
}

pub fn main(args: Args) -> CliResult {
    let adapters = pollster::block_on(wgpu_norm::Context::adapters(Some(wgpu::Backends::all())));
    if adapters.is_empty() {
        return Err(crate::common::CliError::Failed(
            wgpu_norm::Error::NoAdapter {
                wanted: "any backend".into(),
            }
            .to_string(),
        ));
    }
    for adapter in adapters {
        let info = adapter.get_info();
        let f = adapter.features();
        let l = adapter.limits();
        // The size that runs, from a probe kernel on a device of this adapter.
        let probed = f.contains(wgpu::Features::SUBGROUP).then(|| {
            pollster::block_on(wgpu_norm::Context::from_adapter(
                &adapter,
                &wgpu_norm::ContextOptions::default(),
            ))
            .ok()
            .and_then(|ctx| ctx.capabilities().subgroups)
            .map(|s| s.probed)
        });
        let subgroups = f.contains(wgpu::Features::SUBGROUP).then(|| {
            json!({"min": info.subgroup_min_size, "max": info.subgroup_max_size, "probed": probed.flatten()})
        });
        let report = json!({
            "name": info.name,
            "backend": format!("{:?}", info.backend),
            "device_type": format!("{:?}", info.device_type),
            "driver": info.driver,
            "driver_info": info.driver_info,
            "timestamps": f.contains(wgpu::Features::TIMESTAMP_QUERY),
            "timestamps_inside_passes": f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            "subgroups": subgroups,
            "shader_f16": f.contains(wgpu::Features::SHADER_F16),
            "limits": {
                "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
                "max_buffer_size": l.max_buffer_size,
                "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
                "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
                "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
                "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
                "min_storage_buffer_offset_alignment": l.min_storage_buffer_offset_alignment,
            },
        });
        if args.json {
            println!("{report}");
            continue;
        }
        let yes = |b: bool| if b { "yes" } else { "no" };
        println!("{} ({:?}, {:?})", info.name, info.backend, info.device_type);
        println!("  driver           {} {}", info.driver, info.driver_info);
        println!(
            "  timestamps       {} (inside passes: {})",
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY)),
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES))
        );
        match f.contains(wgpu::Features::SUBGROUP) {
            true => println!(
                "  subgroups        yes, size {}..={} (probed: {})",
                info.subgroup_min_size,
                info.subgroup_max_size,
                probed
                    .flatten()
                    .map_or("could not run".to_string(), |s| s.to_string())
            ),
            false => println!("  subgroups        no"),
        }
        println!(
            "  shader-f16       {}",
            yes(f.contains(wgpu::Features::SHADER_F16))
        );
        println!(
            "  limits           storage binding {} MiB, buffer {} MiB, workgroup memory {} KiB, {} invocations/workgroup, {} workgroups/dimension, {} storage buffers/stage",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension,
            l.max_storage_buffers_per_shader_stage,
        );
    }
    Ok(())
}
