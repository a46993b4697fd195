//! The [`Context`]: one wgpu device and queue, what they can do, and the
//! pipelines built on them.
//!
//! A context either opens an adapter itself ([`Context::new`], honouring
//! `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` the way wgpu's own helpers do) or
//! wraps a device the application already has ([`Context::from_device`]).
//! Optional features (timestamps, subgroups, shader-f16) are requested when
//! the adapter offers them and never required; [`Capabilities`] says what
//! was obtained, and the kernel plan reads it.

use std::sync::{Arc, Mutex};

use crate::autotune::{Autotune, Tuner};
use crate::error::{Error, Result};
use crate::kernels::Kernels;

/// How to open a [`Context`]. `Default` means: the environment decides
/// (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`), every optional feature is requested,
/// and the device gets the adapter's full limits.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Backends to look on. `None`: `WGPU_BACKEND` if set, else all compiled in.
    pub backends: Option<wgpu::Backends>,
    /// Pick the first adapter whose name contains this (case-insensitive).
    /// `None`: `WGPU_ADAPTER_NAME` if set, else the best adapter.
    pub adapter_name: Option<String>,
    /// Optional features never to request, even where the adapter has them —
    /// e.g. `Features::SUBGROUP` to run the workgroup-memory kernels on an
    /// adapter with subgroups.
    pub disabled_features: wgpu::Features,
    /// Limits to request instead of the adapter's own (they must not exceed
    /// the adapter's). A smaller `max_storage_buffer_binding_size` is how the
    /// tests exercise chunking cheaply.
    pub limits: Option<wgpu::Limits>,
    /// Whether layer-norm kernels are autotuned per shape class (default: no,
    /// the plan's ladder decides).
    pub autotune: Autotune,
}

/// Sizes of the adapter's subgroups (SIMD width), as wgpu reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubgroupSizes {
    /// Smallest subgroup the adapter may run.
    pub min: u32,
    /// Largest subgroup the adapter may run.
    pub max: u32,
}

/// The optional abilities a [`Context`]'s device has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// A device, its queue, what they can do, and the pipelines built on them.
///
/// Cheap to clone (an `Arc`), `Send + Sync`: threads may share one context;
/// pipelines are built once per context and reused by every call.
///
/// ```
/// let ctx = wgpu_norm::Context::new()?;
/// println!("{} on {:?}", ctx.adapter_info().name, ctx.adapter_info().backend);
/// # Ok::<(), wgpu_norm::Error>(())
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    capabilities: Capabilities,
    kernels: Kernels,
    tuner: Tuner,
    /// Set by the device-lost callback (only on devices we created).
    lost: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.inner.info.name)
            .field("backend", &self.inner.info.backend)
            .field("capabilities", &self.inner.capabilities)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Opens the best adapter the environment allows, blocking.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::with_options(ContextOptions::default()))
    }

    /// Opens an adapter chosen by `options`.
    pub async fn with_options(options: ContextOptions) -> Result<Self> {
        let adapters = Self::adapters(options.backends).await;
        let name = options
            .adapter_name
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .filter(|n| !n.is_empty());
        let adapter = choose_adapter(adapters, name.as_deref()).ok_or_else(|| {
            let backends = options
                .backends
                .unwrap_or_else(|| wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()));
            Error::NoAdapter {
                wanted: match &name {
                    Some(n) => format!("backends {backends:?}, name containing {n:?}"),
                    None => format!("backends {backends:?}"),
                },
            }
        })?;
        Self::from_adapter(&adapter, &options).await
    }

    /// Every adapter wgpu finds on `backends` (`None`: `WGPU_BACKEND` if set,
    /// else every backend compiled in).
    pub async fn adapters(backends: Option<wgpu::Backends>) -> Vec<wgpu::Adapter> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(b) = backends {
            desc.backends = b;
        }
        let instance = wgpu::Instance::new(desc);
        let backends = instance_backends(backends);
        instance.enumerate_adapters(backends).await
    }

    /// Opens a device on `adapter`, requesting every optional feature it has
    /// (less `options.disabled_features`) and its full limits (or `options.limits`).
    pub async fn from_adapter(adapter: &wgpu::Adapter, options: &ContextOptions) -> Result<Self> {
        let info = adapter.get_info();
        let features = adapter.features() & OPTIONAL_FEATURES & !options.disabled_features;
        let limits = options.limits.clone().unwrap_or_else(|| adapter.limits());
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpu-norm"),
                required_features: features,
                required_limits: limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|source| Error::RequestDevice {
                adapter: info.name.clone(),
                source,
            })?;
        // Our own device: errors outside our error scopes are logged, not
        // turned into panics, and a lost device is remembered so the next call
        // returns `Error::DeviceLost`.
        let lost = Arc::new(Mutex::new(None));
        let lost_slot = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            *lost_slot.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(format!("{reason:?}: {message}"));
        });
        device.on_uncaptured_error(Arc::new(|error: wgpu::Error| {
            eprintln!("wgpu-norm: uncaptured wgpu error: {error}");
        }));
        Ok(Self::build(
            device,
            queue,
            info,
            lost,
            options.autotune.clone(),
        ))
    }

    /// Wraps a device and queue the application already has. Its features and
    /// limits are used as they are; its error handlers are left alone.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        Self::from_device_with_autotune(device, queue, Autotune::Off)
    }

    /// [`Context::from_device`], autotuning the kernels as `autotune` says.
    pub fn from_device_with_autotune(
        device: wgpu::Device,
        queue: wgpu::Queue,
        autotune: Autotune,
    ) -> Self {
        let info = device.adapter_info();
        Self::build(device, queue, info, Arc::new(Mutex::new(None)), autotune)
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        lost: Arc<Mutex<Option<String>>>,
        autotune: Autotune,
    ) -> Self {
        let capabilities = Capabilities::of(device.features(), &info);
        let limits = device.limits();
        let kernels = Kernels::new(&device);
        Context {
            inner: Arc::new(Inner {
                device,
                queue,
                info,
                limits,
                capabilities,
                kernels,
                tuner: Tuner::new(autotune),
                lost,
            }),
        }
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// Name, backend, driver and subgroup sizes of the adapter.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// What optional features the device has.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    pub(crate) fn kernels(&self) -> &Kernels {
        &self.inner.kernels
    }

    pub(crate) fn tuner(&self) -> &Tuner {
        &self.inner.tuner
    }

    /// The kernels the autotuner has picked: (adapter, shape class, kernel),
    /// including those read from a tuning file.
    pub fn tuned_kernels(&self) -> Vec<(String, String, String)> {
        self.inner.tuner.winners()
    }

    /// How many compute pipelines this context has built (each kernel
    /// specialisation is built once, on first use, and then reused).
    pub fn cached_pipelines(&self) -> usize {
        self.inner.kernels.pipeline_count()
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())?;
        self.check_lost()
    }

    /// `Err(DeviceLost)` once the device has been lost.
    pub fn check_lost(&self) -> Result<()> {
        match &*self.inner.lost.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(reason) => Err(Error::DeviceLost(reason.clone())),
            None => Ok(()),
        }
    }

    /// Finishes `encoder`, submits it and waits for the device to finish,
    /// with wgpu's validation, out-of-memory and internal errors returned.
    pub fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.scoped("submitting", || self.queue().submit([encoder.finish()]))?;
        self.wait()
    }

    /// Runs `f` inside wgpu error scopes (validation, out-of-memory, internal)
    /// and returns the first error they caught instead of its value.
    ///
    /// Error scopes are per thread in wgpu, so concurrent calls from several
    /// threads each see only their own errors.
    pub(crate) fn scoped<T>(&self, during: &'static str, f: impl FnOnce() -> T) -> Result<T> {
        self.check_lost()?;
        let device = &self.inner.device;
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

/// The backends to enumerate: those asked for, else `WGPU_BACKEND`, else all.
fn instance_backends(backends: Option<wgpu::Backends>) -> wgpu::Backends {
    backends.unwrap_or_else(|| wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()))
}

/// The best adapter: name filter first, then device type (discrete GPU first,
/// CPU last), then backend (native APIs before GL).
fn choose_adapter(adapters: Vec<wgpu::Adapter>, name: Option<&str>) -> Option<wgpu::Adapter> {
    let name = name.map(str::to_lowercase);
    adapters
        .into_iter()
        .filter(|a| match &name {
            Some(n) => a.get_info().name.to_lowercase().contains(n),
            None => true,
        })
        .min_by_key(|a| {
            let info = a.get_info();
            let type_rank = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Other => 3,
                wgpu::DeviceType::Cpu => 4,
            };
            let backend_rank = match info.backend {
                wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
                wgpu::Backend::Gl => 1,
                _ => 2,
            };
            (type_rank, backend_rank)
        })
}

/// Parses a backend name as the CLI and `WGPU_BACKEND` spell them.
pub fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        _ => Err(Error::UnknownBackend(name.to_string())),
    }
}
