//! Slowing down password guessing per remote address (SPEC §5) without
//! blocking anyone else: each address with recent failures must wait before
//! its next attempt is checked, the wait doubling per failure (capped), and
//! concurrent attempts from one address queue behind each other. Other
//! addresses are never delayed. A success clears the address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failures allowed before attempts are spaced out.
const FREE_FAILURES: u32 = 3;
/// The first spacing; it doubles with each further failure.
const BASE_DELAY: Duration = Duration::from_millis(200);
/// The longest spacing.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// An address idle this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses tracked at most; beyond it, idle ones are dropped first.
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// The earliest moment the next attempt may be checked.
    next: Instant,
}

/// Per-address failure counts. The lock is a `std` mutex held only for a
/// map update, never across an await.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

fn delay(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES).min(16);
    BASE_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

impl Throttle {
    /// Waits until an attempt from `addr` may be checked, reserving the
    /// slot so that parallel attempts from it are spaced out too.
    pub(crate) async fn admit(&self, addr: IpAddr) {
        let start = {
            let mut entries = self.entries.lock().expect("throttle lock");
            let Some(entry) = entries.get_mut(&addr) else {
                return;
            };
            let now = Instant::now();
            let start = entry.next.max(now);
            entry.next = start + delay(entry.failures);
            start
        };
        tokio::time::sleep_until(start).await;
    }

    /// Records a failed attempt from `addr`.
    pub(crate) fn failed(&self, addr: IpAddr) {
        let mut entries = self.entries.lock().expect("throttle lock");
        let now = Instant::now();
        if entries.len() >= MAX_ADDRESSES && !entries.contains_key(&addr) {
            entries.retain(|_, e| e.next + FORGET_AFTER > now);
            if entries.len() >= MAX_ADDRESSES {
                entries.clear();
            }
        }
        let entry = entries.entry(addr).or_insert(Entry {
            failures: 0,
            next: now,
        });
        if entry.next + FORGET_AFTER < now {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.next = entry.next.max(now + delay(entry.failures));
    }

    /// Records a successful attempt from `addr`: it is no longer slowed.
    pub(crate) fn succeeded(&self, addr: IpAddr) {
        self.entries.lock().expect("throttle lock").remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_after_the_free_failures_and_is_capped() {
        assert_eq!(delay(0), Duration::ZERO);
        assert_eq!(delay(2), Duration::ZERO);
        assert_eq!(delay(3), BASE_DELAY);
        assert_eq!(delay(4), BASE_DELAY * 2);
        assert_eq!(delay(100), MAX_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_slow_only_their_own_address() {
        let t = Throttle::default();
        let bad: IpAddr = "127.0.0.1".parse().unwrap();
        let good: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..5 {
            t.failed(bad);
        }
        let start = tokio::time::Instant::now();
        t.admit(good).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        t.admit(bad).await;
        assert!(start.elapsed() >= BASE_DELAY * 4);
        t.succeeded(bad);
        let again = tokio::time::Instant::now();
        t.admit(bad).await;
        assert_eq!(again.elapsed(), Duration::ZERO);
    }
}
