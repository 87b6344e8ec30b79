//! Throughput of the resource layer (what MQTT and REST call): durable record
//! writes per second with 1, 16 and 256 concurrent writers (validation,
//! encoding, indexes and group commit included), point reads per second, and
//! a query over 100,000 records. Measured, not asserted:
//! `cargo bench -p mqdb-resource --bench database`; the last line is JSON.
#![allow(clippy::print_stdout)] // A benchmark program reports its figures on stdout.

use std::path::Path;
use std::time::{Duration, Instant};

use mqdb_resource::{Body, Database, Map, Meta, Query, Schema, Value};
use mqdb_storage::{Store, StoreConfig};

const SCHEMA: &str = "type Reading @table @export { id: ID @primaryKey  temp: Float  room: String @indexed  ok: Boolean }";

fn record(i: u64) -> Map {
    let mut m = Map::new();
    m.insert("temp".into(), Value::Float((i % 40) as f64 + 0.5));
    m.insert("room".into(), Value::String(format!("room-{}", i % 100)));
    m.insert("ok".into(), Value::Bool(true));
    m
}

async fn writes(db: &Database, writers: u64, duration: Duration) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                let table = db.exported("Reading").unwrap().clone();
                let mut n = 0u64;
                while start.elapsed() < duration {
                    let id = format!("w{writers}-{w}-{n}");
                    db.put(&table, &id, Body::Map(record(n)), Meta::default())
                        .await
                        .unwrap();
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        path: dir.path().to_path_buf(),
        sync: true,
        node: 0,
    })
    .unwrap();
    let db = Database::new(
        store,
        Schema::parse(SCHEMA, Path::new("bench.graphql")).unwrap(),
    );
    let mut json = Vec::new();
    rt.block_on(async {
        for writers in [1, 16, 256] {
            let rate = writes(&db, writers, Duration::from_secs(3)).await;
            println!("durable record writes, {writers:>3} writers: {rate:>9.0}/s");
            json.push(format!("\"writes_{writers}\":{rate:.0}"));
        }
        let table = db.exported("Reading").unwrap().clone();
        let ids: Vec<String> = db
            .scan(&table, "w256-")
            .take(100_000)
            .map(|e| e.unwrap().id)
            .collect();
        let start = Instant::now();
        for id in &ids {
            assert!(db.get(&table, id).unwrap().is_some());
        }
        let rate = ids.len() as f64 / start.elapsed().as_secs_f64();
        println!(
            "point reads (decoded records): {rate:.0}/s over {} records",
            ids.len()
        );
        json.push(format!("\"reads\":{rate:.0}"));
        let q = Query::parse("room=room-7").unwrap();
        let start = Instant::now();
        let hits = db.query(&table, &q).unwrap().count();
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        println!("indexed query room=room-7: {hits} records in {ms:.1} ms");
        json.push(format!("\"indexed_query_ms\":{ms:.1}"));
    });
    println!("{{{}}}", json.join(","));
}
