//! `wgpu-norm`: list adapters, run layer norm on the default shape, apply the
//! normalisation ops and their backward passes to NPY files, and check every
//! adapter against the f64 reference.

mod adapters;
mod apply;
mod apply_grouped;
mod bench;
mod check;
mod common;
mod export;
mod output;
mod plot;
mod run;
mod web;

use clap::{Parser, Subcommand};

/// Layer normalisation as WGSL kernels on any GPU, through wgpu.
#[derive(Parser)]
#[command(name = "wgpu-norm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Lists every adapter wgpu finds, with its features and key limits.
    Adapters(adapters::Args),
    /// Layer-norm of seeded random data, checked against the f64 reference and timed
    /// (the default command).
    Run(run::Args),
    /// Runs an op on NPY files (f32 or f16, C order) with ONNX semantics: layer-norm,
    /// rms-norm (optionally fused with a residual add) and their backward passes.
    Apply(Box<apply::Args>),
    /// Runs the op on every adapter and compares each with the reference and the others.
    Check(check::Args),
    /// Layer-norm forward against a copy of the same bytes, per shape, with GPU ticks.
    Bench(bench::Args),
    /// An op's plan as JSON for any WebGPU (a browser's): WGSL, bindings, uniforms, workgroups.
    Export(export::Args),
    /// Serves a page that checks and benchmarks any visitor's GPU through its browser's WebGPU.
    Web(web::Args),
}

fn main() {
    // Rust ignores SIGPIPE, so printing to a closed pipe (`wgpu-norm adapters
    // | head -1`) would panic; with the default action the tool ends quietly,
    // as Unix tools do.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default before any
    // thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run(run::Args::default())) {
        Command::Adapters(args) => adapters::main(args),
        Command::Run(args) => run::main(args),
        Command::Apply(args) => apply::main(*args),
        Command::Check(args) => check::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Export(args) => export::main(args),
        Command::Web(args) => web::main(args),
    };
    if let Err(e) = result {
        eprintln!("wgpu-norm: {e}");
        std::process::exit(e.exit_code());
    }
}
