//! What a device can do: its optional features, subgroup sizes and class —
//! the leaf the plan reads, with no GPU work.

/// Sizes of the adapter's subgroups (SIMD width), as wgpu reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubgroupSizes {
    /// Smallest subgroup the adapter may run.
    pub min: u32,
    /// Largest subgroup the adapter may run.
    pub max: u32,
    /// The size a probe kernel saw run (once per context,
    /// `shaders/subgroup_probe.wgsl`); `min` where it could not run.
    pub probed: u32,
}

/// The optional abilities a device has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// Timestamps at the start and end of compute passes (`TIMESTAMP_QUERY`).
    pub timestamps: bool,
    /// Timestamps between dispatches inside a pass (`TIMESTAMP_QUERY_INSIDE_PASSES`).
    pub timestamps_inside_passes: bool,
    /// Subgroup operations (`SUBGROUP`) and their sizes; `None` without.
    pub subgroups: Option<SubgroupSizes>,
    /// 16-bit floats in shaders (`SHADER_F16`).
    pub shader_f16: bool,
}

impl Capabilities {
    /// Reads the capabilities of a device from its enabled features.
    pub fn of(features: wgpu::Features, info: &wgpu::AdapterInfo) -> Self {
        Capabilities {
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamps_inside_passes: features.contains(
                wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
            ),
            subgroups: features
                .contains(wgpu::Features::SUBGROUP)
                .then_some(SubgroupSizes {
                    min: info.subgroup_min_size,
                    max: info.subgroup_max_size,
                    probed: info.subgroup_min_size,
                }),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
        }
    }
}

/// The optional features this crate asks for when an adapter has them.
pub const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::SHADER_F16);

/// What kind of processor runs the shaders: the plan's first key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdapterClass {
    /// A CPU running the shaders (Mesa's llvmpipe / lavapipe, WARP, SwiftShader).
    Cpu,
    /// Anything else: a GPU.
    Gpu,
}

impl AdapterClass {
    /// The class of an adapter, from its reported device type.
    pub fn of(info: &wgpu::AdapterInfo) -> Self {
        match info.device_type {
            wgpu::DeviceType::Cpu => AdapterClass::Cpu,
            _ => AdapterClass::Gpu,
        }
    }
}
