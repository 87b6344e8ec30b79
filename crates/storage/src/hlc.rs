//! A 64-bit hybrid logical clock: milliseconds since the Unix epoch in the high
//! 48 bits and a counter in the low 16. `now()` is strictly increasing and never
//! behind any timestamp the clock has observed, so a local write always wins
//! last-writer-wins against everything this node has already seen.

use std::time::{SystemTime, UNIX_EPOCH};

/// An HLC timestamp. Ordered; with the node id it totally orders writes.
pub type Timestamp = u64;

/// The clock. Owned by the writer thread (no locking needed).
#[derive(Debug, Default)]
pub struct Hlc {
    last: Timestamp,
}

impl Hlc {
    /// A clock that will never issue a timestamp at or below `floor`.
    pub fn new(floor: Timestamp) -> Self {
        Hlc { last: floor }
    }

    /// The next timestamp: physical time if it is ahead, else last + 1.
    pub fn now(&mut self) -> Timestamp {
        let physical = physical_now() << 16;
        self.last = physical.max(self.last + 1);
        self.last
    }

    /// Takes note of a timestamp from elsewhere (a replicated write).
    pub fn observe(&mut self, ts: Timestamp) {
        self.last = self.last.max(ts);
    }
}

/// Milliseconds since the epoch of an HLC timestamp.
pub fn millis(ts: Timestamp) -> u64 {
    ts >> 16
}

fn physical_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_strictly_increasing_and_ahead_of_observed() {
        let mut clock = Hlc::new(0);
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
        clock.observe(b + 1_000_000);
        assert!(clock.now() > b + 1_000_000);
        assert!(millis(a) > 1_600_000_000_000);
    }
}
