//! Topic trie benchmarks on a subscription set shaped like an IoT deployment:
//! 100,000 filters over 100 tenants, mostly per-device, some per-tenant `#`
//! and a few first-level `+` wildcards.
//!
//! Run with `cargo bench -p mqdb-broker --bench trie`.

use std::sync::LazyLock;

use divan::{Bencher, black_box};
use mqdb_broker::trie::TopicTrie;

fn main() {
    divan::main();
}

const FILTERS: usize = 100_000;

/// Filter `i` for session `i`. Per device: status of any channel, exact
/// telemetry, everything; per tenant (one in 1000): `tenant/#`; a hundred
/// fleet-wide `+/deviceN/cmd/#`; the rest exact command topics.
fn filter(i: usize) -> String {
    let tenant = i % 100;
    match i % 4 {
        0 => format!("tenant{tenant}/device{i}/+/status"),
        1 => format!("tenant{tenant}/device{i}/temp"),
        2 => format!("tenant{tenant}/device{i}/#"),
        _ if i % 1000 == 3 => format!("tenant{}/#", (i / 1000) % 100),
        _ if i % 1000 == 7 => format!("+/device{i}/cmd/#"),
        _ => format!("tenant{tenant}/device{i}/cmd/{}", i % 7),
    }
}

static FILTER_STRINGS: LazyLock<Vec<String>> = LazyLock::new(|| (0..FILTERS).map(filter).collect());

static TRIE: LazyLock<TopicTrie<u32, u8>> = LazyLock::new(|| {
    let mut trie = TopicTrie::new();
    for (i, filter) in FILTER_STRINGS.iter().enumerate() {
        trie.insert(filter, i as u32, 1);
    }
    trie
});

fn count_matches(topic: &str) -> usize {
    let mut hits = 0;
    TRIE.matches(topic, |key, qos| {
        black_box((key, qos));
        hits += 1;
    });
    hits
}

/// `tenant2/device2/#` (session 2) and `tenant2/#` (session 2003).
const HIT_TOPIC: &str = "tenant2/device2/temp/status";
/// Matched by `tenant7/#` (7003), `+/device7/cmd/#` (7) through the root `+`.
const PLUS_TOPIC: &str = "tenant7/device7/cmd/reboot";
/// Walks the root `+` branch (100 children) and finds nothing.
const MISS_TOPIC: &str = "factory/line3/temp";

#[divan::bench(args = [HIT_TOPIC, PLUS_TOPIC, MISS_TOPIC])]
fn matches(bencher: Bencher<'_, '_>, topic: &str) {
    let expected = match topic {
        HIT_TOPIC | PLUS_TOPIC => 2,
        _ => 0,
    };
    assert_eq!(count_matches(topic), expected, "{topic}");
    bencher.bench(|| count_matches(black_box(topic)));
}

#[divan::bench(sample_count = 20)]
fn insert_100k(bencher: Bencher<'_, '_>) {
    bencher
        .with_inputs(|| FILTER_STRINGS.clone())
        .bench_values(|filters| {
            let mut trie = TopicTrie::new();
            for (i, filter) in filters.iter().enumerate() {
                trie.insert(filter, i as u32, 1u8);
            }
            trie
        });
}

#[divan::bench(sample_count = 20)]
fn remove_100k(bencher: Bencher<'_, '_>) {
    bencher
        .with_inputs(|| {
            let mut trie = TopicTrie::new();
            for (i, filter) in FILTER_STRINGS.iter().enumerate() {
                trie.insert(filter, i as u32, 1u8);
            }
            trie
        })
        .bench_local_refs(|trie| {
            for (i, filter) in FILTER_STRINGS.iter().enumerate() {
                black_box(trie.remove(filter, &(i as u32)));
            }
        });
}
