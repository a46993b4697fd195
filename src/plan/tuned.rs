//! The table of tuned choices: for a shape class on an adapter, the forward
//! kernel that measured fastest. The plan reads it; the autotuner (a layer
//! above the ops) fills it, explicitly or through the context's hook.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::plan::specs::Kernel;

/// `dim 768, rows <= 4096`: the key of a shape class — the row length, and
/// the row count rounded up to a power of two.
pub fn class_key(rows: usize, cols: usize) -> String {
    format!(
        "dim {cols}, rows <= {}",
        rows.checked_next_power_of_two().unwrap_or(rows)
    )
}

/// `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Mesa 22.3.6)`: the key of an adapter.
pub fn adapter_key(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {})", info.name, info.backend, info.driver_info)
}

/// Winners by adapter, then by shape class: kernel names, as the tuning
/// file stores them.
pub type Winners = BTreeMap<String, BTreeMap<String, String>>;

/// The tuned kernels a context knows, by adapter and shape class.
#[derive(Debug, Default)]
pub struct TunedTable {
    winners: Mutex<Winners>,
}

impl TunedTable {
    /// A table holding `winners` (e.g. read from a tuning file).
    pub fn with(winners: Winners) -> Self {
        TunedTable {
            winners: Mutex::new(winners),
        }
    }

    /// The kernel tuned for rows × cols on the adapter, if any.
    pub fn get(&self, info: &wgpu::AdapterInfo, rows: usize, cols: usize) -> Option<Kernel> {
        let winners = self.winners.lock().unwrap_or_else(|p| p.into_inner());
        winners
            .get(&adapter_key(info))
            .and_then(|m| m.get(&class_key(rows, cols)))
            .and_then(|name| Kernel::by_name(name))
    }

    /// Records `kernel` as the winner for rows × cols on the adapter.
    pub fn insert(&self, info: &wgpu::AdapterInfo, rows: usize, cols: usize, kernel: Kernel) {
        let mut winners = self.winners.lock().unwrap_or_else(|p| p.into_inner());
        winners
            .entry(adapter_key(info))
            .or_default()
            .insert(class_key(rows, cols), kernel.name().to_string());
    }

    /// A copy of every winner.
    pub fn snapshot(&self) -> Winners {
        self.winners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
