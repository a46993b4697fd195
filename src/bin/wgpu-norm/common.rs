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
            | E::ShapeOverflow { .. }
            | E::LengthMismatch { .. }
            | E::ShapeMismatch { .. }
            | E::AxisOutOfRange { .. }
            | E::InvalidEpsilon(_)
            | E::DTypeMismatch { .. }
            | E::IncompleteStats { .. }
            | E::UnknownBackend(_)
            | E::InvalidTarget(_)
            | E::InvalidParameter { .. }
            | E::BindingTooLarge { .. }
            // What the input asks of this adapter, which it cannot give
            // (f16 without shader-f16, a row or tensor past its limits).
            | E::MissingFeature { .. }
            | E::TensorTooLarge { .. }
            | E::RowTooLarge { .. } => CliError::Input(e.to_string()),
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
            Ok(d) if !d.is_empty() && !d.contains(&0) => {
                // Overflow-safe: the values, and their bytes as f64 (the
                // widest copy the tools hold), must be countable.
                let n = d.iter().try_fold(1u64, |n, &v| n.checked_mul(v as u64));
                match n.and_then(|n| n.checked_mul(8)) {
                    Some(_) => Ok(Shape(d)),
                    None => Err(format!(
                        "{s:?} holds more values than can be counted in 64 bits"
                    )),
                }
            }
            _ => Err(format!(
                "{s:?} is not a shape like 8x512x768 (positive integers joined by 'x')"
            )),
        }
    }
}

pub use wgpu_norm::shape_string;

/// Refuses a shape whose tensors would not fit, before anything is allocated:
/// each tensor of `device_tensors` × its values × 4 bytes within the device's
/// `max_buffer_size`, and the `host_bytes_per_value` × values the command
/// holds on the CPU within the memory the machine has available (Linux's
/// MemAvailable; not checked where it cannot be read). The message names
/// the limit; the exit code is 2.
pub fn fit_shape(
    ctx: &Context,
    shape: &[usize],
    device_tensor_values: f64,
    host_bytes_per_value: u64,
) -> CliResult {
    let n = shape.iter().map(|&d| d as u64).product::<u64>();
    let shape_s = shape_string(shape);
    let device_bytes = (n as f64 * device_tensor_values * 4.0).ceil() as u64;
    let max = ctx.limits().max_buffer_size;
    if device_bytes > max {
        return Err(CliError::Input(format!(
            "shape {shape_s} needs a tensor of {device_bytes} bytes, more than the device's max_buffer_size of {max} bytes"
        )));
    }
    fit_host(shape, host_bytes_per_value)
}

/// Refuses a shape whose `host_bytes_per_value` × values would not fit the
/// memory the machine has available (see [`fit_shape`]).
pub fn fit_host(shape: &[usize], host_bytes_per_value: u64) -> CliResult {
    let n = shape.iter().map(|&d| d as u64).product::<u64>();
    if let Some(available) = available_memory() {
        let host = n.saturating_mul(host_bytes_per_value);
        if host > available {
            return Err(CliError::Input(format!(
                "shape {} needs about {host} bytes of host memory, more than the {available} bytes this machine has available",
                shape_string(shape)
            )));
        }
    }
    Ok(())
}

/// MemAvailable from /proc/meminfo, in bytes.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

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
