//! The progress line of an interactive run: messages sent and received so
//! far and their rates, redrawn on stderr about four times a second.
//!
//! Connection tasks add to shared [`Counters`] once per batch (a relaxed
//! atomic add, nothing locked); a [`Ticker`] task reads them. The line is
//! drawn only when both stdout and stderr are terminals and `--json` was not
//! given (see [`BaseArgs::progress`](super::BaseArgs)), so scripts, pipes
//! and tests never see it. It is a hand-written `\r` line: erased when the
//! ticker is dropped, before the report is printed.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval};

use super::report::group;

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// Messages counted so far by every connection of a run.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Counters {
    /// Notes `n` more messages written.
    pub(crate) fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Notes `n` more messages read.
    pub(crate) fn received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    fn load(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }
}

/// Draws the progress line until dropped, then erases it.
#[derive(Debug)]
pub(crate) struct Ticker {
    task: JoinHandle<()>,
}

impl Ticker {
    /// Starts drawing `label`'s progress if `show`; `None` otherwise.
    pub(crate) fn start(show: bool, label: &str, counters: &Arc<Counters>) -> Option<Ticker> {
        if !show {
            return None;
        }
        let (label, counters) = (label.to_owned(), Arc::clone(counters));
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut ticks = interval(TICK);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            // The first tick is immediate: nothing to show yet.
            ticks.tick().await;
            let mut last = (start, counters.load());
            loop {
                ticks.tick().await;
                let now = Instant::now();
                let counts = counters.load();
                let text = line(
                    &label,
                    now - start,
                    counts,
                    counts_per_s(last, (now, counts)),
                );
                last = (now, counts);
                let mut stderr = std::io::stderr().lock();
                let _ = write!(stderr, "\r\x1b[2K{text}");
                let _ = stderr.flush();
            }
        });
        Some(Ticker { task })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // The task only writes between awaits: aborting it never cuts a
        // line in half.
        self.task.abort();
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K");
        let _ = stderr.flush();
    }
}

/// Sent and received per second between two readings.
fn counts_per_s(from: (Instant, (u64, u64)), to: (Instant, (u64, u64))) -> (f64, f64) {
    let secs = to.0.saturating_duration_since(from.0).as_secs_f64();
    if secs <= 0.0 {
        return (0.0, 0.0);
    }
    let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    (per_s(from.1.0, to.1.0), per_s(from.1.1, to.1.1))
}

/// The text of the progress line.
fn line(label: &str, elapsed: Duration, (sent, received): (u64, u64), rates: (f64, f64)) -> String {
    format!(
        "{label} {:.1} s: sent {} ({} msg/s), received {} ({} msg/s)",
        elapsed.as_secs_f64(),
        group(sent),
        group(rates.0 as u64),
        group(received),
        group(rates.1 as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_counts_and_rates_since_the_last_tick() {
        let t0 = Instant::now();
        let rates = counts_per_s((t0, (1_000, 0)), (t0 + TICK, (3_500, 250)));
        assert_eq!(rates, (10_000.0, 1_000.0));
        assert_eq!(counts_per_s((t0, (5, 5)), (t0, (9, 9))), (0.0, 0.0));
        assert_eq!(
            line(
                "pairs",
                Duration::from_millis(1_300),
                (12_345, 6_789),
                rates
            ),
            "pairs 1.3 s: sent 12,345 (10,000 msg/s), received 6,789 (1,000 msg/s)"
        );
    }

    #[test]
    fn counters_add_up_from_every_task() {
        let counters = Counters::default();
        counters.sent(3);
        counters.sent(4);
        counters.received(2);
        assert_eq!(counters.load(), (7, 2));
        assert!(Ticker::start(false, "x", &Arc::new(counters)).is_none());
    }
}
