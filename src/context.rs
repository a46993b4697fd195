//! The [`Context`]: one wgpu device and queue, what they can do, and the
//! pipelines built on them.
//!
//! A context either opens an adapter itself ([`Context::new`], honouring
//! `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` the way wgpu's own helpers do) or
//! wraps a device the application already has ([`Context::from_device`]).
//! Optional features (timestamps, subgroups, shader-f16) are requested when
//! the adapter offers them and never required; [`Capabilities`](crate::Capabilities) says what
//! was obtained, and the kernel plan reads it.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::bind_cache::BindCache;
use crate::caps::OPTIONAL_FEATURES;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::PipelineCache;
use crate::plan::{Kernel, TunedTable};

/// Fills the context's table of tuned kernels on first use of a shape
/// class: the ops call it through the context when the table has no entry,
/// so that the plan (which only reads the table) stays free of GPU work.
/// [`Autotune`](crate::Autotune) gives the crate's autotuner as a hook.
pub trait TuneHook: Send + Sync + std::fmt::Debug {
    /// Called once when the hook is installed on `ctx` (e.g. to load a
    /// tuning file into [`Context::tuned`]).
    fn attach(&self, ctx: &Context) {
        let _ = ctx;
    }

    /// Picks a forward kernel for rows × cols on `ctx` (timing candidates,
    /// typically), records it in [`Context::tuned`] and returns it; `None`
    /// leaves the choice to the ladder.
    fn tune(&self, ctx: &Context, rows: usize, cols: usize) -> Result<Option<Kernel>>;
}

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
    /// The autotuner to install (default: none, the plan's ladder decides):
    /// e.g. `Autotune::InMemory.hook()`.
    pub tuner: Option<Arc<dyn TuneHook>>,
}

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
    gpu: Gpu,
    pipelines: PipelineCache,
    binds: BindCache,
    tuned: TunedTable,
    tuner: Mutex<Option<Arc<dyn TuneHook>>>,
    /// Where the ops leave what they record, while a caller collects it
    /// (`export`); `None` otherwise. `tapping` says so without the lock:
    /// every call checks it.
    tap: Mutex<Option<Vec<Arc<dyn Any + Send + Sync>>>>,
    tapping: AtomicBool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.adapter_info().name)
            .field("backend", &self.adapter_info().backend)
            .field("capabilities", &self.capabilities())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Context {
    type Target = Gpu;

    fn deref(&self) -> &Gpu {
        &self.inner.gpu
    }
}

impl Context {
    /// Opens the best adapter the environment allows, blocking.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::with_options(ContextOptions::default()))
    }

    /// Opens an adapter chosen by `options`.
    pub async fn with_options(options: ContextOptions) -> Result<Self> {
        // A WGPU_BACKEND that names no backend is the caller's mistake, not a
        // missing driver: say so (wgpu itself would ignore the name and find none).
        let backends = match options.backends {
            Some(b) => Some(b),
            None => backends_from_env()?,
        };
        let options = ContextOptions {
            backends,
            ..options
        };
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
        let ctx = Self::build(device, queue, info, lost);
        if let Some(tuner) = &options.tuner {
            ctx.set_tuner(tuner.clone());
        }
        Ok(ctx)
    }

    /// A context on wgpu's noop backend that plans, builds and validates
    /// (naga) exactly as a device with `features`, `limits` and `info`
    /// (device type, subgroup sizes) would, and runs nothing: the plans of
    /// `wgpu_norm::export` for another device, such as a browser's WebGPU.
    pub fn for_planning(
        features: wgpu::Features,
        limits: wgpu::Limits,
        info: wgpu::AdapterInfo,
    ) -> Result<Self> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::NOOP;
        desc.backend_options.noop = wgpu::NoopBackendOptions {
            enable: true,
            limits: Some(limits.clone()),
            features: Some(features),
            device_type: Some(info.device_type),
            subgroup_min_size: Some(info.subgroup_min_size),
            subgroup_max_size: Some(info.subgroup_max_size),
        };
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::NOOP))
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoAdapter {
                wanted: "wgpu's noop backend".into(),
            })?;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgpu-norm planning"),
            required_features: features & OPTIONAL_FEATURES,
            required_limits: limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|source| Error::RequestDevice {
            adapter: "wgpu's noop backend".into(),
            source,
        })?;
        // The noop adapter calls itself a CPU: the plan's class is the target's.
        let info = wgpu::AdapterInfo {
            name: info.name,
            device_type: info.device_type,
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            ..adapter.get_info()
        };
        Ok(Self::build(device, queue, info, Arc::new(Mutex::new(None))))
    }

    /// Starts collecting what the ops record (see [`Context::take_recordings`]).
    pub(crate) fn start_tap(&self) {
        *self.inner.tap.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
        self.inner.tapping.store(true, Ordering::Release);
    }

    /// Hands what an op recorded to a collecting caller, if one is (a load
    /// of one flag otherwise: this runs on every call).
    pub(crate) fn tap<T: Any + Send + Sync>(&self, recording: &Arc<T>) {
        if !self.inner.tapping.load(Ordering::Acquire) {
            return;
        }
        if let Some(v) = self
            .inner
            .tap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            v.push(recording.clone());
        }
    }

    /// What the ops recorded since [`Context::start_tap`], in order; stops collecting.
    pub(crate) fn take_recordings(&self) -> Vec<Arc<dyn Any + Send + Sync>> {
        self.inner.tapping.store(false, Ordering::Release);
        self.inner
            .tap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default()
    }

    /// Wraps a device and queue the application already has. Its features and
    /// limits are used as they are; its error handlers are left alone.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let info = device.adapter_info();
        Self::build(device, queue, info, Arc::new(Mutex::new(None)))
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        lost: Arc<Mutex<Option<String>>>,
    ) -> Self {
        let pipelines = PipelineCache::new(&device);
        Context {
            inner: Arc::new(Inner {
                gpu: Gpu::new(device, queue, info, lost),
                pipelines,
                binds: BindCache::default(),
                tuned: TunedTable::default(),
                tuner: Mutex::new(None),
                tap: Mutex::new(None),
                tapping: AtomicBool::new(false),
            }),
        }
    }

    /// The device layer: device, queue, limits, capabilities (also reached
    /// through `Deref`).
    pub fn gpu(&self) -> &Gpu {
        &self.inner.gpu
    }

    /// The pipelines built on this device.
    pub fn pipelines(&self) -> &PipelineCache {
        &self.inner.pipelines
    }

    /// The encodings kept for the next call with the same tensors.
    pub fn bind_cache(&self) -> &BindCache {
        &self.inner.binds
    }

    /// The tuned kernels the plan reads (filled by an autotuner).
    pub fn tuned(&self) -> &TunedTable {
        &self.inner.tuned
    }

    /// Installs `tuner`, called on first use of a shape class the table lacks.
    pub fn set_tuner(&self, tuner: Arc<dyn TuneHook>) {
        tuner.attach(self);
        *self.inner.tuner.lock().unwrap_or_else(|p| p.into_inner()) = Some(tuner);
    }

    /// The installed autotuner, if any.
    pub fn tuner(&self) -> Option<Arc<dyn TuneHook>> {
        self.inner
            .tuner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The kernels tuned so far: (adapter, shape class, kernel), including
    /// those read from a tuning file.
    pub fn tuned_kernels(&self) -> Vec<(String, String, String)> {
        self.inner
            .tuned
            .snapshot(self.adapter_info())
            .into_iter()
            .flat_map(|(a, m)| m.into_iter().map(move |(c, k)| (a.clone(), c, k)))
            .collect()
    }

    /// How many compute pipelines this context has built (each kernel
    /// specialisation is built once, on first use, and then reused).
    pub fn cached_pipelines(&self) -> usize {
        self.inner.pipelines.pipeline_count()
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

/// The backends `WGPU_BACKEND` names (comma-separated, as wgpu reads it), or
/// `None` where it is unset; `UnknownBackend` for a name that is none (an
/// empty value too).
pub fn backends_from_env() -> Result<Option<wgpu::Backends>> {
    let Ok(value) = std::env::var("WGPU_BACKEND") else {
        return Ok(None);
    };
    let mut backends = wgpu::Backends::empty();
    for name in value.split(',').map(str::trim) {
        backends |= match name.to_ascii_lowercase().as_str() {
            "webgpu" => wgpu::Backends::BROWSER_WEBGPU,
            "noop" => wgpu::Backends::NOOP,
            _ => parse_backend(name)?,
        };
    }
    Ok(Some(backends))
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
