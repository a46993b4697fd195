//! What the subcommands share: shapes, adapter choice, errors and exit codes.

use std::fmt;

use wgpu_norm::{Context, ContextOptions};

/// A failure, with the exit code it maps to: 2 for bad input (files, shapes,
/// values), 1 for everything else (no adapter, GPU errors, failed checks).
#[derive(Debug)]
pub enum CliError {
    Input(String),
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Input(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(m) | CliError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<wgpu_norm::Error> for CliError {
    fn from(e: wgpu_norm::Error) -> Self {
        use wgpu_norm::Error as E;
        match e {
            E::EmptyShape { .. }
            | E::LengthMismatch { .. }
            | E::ShapeMismatch { .. }
            | E::AxisOutOfRange { .. }
            | E::InvalidEpsilon(_)
            | E::DTypeMismatch { .. }
            | E::IncompleteStats { .. }
            | E::UnknownBackend(_) => CliError::Input(e.to_string()),
            _ => CliError::Failed(e.to_string()),
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// A tensor shape as the CLI spells it: `8x512x768`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape(pub Vec<usize>);

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let dims: Result<Vec<usize>, _> = s.split(['x', 'X']).map(|d| d.trim().parse()).collect();
        match dims {
            Ok(d) if !d.is_empty() && !d.contains(&0) => Ok(Shape(d)),
            _ => Err(format!(
                "{s:?} is not a shape like 8x512x768 (positive integers joined by 'x')"
            )),
        }
    }
}

pub use wgpu_norm::shape_string;

/// Opens the best adapter on `backend` (or as the environment says).
pub fn open(backend: Option<&str>) -> CliResult<Context> {
    open_with(backend, wgpu_norm::Autotune::Off)
}

/// [`open`], autotuning as `autotune` says.
pub fn open_with(backend: Option<&str>, autotune: wgpu_norm::Autotune) -> CliResult<Context> {
    let backends = backend.map(wgpu_norm::parse_backend).transpose()?;
    let options = ContextOptions {
        backends,
        tuner: autotune.hook(),
        ..Default::default()
    };
    Ok(pollster::block_on(Context::with_options(options))?)
}

/// `name (Backend, DeviceType)`.
pub fn adapter_label(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}
