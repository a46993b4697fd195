//! The bind cache: what an op built for one call (uniforms, scratch, bind
//! groups, labels) kept for the next call with the same tensors and shape,
//! so that a warm call allocates nothing and opens no error scope.
//!
//! Entries are keyed by the op's own key type (its plan, variant, epsilon
//! and its tensors' buffers and offsets) and hold the liveness tokens of the
//! tensors they were built for. An entry any of whose tensors has been
//! dropped is freed at the next insertion or tensor allocation: its bind
//! groups would otherwise hold that tensor's buffer (a loop that makes fresh
//! outputs each call against the same inputs would pin every one of them).
//! A tensor wrapping the same buffer again before then finds the entry and
//! renews it. Beyond [`BindCache::CAPACITY`] entries the least recently used
//! goes.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};

/// A key an op caches under: any hashable, comparable, thread-safe type.
pub trait CacheKey: Any + Send + Sync {
    /// Equality with a key of any type (false across types).
    fn eq_dyn(&self, other: &dyn CacheKey) -> bool;
    /// The key as `Any`, for the comparison.
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + Eq + Hash + Send + Sync> CacheKey for T {
    fn eq_dyn(&self, other: &dyn CacheKey) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Slot {
    key: Box<dyn CacheKey>,
    value: Arc<dyn Any + Send + Sync>,
    tokens: Vec<Weak<()>>,
    used: u64,
}

#[derive(Default)]
struct Inner {
    buckets: HashMap<u64, Vec<Slot>>,
    len: usize,
    clock: u64,
    stats: BindCacheStats,
}

/// What a [`BindCache`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindCacheStats {
    /// Lookups that found their entry (warm calls).
    pub hits: u64,
    /// Lookups that did not (the op then built and inserted).
    pub misses: u64,
    /// Entries freed because their tensors were all dropped.
    pub freed: u64,
    /// Entries dropped as least recently used.
    pub evicted: u64,
}

/// Cached encodings of one context.
#[derive(Default)]
pub struct BindCache {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for BindCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindCache")
            .field("entries", &self.len())
            .finish()
    }
}

impl Inner {
    /// Frees the entries any of whose tensors is gone.
    fn sweep(&mut self) {
        let mut removed = 0;
        for bucket in self.buckets.values_mut() {
            let before = bucket.len();
            bucket.retain(|s| s.tokens.iter().all(|w| w.strong_count() > 0));
            removed += before - bucket.len();
        }
        self.buckets.retain(|_, b| !b.is_empty());
        self.len -= removed;
        self.stats.freed += removed as u64;
    }
}

fn hash_of<K: Hash + 'static>(key: &K) -> u64 {
    let mut h = DefaultHasher::new();
    std::any::TypeId::of::<K>().hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

impl BindCache {
    /// Entries kept at most.
    pub const CAPACITY: usize = 256;

    /// The value cached under `key`, renewing its tensors' tokens to `tokens`.
    pub fn get<K, V>(&self, key: &K, tokens: &[&Arc<()>]) -> Option<Arc<V>>
    where
        K: CacheKey + Hash + Eq,
        V: Any + Send + Sync,
    {
        let hash = hash_of(key);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.clock += 1;
        let clock = inner.clock;
        let Some(slot) = inner
            .buckets
            .get_mut(&hash)
            .and_then(|b| b.iter_mut().find(|s| s.key.eq_dyn(key)))
        else {
            inner.stats.misses += 1;
            return None;
        };
        slot.used = clock;
        if slot.tokens.len() != tokens.len()
            || slot
                .tokens
                .iter()
                .zip(tokens)
                .any(|(w, t)| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(t)))
        {
            slot.tokens = tokens.iter().map(|t| Arc::downgrade(t)).collect();
        }
        let value = slot.value.clone().downcast::<V>().ok();
        inner.stats.hits += 1;
        value
    }

    /// Caches `value` under `key` for tensors whose tokens are `tokens`;
    /// first frees the entries any of whose tensors is gone, and the least
    /// recently used one when full.
    pub fn insert<K, V>(&self, key: K, value: Arc<V>, tokens: &[&Arc<()>])
    where
        K: CacheKey + Hash + Eq,
        V: Any + Send + Sync,
    {
        let hash = hash_of(&key);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.sweep();
        if inner.len >= Self::CAPACITY {
            let oldest = inner
                .buckets
                .iter()
                .flat_map(|(h, b)| b.iter().enumerate().map(move |(i, s)| (s.used, *h, i)))
                .min();
            if let Some((_, h, i)) = oldest {
                let bucket = inner.buckets.get_mut(&h).expect("the bucket just seen");
                bucket.remove(i);
                if bucket.is_empty() {
                    inner.buckets.remove(&h);
                }
                inner.len -= 1;
                inner.stats.evicted += 1;
            }
        }
        inner.clock += 1;
        let used = inner.clock;
        let bucket = inner.buckets.entry(hash).or_default();
        bucket.retain(|s| !s.key.eq_dyn(&key));
        bucket.push(Slot {
            key: Box::new(key),
            value,
            tokens: tokens.iter().map(|t| Arc::downgrade(t)).collect(),
            used,
        });
        inner.len = inner.buckets.values().map(Vec::len).sum();
    }

    /// Frees the entries any of whose tensors has been dropped (and with them
    /// the buffers they held). Inserting does this too, and so does
    /// allocating a tensor, so that a dropped tensor's memory is not held
    /// past the next allocation.
    pub fn sweep(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).sweep();
    }

    /// Hits, misses, frees and evictions so far.
    pub fn stats(&self) -> BindCacheStats {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).stats
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frees every entry (the statistics stay).
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.buckets.clear();
        inner.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_while_a_tensor_does_and_renew_with_new_wrappers() {
        let cache = BindCache::default();
        let a = Arc::new(());
        cache.insert(1u32, Arc::new("one"), &[&a]);
        assert_eq!(cache.get::<u32, &str>(&1, &[&a]).as_deref(), Some(&"one"));
        assert!(
            cache.get::<u64, &str>(&1, &[&a]).is_none(),
            "keys of another type differ"
        );
        // A new wrapper of the same buffer renews the entry.
        let b = Arc::new(());
        drop(a);
        assert!(cache.get::<u32, &str>(&1, &[&b]).is_some());
        cache.insert(2u32, Arc::new("two"), &[&b]);
        assert_eq!(cache.len(), 2, "entry 1 is alive through its new token");
        drop(b);
        let c = Arc::new(());
        cache.insert(3u32, Arc::new("three"), &[&c]);
        assert_eq!(cache.len(), 1, "entries of dropped tensors are freed");
    }

    #[test]
    fn the_least_recently_used_entry_goes_when_full() {
        let cache = BindCache::default();
        let t = Arc::new(());
        for k in 0..BindCache::CAPACITY as u32 {
            cache.insert(k, Arc::new(k), &[&t]);
        }
        assert!(cache.get::<u32, u32>(&0, &[&t]).is_some());
        cache.insert(9999u32, Arc::new(0), &[&t]);
        assert_eq!(cache.len(), BindCache::CAPACITY);
        assert!(
            cache.get::<u32, u32>(&0, &[&t]).is_some(),
            "0 was used recently"
        );
        assert!(
            cache.get::<u32, u32>(&1, &[&t]).is_none(),
            "1 was the oldest"
        );
    }
}
