//! Giving freed memory back to the operating system.
//!
//! glibc's allocator returns memory to the system only from the top of each
//! heap; what a burst freed in the middle (10,000 closed connections, a
//! retained read of 50,000 records) stays resident. Measured on the
//! `benches/peers.sh` workloads: 27 MB of live heap but 87 MB resident, and
//! 52 MB after one `malloc_trim(0)`. So the server calls it periodically,
//! on the blocking pool, when it is running on glibc. Other allocators and
//! C libraries are left alone.

use std::time::Duration;

/// How often freed memory is handed back.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Hands freed memory back every `TRIM_EVERY` until the task is dropped.
pub(crate) async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        if let Ok(released) = tokio::task::spawn_blocking(trim).await {
            tracing::debug!(released, took = ?started.elapsed(), "freed memory handed back");
        }
    }
}

/// Returns freed heap pages to the system; whether any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    unsafe extern "C" {
        /// glibc, malloc.h: `int malloc_trim(size_t pad)`.
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim takes no pointer and accepts any pad; it locks
    // each arena it trims, so it is safe to call while other threads
    // allocate. It only releases pages that hold no live allocation.
    unsafe { malloc_trim(0) != 0 }
}

/// Nothing to do outside glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory freed in the middle of the heap is no longer resident after
    /// a trim (glibc only).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trim_returns_freed_memory_to_the_system() {
        fn resident_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        // 64 MiB in small blocks (below the mmap threshold: on the heap),
        // every block touched; one block kept at the end pins the heap top,
        // so only a trim can release the rest.
        let mut blocks: Vec<Vec<u8>> = (0..16_384).map(|_| vec![1u8; 4096]).collect();
        let pin = vec![1u8; 4096];
        let before_free = resident_kib();
        blocks.clear();
        blocks.shrink_to_fit();
        let freed = resident_kib();
        trim();
        let trimmed = resident_kib();
        drop(pin);
        assert!(
            before_free.saturating_sub(trimmed) > 32 * 1024,
            "resident: {before_free} KiB with the blocks, {freed} KiB freed, {trimmed} KiB trimmed"
        );
    }
}
