//! Storage throughput, measured (not asserted): durable writes per second with
//! 1, 16 and 256 concurrent writers (group commit), point reads per second, a
//! prefix scan, and the time to reopen a large database.
//!
//! `cargo bench -p mqdb-storage` (MQDB_BENCH_RECORDS sets the scan size,
//! default 1,000,000). Prints one line per figure and a final JSON line.

#![allow(clippy::print_stdout)] // A benchmark program reports its figures on stdout.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mqdb_storage::{Mutation, Store, StoreConfig, WriteOp};

fn open(path: &std::path::Path) -> Store {
    Store::open(StoreConfig {
        path: path.to_path_buf(),
        sync: true,
        node: 0,
    })
    .unwrap()
}

fn payload() -> Bytes {
    Bytes::from_static(br#"{"temp":21.5,"humidity":40,"room":"kitchen","ok":true}"#)
}

async fn durable_writes(store: &Store, writers: usize, duration: Duration) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < duration {
                    let op = WriteOp::local(
                        "Bench",
                        format!("w{writers}/{w}/{n}"),
                        Mutation::Put {
                            value: payload(),
                            index: vec![],
                        },
                    );
                    store.write_one(op).await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let records: u64 = std::env::var("MQDB_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut json = Vec::new();
    rt.block_on(async {
        let store = open(dir.path());
        for writers in [1, 16, 256] {
            let rate = durable_writes(&store, writers, Duration::from_secs(3)).await;
            println!("durable writes, {writers:>3} writers: {rate:>10.0} records/s");
            json.push(format!("\"writes_{writers}\":{rate:.0}"));
        }
        // Bulk load for the read figures: 1,000 records per request, 4 in flight.
        let start = Instant::now();
        let mut loads = Vec::new();
        for chunk in 0..records.div_ceil(1000) {
            let store = store.clone();
            loads.push(tokio::spawn(async move {
                let ops = (0..1000)
                    .map(|i| {
                        let id = format!("dev{:07}", chunk * 1000 + i);
                        WriteOp::local(
                            "Scan",
                            id,
                            Mutation::Put {
                                value: payload(),
                                index: vec![],
                            },
                        )
                    })
                    .collect();
                store.write(ops).await.unwrap();
            }));
            if loads.len() == 4 {
                for l in loads.drain(..) {
                    l.await.unwrap();
                }
            }
        }
        for l in loads {
            l.await.unwrap();
        }
        let rate = records as f64 / start.elapsed().as_secs_f64();
        println!("bulk load ({records} records, 1000/commit): {rate:.0} records/s");
        json.push(format!("\"bulk_load\":{rate:.0}"));

        let start = Instant::now();
        let n = 200_000u64;
        for i in 0..n {
            let id = format!("dev{:07}", (i * 7919) % records);
            assert!(store.get("Scan", &id).unwrap().is_some());
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        println!("point reads: {rate:.0} reads/s");
        json.push(format!("\"point_reads\":{rate:.0}"));

        let start = Instant::now();
        let count = store.scan("Scan", "").count();
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(count as u64, records);
        println!("prefix scan of {count} records: {ms:.0} ms");
        json.push(format!("\"scan_ms\":{ms:.0}"));
    });
    drop(rt);
    let start = Instant::now();
    let store = open(dir.path());
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert!(store.get("Scan", "dev0000000").unwrap().is_some());
    println!("reopen: {ms:.0} ms");
    json.push(format!("\"reopen_ms\":{ms:.0}"));
    println!("{{{}}}", json.join(","));
}
