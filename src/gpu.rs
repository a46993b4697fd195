//! [`Gpu`]: a device, its queue and what they can do, with wgpu's errors
//! caught in error scopes. Everything above it (pipelines, tensors, ops)
//! reaches the device through here.

use std::sync::{Arc, Mutex};

use crate::caps::Capabilities;
use crate::error::{Error, Result};
use crate::shape::DType;

/// A device and its queue, with the adapter's description, the device's
/// limits and its [`Capabilities`]. A [`Context`](crate::Context)
/// dereferences to its `Gpu`.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    capabilities: Capabilities,
    /// Set by the device-lost callback (only on devices we created).
    lost: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl Gpu {
    pub(crate) fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        lost: Arc<Mutex<Option<String>>>,
    ) -> Self {
        let mut capabilities = Capabilities::of(device.features(), &info);
        // The noop backend (plans for another device, `Context::for_planning`)
        // runs nothing: its sizes are the ones it was given.
        if let Some(sizes) = &mut capabilities.subgroups
            && info.backend != wgpu::Backend::Noop
            && let Some(size) = probe_subgroup_size(&device, &queue, sizes.max)
        {
            sizes.probed = size;
        }
        Gpu {
            capabilities,
            limits: device.limits(),
            device,
            queue,
            info,
            lost,
        }
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Name, backend, driver and subgroup sizes of the adapter.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// What optional features the device has.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// `MissingFeature` naming f16 when the device cannot store `dtype`.
    pub fn check_dtype_supported(&self, dtype: DType) -> Result<()> {
        if dtype == DType::F16 && !self.capabilities.shader_f16 {
            return Err(Error::MissingFeature {
                op: "f16 storage",
                feature: "SHADER_F16",
                adapter: self.info.name.clone(),
            });
        }
        Ok(())
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely())?;
        self.check_lost()
    }

    /// `Err(DeviceLost)` once the device has been lost.
    pub fn check_lost(&self) -> Result<()> {
        match &*self.lost.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(reason) => Err(Error::DeviceLost(reason.clone())),
            None => Ok(()),
        }
    }

    /// Finishes `encoder`, submits it and waits for the device to finish,
    /// with wgpu's validation, out-of-memory and internal errors returned.
    pub fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.scoped("submitting", || self.queue.submit([encoder.finish()]))?;
        self.wait()
    }

    /// Runs `f` inside wgpu error scopes (validation, out-of-memory, internal)
    /// and returns the first error they caught instead of its value.
    ///
    /// Error scopes are per thread in wgpu, so concurrent calls from several
    /// threads each see only their own errors.
    pub(crate) fn scoped<T>(&self, during: &'static str, f: impl FnOnce() -> T) -> Result<T> {
        self.check_lost()?;
        let device = &self.device;
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = f();
        // Popped in reverse order of pushing, as wgpu requires.
        let internal = internal.pop();
        let validation = validation.pop();
        let oom = oom.pop();
        let errors = pollster::block_on(async { [oom.await, validation.await, internal.await] });
        if let Some(error) = errors.into_iter().flatten().next() {
            return Err(Error::from_wgpu(during, error));
        }
        self.check_lost()?;
        Ok(value)
    }
}

/// Runs `shaders/subgroup_probe.wgsl` once and reads back the subgroup size
/// it saw; `None` (and the plan falls back to the reported minimum) where
/// anything fails or the size is outside wgpu's reported range.
fn probe_subgroup_size(device: &wgpu::Device, queue: &wgpu::Queue, max: u32) -> Option<u32> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("subgroup probe"),
        source: wgpu::ShaderSource::Wgsl(include_str!("../shaders/subgroup_probe.wgsl").into()),
    });
    let lanes = max.clamp(
        64,
        device.limits().max_compute_invocations_per_workgroup.max(1),
    );
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("subgroup probe"),
        layout: None,
        module: &module,
        entry_point: Some("probe"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &[("WG", lanes as f64)],
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    let buffer = |usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("subgroup probe"),
            size: 16,
            usage,
            mapped_at_creation: false,
        })
    };
    let out = buffer(wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC);
    let staging = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("subgroup probe"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: out.as_entire_binding(),
        }],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    encoder.copy_buffer_to_buffer(&out, 0, &staging, 0, 16);
    queue.submit([encoder.finish()]);
    if pollster::block_on(scope.pop()).is_some() {
        return None;
    }
    staging.slice(..).map_async(wgpu::MapMode::Read, |_| {});
    device.poll(wgpu::PollType::wait_indefinitely()).ok()?;
    let size = {
        let view = staging.slice(..).get_mapped_range().ok()?;
        u32::from_le_bytes([view[0], view[1], view[2], view[3]])
    };
    staging.unmap();
    (size > 0 && size.is_power_of_two()).then_some(size)
}
