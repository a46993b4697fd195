// Storage type prelude: tensors hold f32. The host puts this file (or
// storage_f16.wgsl) first in every kernel's source; kernels read `elem` values
// into f32, compute in f32, and convert back to `elem` when they store.
alias elem = f32;
