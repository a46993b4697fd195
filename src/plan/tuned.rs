//! The table of tuned choices: for a shape class on an adapter, the forward
//! kernel that measured fastest. The plan reads it; the autotuner (a layer
//! above the ops) fills it, explicitly or through the context's hook.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::plan::specs::{CopyKernel, Kernel};

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

/// The tuned kernels of one device, by shape class; lookups allocate
/// nothing (the plan reads the table on every call).
#[derive(Debug, Default)]
pub struct TunedTable {
    /// (cols, rows rounded up to a power of two) → kernel.
    winners: Mutex<BTreeMap<(usize, usize), Kernel>>,
    /// Bytes rounded up to a power of two → the fastest copy kernel.
    copies: Mutex<BTreeMap<u64, CopyKernel>>,
}

fn class(rows: usize, cols: usize) -> (usize, usize) {
    (cols, rows.checked_next_power_of_two().unwrap_or(rows))
}

impl TunedTable {
    /// The kernel tuned for rows × cols, if any.
    pub fn get(&self, rows: usize, cols: usize) -> Option<Kernel> {
        let winners = self.winners.lock().unwrap_or_else(|p| p.into_inner());
        if winners.is_empty() {
            return None;
        }
        winners.get(&class(rows, cols)).copied()
    }

    /// Records `kernel` as the winner for rows × cols.
    pub fn insert(&self, rows: usize, cols: usize, kernel: Kernel) {
        self.winners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(class(rows, cols), kernel);
    }

    /// The copy kernel tuned for copies of `bytes`, if any.
    pub fn copy(&self, bytes: u64) -> Option<CopyKernel> {
        let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        copies
            .get(&bytes.checked_next_power_of_two().unwrap_or(bytes))
            .copied()
    }

    /// Records `kernel` as the fastest copy of `bytes`.
    pub fn insert_copy(&self, bytes: u64, kernel: CopyKernel) {
        self.copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bytes.checked_next_power_of_two().unwrap_or(bytes), kernel);
    }

    /// Every winner, as the tuning file stores them: under `adapter`'s key
    /// ([`adapter_key`]), by [`class_key`].
    pub fn snapshot(&self, adapter: &wgpu::AdapterInfo) -> Winners {
        let winners = self.winners.lock().unwrap_or_else(|p| p.into_inner());
        let classes = winners
            .iter()
            .map(|(&(cols, rows), k)| (class_key(rows, cols), k.name().to_string()))
            .collect();
        BTreeMap::from([(adapter_key(adapter), classes)])
    }

    /// The winners stored for `adapter` in `winners` (a tuning file's
    /// contents), added to the table; other adapters' are ignored.
    pub fn load(&self, adapter: &wgpu::AdapterInfo, winners: &Winners) {
        for (class, kernel) in winners.get(&adapter_key(adapter)).into_iter().flatten() {
            if let (Some((rows, cols)), Some(kernel)) =
                (parse_class(class), Kernel::by_name(kernel))
            {
                self.insert(rows, cols, kernel);
            }
        }
    }
}

/// `dim 768, rows <= 4096` → (4096, 768).
fn parse_class(class: &str) -> Option<(usize, usize)> {
    let rest = class.strip_prefix("dim ")?;
    let (cols, rows) = rest.split_once(", rows <= ")?;
    Some((rows.parse().ok()?, cols.parse().ok()?))
}
