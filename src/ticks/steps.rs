//! Timed steps: the measurement loop the bench and the autotuner share.

use crate::context::Context;
use crate::error::Result;
use crate::ticks::profiler::Ticks;
use crate::ticks::record::TimingSource;
use crate::ticks::report::Report;

/// Encodes one pass into a fresh encoder, timed by the ticks.
pub type TickedPass<'a> = dyn FnMut(&mut wgpu::CommandEncoder, &mut Ticks) -> Result<()> + 'a;

/// Runs `warmup` then `steps` steps; each step submits each of `passes` in a
/// submission of its own, timed by ticks (waiting after each submission when
/// the timing is the CPU's, so that a wall-clock time is one submission's).
/// Returns the profiler (warm-up records in scope `warm-up`) and the report
/// of the timed steps.
pub fn ticked_steps(
    ctx: &Context,
    warmup: u64,
    steps: u64,
    passes: &mut [&mut TickedPass<'_>],
) -> Result<(Ticks, Report)> {
    let mut ticks = Ticks::new(ctx, Default::default());
    let cpu_timed = ticks.timing_source() == TimingSource::CpuWallClock;
    for step in 0..warmup + steps {
        ticks.set_step(step);
        if step < warmup {
            let mut scope = ticks.scope("warm-up");
            run_passes(ctx, &mut scope, passes, cpu_timed)?;
        } else {
            run_passes(ctx, &mut ticks, passes, cpu_timed)?;
        }
    }
    ticks.flush()?;
    let timed: Vec<_> = ticks
        .records()
        .into_iter()
        .filter(|r| r.scope.is_empty())
        .collect();
    let report = Report::new(&timed);
    Ok((ticks, report))
}

/// One step: each pass in a submission of its own.
fn run_passes(
    ctx: &Context,
    ticks: &mut Ticks,
    passes: &mut [&mut TickedPass<'_>],
    cpu_timed: bool,
) -> Result<()> {
    for pass in passes.iter_mut() {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        pass(&mut encoder, ticks)?;
        ticks.submit(encoder)?;
        if cpu_timed {
            ctx.wait()?;
        }
    }
    Ok(())
}
