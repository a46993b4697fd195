//! [`DType`]: the element types tensors store — the crate's one leaf that
//! even the error type names.

/// The element type a tensor stores. Kernels always compute in f32; f16 is a
/// storage format (it needs the device feature `SHADER_F16`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    #[default]
    F32,
    /// 16-bit IEEE float (half).
    F16,
}

impl DType {
    /// Bytes per element.
    pub fn size_bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }

    /// The name the CLI and NPY use: `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
