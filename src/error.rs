//! The one error type of the crate.
//!
//! Every fallible call returns [`Result<T>`]. Bad input is reported before any
//! GPU work is encoded, with the offending values in the message; errors that
//! only wgpu can see (validation, out of memory, a lost device) are captured
//! with error scopes and returned here instead of reaching wgpu's default
//! handler, which panics.

/// Shorthand for `std::result::Result<T, wgpu_norm::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `wgpu-norm`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter matched the request (backend, adapter name).
    #[error(
        "no GPU adapter found ({wanted}); on a machine without a GPU driver install Mesa's software adapters: `apt-get install mesa-vulkan-drivers` (Vulkan, lavapipe) and select one with WGPU_BACKEND=vulkan or WGPU_BACKEND=gl"
    )]
    NoAdapter {
        /// What was asked for, e.g. `backends VULKAN, name containing "llvmpipe"`.
        wanted: String,
    },

    /// The adapter refused to create a device.
    #[error("could not create a device on adapter {adapter:?}: {source}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        source: wgpu::RequestDeviceError,
    },

    /// A call that needs a tensor (by its ONNX role) did not get it.
    #[error("the call needs the tensor {what}, and none was given")]
    MissingTensor {
        /// The tensor's role: `Y`, `dY`, `dX`.
        what: &'static str,
    },

    /// A name given for a backend is not one of wgpu's.
    #[error("unknown backend {0:?}: expected one of vulkan, gl, metal, dx12")]
    UnknownBackend(String),

    /// A shape has no elements or a zero dimension.
    #[error("shape {shape:?} is empty: every dimension must be at least 1")]
    EmptyShape {
        /// The shape given.
        shape: Vec<usize>,
    },

    /// A shape holds more elements than the address space can count.
    #[error("shape {shape:?} holds more elements than can be counted ({bits}-bit usize)")]
    ShapeOverflow {
        /// The shape given.
        shape: Vec<usize>,
        /// The width of `usize` on this machine.
        bits: u32,
    },

    /// A target description (`export::Target::from_json`) or export request
    /// that cannot be used.
    #[error("cannot plan for that target: {0}")]
    InvalidTarget(String),

    /// Data and shape disagree on the number of elements.
    #[error("{what}: shape {shape:?} holds {expected} elements but {actual} were given")]
    LengthMismatch {
        /// Which tensor.
        what: &'static str,
        /// The shape given.
        shape: Vec<usize>,
        /// Elements the shape holds.
        expected: usize,
        /// Elements given.
        actual: usize,
    },

    /// Two tensors that must agree in shape do not.
    #[error("{what}: expected shape {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// Which tensor.
        what: &'static str,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape it has.
        actual: Vec<usize>,
    },

    /// The normalisation axis is outside the tensor's rank.
    #[error("axis {axis} is out of range for a tensor of rank {rank} (valid: {} ..= {})", -(*rank as isize), *rank as isize - 1)]
    AxisOutOfRange {
        /// The axis given (negative counts from the end).
        axis: isize,
        /// The tensor's rank.
        rank: usize,
    },

    /// Epsilon must be finite and not negative.
    #[error("epsilon must be finite and >= 0, got {0}")]
    InvalidEpsilon(f32),

    /// A buffer is too small for the tensor placed in it.
    #[error(
        "{what}: the tensor needs bytes {offset}..{end} but the buffer holds {buffer_size} bytes"
    )]
    BufferTooSmall {
        /// Which tensor.
        what: &'static str,
        /// Byte offset of the tensor in its buffer.
        offset: u64,
        /// One past the last byte the tensor needs.
        end: u64,
        /// The buffer's size in bytes.
        buffer_size: u64,
    },

    /// A buffer lacks a usage flag the operation needs.
    #[error("{what}: the buffer needs usage {needed:?} but has {actual:?}")]
    MissingUsage {
        /// Which tensor.
        what: &'static str,
        /// The usages needed.
        needed: wgpu::BufferUsages,
        /// The usages the buffer was created with.
        actual: wgpu::BufferUsages,
    },

    /// A tensor's byte offset in its buffer is not a multiple of its element size.
    #[error("{what}: byte offset {offset} is not a multiple of {alignment} (the element size)")]
    MisalignedOffset {
        /// Which tensor.
        what: &'static str,
        /// The offset given.
        offset: u64,
        /// The alignment needed.
        alignment: u64,
    },

    /// The device's limits are too low for an operation.
    #[error("{what} needs {limit} >= {needed}, but the device has {actual}")]
    LimitTooLow {
        /// The operation.
        what: &'static str,
        /// The limit, as wgpu names it.
        limit: &'static str,
        /// The value needed.
        needed: u64,
        /// The device's value.
        actual: u64,
    },

    /// A backward was given one of the forward's saved statistics without the other.
    #[error(
        "the backward was given the saved {given} but not {missing}: pass both, or neither to recompute them"
    )]
    IncompleteStats {
        /// The statistic given.
        given: &'static str,
        /// The statistic missing.
        missing: &'static str,
    },

    /// Tensors of one call hold different element types where they must agree.
    #[error("{what} is {actual} but must be {expected}")]
    DTypeMismatch {
        /// Which tensor.
        what: &'static str,
        /// The type it must have.
        expected: crate::dtype::DType,
        /// The type it has.
        actual: crate::dtype::DType,
    },

    /// Two tensors of one call share a buffer where wgpu forbids it (an input
    /// read while an output of the same buffer is written).
    #[error(
        "{a} and {b} share one wgpu::Buffer; inputs and outputs must live in different buffers"
    )]
    AliasedBuffers {
        /// One tensor.
        a: &'static str,
        /// The other.
        b: &'static str,
    },

    /// A tensor is larger than the device can allocate in one buffer.
    #[error("{what}: {bytes} bytes exceed the device's max_buffer_size of {max} bytes")]
    TensorTooLarge {
        /// Which tensor.
        what: &'static str,
        /// Bytes needed.
        bytes: u64,
        /// The device limit.
        max: u64,
    },

    /// One row does not fit in one storage binding, so no chunking can help.
    #[error(
        "a row of {dim} values ({row_bytes} bytes) does not fit one storage binding of {max_binding} bytes (the device's max_storage_buffer_binding_size, at most 2^31; less the binding offset alignment where the tensors or rows are not aligned to it)"
    )]
    RowTooLarge {
        /// Elements per row.
        dim: usize,
        /// Bytes per row.
        row_bytes: u64,
        /// The device limit.
        max_binding: u64,
    },

    /// An op's parameter is outside what the op defines.
    #[error("{op}: {what} is {value}, but must be {expected}")]
    InvalidParameter {
        /// The op.
        op: &'static str,
        /// The parameter.
        what: &'static str,
        /// The value given.
        value: String,
        /// What it may be.
        expected: String,
    },

    /// A tensor (or the scratch it needs) does not fit one storage binding,
    /// and the op does not split its tensors across bindings.
    #[error(
        "{op}: {what} needs {bytes} bytes in one storage binding, but the device allows {max_binding} (the grouped normalisations do not split a tensor across bindings)"
    )]
    BindingTooLarge {
        /// The op.
        op: &'static str,
        /// The tensor or scratch.
        what: &'static str,
        /// Bytes it needs.
        bytes: u64,
        /// max_storage_buffer_binding_size (at most 2^31).
        max_binding: u64,
    },

    /// The operation needs a device feature the adapter does not offer.
    #[error("{op} needs the device feature {feature}, which adapter {adapter:?} does not offer")]
    MissingFeature {
        /// The operation.
        op: &'static str,
        /// The feature, as wgpu names it.
        feature: &'static str,
        /// The adapter's name.
        adapter: String,
    },

    /// A kernel chosen explicitly cannot run this shape on this adapter.
    #[error("kernel {kernel} cannot run here: {reason}")]
    KernelUnsuitable {
        /// The kernel's name.
        kernel: &'static str,
        /// Why not.
        reason: String,
    },

    /// wgpu reported a validation error.
    #[error("wgpu validation error during {during}: {message}")]
    Validation {
        /// What we were doing.
        during: &'static str,
        /// wgpu's message.
        message: String,
    },

    /// The device ran out of memory.
    #[error("GPU out of memory during {during}: {message}")]
    OutOfMemory {
        /// What we were doing.
        during: &'static str,
        /// wgpu's message.
        message: String,
    },

    /// wgpu reported an internal error (e.g. a shader the driver could not compile).
    #[error("wgpu internal error during {during}: {message}")]
    Internal {
        /// What we were doing.
        during: &'static str,
        /// wgpu's message.
        message: String,
    },

    /// The device was lost (driver reset, device destroyed, …).
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),

    /// Mapping a buffer for reading failed.
    #[error("mapping a buffer for reading failed: {0}")]
    Map(#[from] wgpu::BufferAsyncError),

    /// Waiting on the device failed.
    #[error("waiting for the GPU failed: {0}")]
    Poll(#[from] wgpu::PollError),
}

impl Error {
    /// Converts an error captured by a wgpu error scope.
    pub(crate) fn from_wgpu(during: &'static str, error: wgpu::Error) -> Self {
        match error {
            wgpu::Error::OutOfMemory { source } => Error::OutOfMemory {
                during,
                message: source.to_string(),
            },
            wgpu::Error::Validation { description, .. } => Error::Validation {
                during,
                message: description,
            },
            wgpu::Error::Internal { description, .. } => Error::Internal {
                during,
                message: description,
            },
        }
    }
}
