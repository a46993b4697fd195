// Storage type prelude: tensors hold f16 (needs the SHADER_F16 device
// feature). Arithmetic stays f32: kernels convert every loaded value to f32
// and round to f16 only when they store; per-row statistics stay f32.
enable f16;
alias elem = f16;
