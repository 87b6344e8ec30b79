//! Counting what arrived: a latency histogram with microsecond resolution
//! (an HDR histogram, 3 significant figures) and a per-publisher record of
//! the sequence numbers seen, so that loss and duplicates are exact counts.
//!
//! Each connection task owns its own [`Latency`] and [`SeqTracker`]; they
//! are merged once at the end, so nothing here is shared or locked.

use hdrhistogram::Histogram;

/// The largest latency recorded exactly: one hour, in microseconds. Longer
/// ones are clamped to it (and show up as the maximum).
const MAX_US: u64 = 3_600_000_000;

/// End-to-end latencies in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Latency {
    histogram: Histogram<u64>,
}

/// The figures reported for a [`Latency`], in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
    pub(crate) mean: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            // Bounds and precision are constants that hdrhistogram accepts.
            histogram: Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"),
        }
    }
}

impl Latency {
    /// Records one latency given in nanoseconds.
    pub(crate) fn record_ns(&mut self, ns: u64) {
        self.histogram.saturating_record(ns / 1_000);
    }

    /// Adds every value of `other`.
    pub(crate) fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides: adding cannot fail.
        self.histogram
            .add(&other.histogram)
            .expect("histograms with equal bounds");
    }

    /// Count, p50, p99, p99.9, max and mean; all zero when empty.
    pub(crate) fn percentiles(&self) -> Percentiles {
        let h = &self.histogram;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// The sequence numbers received from each publisher, one bit each.
#[derive(Debug, Default, Clone)]
pub(crate) struct SeqTracker {
    seen: Vec<Vec<u64>>,
    unique: u64,
    duplicates: u64,
}

impl SeqTracker {
    /// Notes message `seq` of `publisher`; false if it was seen before.
    pub(crate) fn insert(&mut self, publisher: u32, seq: u32) -> bool {
        let p = publisher as usize;
        if self.seen.len() <= p {
            self.seen.resize_with(p + 1, Vec::new);
        }
        let bits = &mut self.seen[p];
        let (word, bit) = (seq as usize / 64, seq % 64);
        if bits.len() <= word {
            // Grow geometrically so a steady stream costs amortised O(1).
            bits.resize((word + 1).max(bits.len() * 2), 0);
        }
        let mask = 1u64 << bit;
        if bits[word] & mask != 0 {
            self.duplicates += 1;
            false
        } else {
            bits[word] |= mask;
            self.unique += 1;
            true
        }
    }

    /// Distinct messages received.
    pub(crate) fn unique(&self) -> u64 {
        self.unique
    }

    /// Messages received more than once, counting each extra copy.
    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histogram_reports_zeros() {
        assert_eq!(Latency::default().percentiles(), Percentiles::default());
    }

    #[test]
    fn percentiles_are_in_microseconds_within_three_significant_figures() {
        let mut latency = Latency::default();
        // 1..=1000 us, recorded in nanoseconds.
        for us in 1..=1000u64 {
            latency.record_ns(us * 1_000 + 999);
        }
        let p = latency.percentiles();
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, 500);
        assert_eq!(p.p99, 990);
        assert_eq!(p.p999, 999);
        assert_eq!(p.max, 1000);
        assert!((p.mean - 500.5).abs() < 1.0, "{}", p.mean);
    }

    #[test]
    fn sub_microsecond_values_count_as_zero_and_huge_ones_are_clamped() {
        let mut latency = Latency::default();
        latency.record_ns(10);
        latency.record_ns(u64::MAX);
        let p = latency.percentiles();
        assert_eq!(p.count, 2);
        assert_eq!(p.p50, 0);
        assert!(
            p.max >= MAX_US && p.max <= MAX_US + MAX_US / 1000,
            "{}",
            p.max
        );
    }

    #[test]
    fn merged_histograms_count_everything() {
        let (mut a, mut b) = (Latency::default(), Latency::default());
        a.record_ns(100_000);
        b.record_ns(200_000);
        b.record_ns(300_000);
        a.merge(&b);
        let p = a.percentiles();
        assert_eq!(p.count, 3);
        assert_eq!(p.p50, 200);
        assert_eq!(p.max, 300);
    }

    #[test]
    fn tracker_counts_duplicates_per_publisher() {
        let mut seqs = SeqTracker::default();
        assert!(seqs.insert(0, 0));
        assert!(seqs.insert(1, 0), "same seq, other publisher");
        assert!(seqs.insert(0, 100_000));
        assert!(!seqs.insert(0, 0));
        assert!(!seqs.insert(0, 100_000));
        assert!(seqs.insert(3, 63));
        assert!(seqs.insert(3, 64));
        assert_eq!(seqs.unique(), 5);
        assert_eq!(seqs.duplicates(), 2);
    }
}
