//! The store by scenario: durable writes and reads, group commit under
//! concurrency, last-writer-wins, read-modify-write without lost updates,
//! index maintenance, the gap-free change feed, and reopening.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use mqdb_storage::*;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(StoreConfig {
        path: dir.path().to_path_buf(),
        sync: true,
        node: 1,
    })
    .unwrap()
}

fn put(table: &str, id: &str, value: &str) -> WriteOp {
    WriteOp::local(
        table,
        id,
        Mutation::Put {
            value: Bytes::copy_from_slice(value.as_bytes()),
            index: vec![],
        },
    )
}

fn value(store: &Store, table: &str, id: &str) -> Option<String> {
    store
        .get(table, id)
        .unwrap()
        .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
}

#[tokio::test]
async fn a_write_is_readable_and_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let out = store.write_one(put("T", "a/b", "1")).await.unwrap();
    let WriteOutcome::Written {
        seq: 1,
        existed: false,
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    let out = store.write_one(put("T", "a/b", "2")).await.unwrap();
    assert!(matches!(
        out,
        WriteOutcome::Written {
            seq: 2,
            existed: true,
            ..
        }
    ));
    let r = store.get("T", "a/b").unwrap().unwrap();
    assert_eq!((r.value.as_ref(), r.seq, r.node), (&b"2"[..], 2, 1));
    assert_eq!(store.get("T", "a").unwrap(), None);
    assert_eq!(store.get("U", "a/b").unwrap(), None);
    assert_eq!(store.last_seq(), 2);
}

#[tokio::test]
async fn deleting_reports_whether_the_record_existed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.write_one(put("T", "x", "1")).await.unwrap();
    let del = || WriteOp::local("T", "x", Mutation::Delete);
    assert!(matches!(
        store.write_one(del()).await.unwrap(),
        WriteOutcome::Written { existed: true, .. }
    ));
    assert_eq!(
        store.write_one(del()).await.unwrap(),
        WriteOutcome::Unchanged { existed: false }
    );
    assert_eq!(store.get("T", "x").unwrap(), None);
    assert_eq!(store.scan("T", "").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_all_acknowledged_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let tasks: Vec<_> = (0..256)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    store
                        .write_one(put("T", &format!("{w:03}/{i:02}"), "v"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.last_seq(), 256 * 20);
    assert_eq!(store.scan("T", "").count(), 256 * 20);
    assert_eq!(store.scan("T", "007/").count(), 20);
}

#[tokio::test]
async fn read_modify_write_loses_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let increment = || {
        WriteOp::local(
            "C",
            "n",
            Mutation::Modify(Box::new(|current: Option<&Record>| {
                let n: u64 = current
                    .map(|r| std::str::from_utf8(&r.value).unwrap().parse().unwrap())
                    .unwrap_or(0);
                Ok(Decision::Put {
                    value: Bytes::from((n + 1).to_string()),
                    index: vec![],
                })
            })),
        )
    };
    // Many increments in one request and many concurrent requests: the
    // writer sees writes earlier in its own batch.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write((0..10).map(|_| increment()).collect())
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(value(&store, "C", "n").as_deref(), Some("500"));
}

#[tokio::test]
async fn a_refused_modify_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let op = WriteOp::local(
        "T",
        "a",
        Mutation::Modify(Box::new(|_| Err("no such record".into()))),
    );
    assert_eq!(
        store.write_one(op).await.unwrap(),
        WriteOutcome::Rejected("no such record".into())
    );
    assert_eq!(store.last_seq(), 0);
}

#[tokio::test]
async fn last_writer_wins_on_timestamp_then_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let stamped = |v: &str, hlc, node| WriteOp {
        stamp: Some((hlc, node)),
        ..put("T", "k", v)
    };
    store.write_one(stamped("b", 100 << 16, 2)).await.unwrap();
    assert_eq!(
        store.write_one(stamped("a", 99 << 16, 9)).await.unwrap(),
        WriteOutcome::Superseded
    );
    assert_eq!(
        store.write_one(stamped("c", 100 << 16, 1)).await.unwrap(),
        WriteOutcome::Superseded
    );
    assert!(matches!(
        store.write_one(stamped("d", 100 << 16, 3)).await.unwrap(),
        WriteOutcome::Written { .. }
    ));
    assert_eq!(value(&store, "T", "k").as_deref(), Some("d"));
    // A replicated delete leaves a tombstone: an older put cannot resurrect.
    let delete = WriteOp {
        stamp: Some((200 << 16, 1)),
        ..WriteOp::local("T", "k", Mutation::Delete)
    };
    store.write_one(delete).await.unwrap();
    assert_eq!(
        store
            .write_one(stamped("zombie", 150 << 16, 9))
            .await
            .unwrap(),
        WriteOutcome::Superseded
    );
    assert_eq!(store.get("T", "k").unwrap(), None);
    // A local write is stamped after everything observed, so it wins.
    assert!(matches!(
        store.write_one(put("T", "k", "local")).await.unwrap(),
        WriteOutcome::Written { .. }
    ));
    assert!(store.get("T", "k").unwrap().unwrap().hlc > 200 << 16);
}

fn overwrite(id: &str, value: &str) -> WriteOp {
    WriteOp::local(
        "T",
        id,
        Mutation::Overwrite {
            value: Bytes::copy_from_slice(value.as_bytes()),
        },
    )
}

/// `Overwrite` writes without reading: records, versions and the feed are
/// as with `Put`; only `existed` is not known (reported false).
#[tokio::test]
async fn an_overwrite_creates_and_replaces_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut cursor = store.follow(0);
    let first = store.write_one(overwrite("k", "1")).await.unwrap();
    // Twice in one group, then once more alone: the last value wins.
    let outcomes = store
        .write(vec![overwrite("k", "2"), overwrite("k", "3")])
        .await
        .unwrap();
    let last = store.write_one(overwrite("k", "4")).await.unwrap();
    for outcome in [&first, &outcomes[0], &outcomes[1], &last] {
        assert!(
            matches!(outcome, WriteOutcome::Written { existed: false, .. }),
            "{outcome:?}"
        );
    }
    assert_eq!(value(&store, "T", "k").as_deref(), Some("4"));
    let WriteOutcome::Written { seq, .. } = last else {
        unreachable!()
    };
    assert_eq!(store.get("T", "k").unwrap().unwrap().seq, seq);
    let mut values = Vec::new();
    for _ in 0..4 {
        match &cursor.next().await.unwrap().op {
            ChangeOp::Put(v) => values.push(String::from_utf8(v.to_vec()).unwrap()),
            ChangeOp::Delete => panic!("a delete"),
        }
    }
    assert_eq!(values, ["1", "2", "3", "4"]);
    // A replicated overwrite still follows last-writer-wins.
    let old = WriteOp {
        stamp: Some((1, 9)),
        ..overwrite("k", "stale")
    };
    assert_eq!(
        store.write_one(old).await.unwrap(),
        WriteOutcome::Superseded
    );
    assert_eq!(value(&store, "T", "k").as_deref(), Some("4"));
    // It survives a reopen like any write.
    drop(cursor);
    drop(store);
    let store = open(&dir);
    assert_eq!(value(&store, "T", "k").as_deref(), Some("4"));
}

fn indexed(id: &str, key: &[u8]) -> WriteOp {
    WriteOp::local(
        "D",
        id,
        Mutation::Put {
            value: Bytes::from_static(b"{}"),
            index: vec![IndexEntry {
                attribute: "room".into(),
                value_key: key.to_vec(),
            }],
        },
    )
}

fn ids(store: &Store, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Vec<String> {
    store
        .index_range("D", "room", lo, hi)
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn indexes_follow_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for (id, k) in [("a", b"1"), ("b", b"2"), ("c", b"2"), ("d", b"3")] {
        store.write_one(indexed(id, k)).await.unwrap();
    }
    let eq = |k: &'static [u8]| (Bound::Included(k), Bound::Included(k));
    assert_eq!(ids(&store, eq(b"2").0, eq(b"2").1), ["b", "c"]);
    assert_eq!(
        ids(&store, Bound::Excluded(b"1"), Bound::Excluded(b"3")),
        ["b", "c"]
    );
    assert_eq!(
        ids(&store, Bound::Unbounded, Bound::Unbounded),
        ["a", "b", "c", "d"]
    );
    store.write_one(indexed("b", b"3")).await.unwrap();
    store
        .write_one(WriteOp::local("D", "c", Mutation::Delete))
        .await
        .unwrap();
    assert_eq!(ids(&store, eq(b"2").0, eq(b"2").1), Vec::<String>::new());
    assert_eq!(
        ids(&store, Bound::Included(b"3"), Bound::Unbounded),
        ["b", "d"]
    );
}

#[tokio::test]
async fn the_feed_delivers_every_change_in_order_even_after_lagging() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.write_one(put("T", "before", "0")).await.unwrap();
    let mut cursor = store.follow(0);
    // More changes than the in-memory feed holds, while nobody reads.
    let n = 20_000u64;
    for chunk in 0..(n / 1000) {
        store
            .write(
                (0..1000)
                    .map(|i| put("T", &format!("{chunk}-{i}"), "v"))
                    .collect(),
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < (n + 1) as usize {
        seen.push(cursor.next().await.unwrap().seq);
    }
    assert_eq!(seen, (1..=n + 1).collect::<Vec<_>>());
    let first = store.changes(1, 1).next().unwrap().unwrap();
    assert_eq!((&*first.table, &*first.id), ("T", "before"));
}

/// A cursor far behind (more than one catch-up step from the log) that
/// also receives new changes on the broadcast fills the whole hole first.
#[tokio::test]
async fn a_cursor_far_behind_gets_the_log_before_newer_broadcast_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .write(
            (0..3000)
                .map(|i| put("T", &format!("old-{i}"), "v"))
                .collect(),
        )
        .await
        .unwrap();
    let mut cursor = store.follow(0);
    // Committed after the cursor subscribed: on its broadcast receiver too
    // (an acknowledged change is already on the feed).
    for i in 0..5 {
        store
            .write_one(put("T", &format!("new-{i}"), "v"))
            .await
            .unwrap();
    }
    let read_all = async {
        let mut seen = Vec::new();
        while seen.len() < 3005 {
            seen.push(cursor.next().await.unwrap().seq);
        }
        seen
    };
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), read_all)
        .await
        .expect("changes were skipped: the cursor waits for ones it passed");
    assert_eq!(seen, (1..=3005).collect::<Vec<_>>());
}

#[tokio::test]
async fn reopening_keeps_records_and_continues_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        store.write_one(put("T", "a", "1")).await.unwrap();
        store.write_one(indexed("x", b"7")).await.unwrap();
    }
    let store = open(&dir);
    assert_eq!(value(&store, "T", "a").as_deref(), Some("1"));
    assert_eq!(store.last_seq(), 2);
    let out = store.write_one(put("T", "b", "2")).await.unwrap();
    assert!(matches!(out, WriteOutcome::Written { seq: 3, .. }));
    assert_eq!(ids(&store, Bound::Unbounded, Bound::Unbounded), ["x"]);
    let change: Vec<Arc<Change>> = store.changes(1, 3).map(Result::unwrap).collect();
    assert_eq!(change.len(), 3);
}

#[tokio::test]
async fn invalid_keys_are_refused_before_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert!(matches!(
        store.write_one(put("", "a", "1")).await,
        Err(StorageError::InvalidKey(_))
    ));
    assert!(matches!(
        store.write_one(put("T", "a\0b", "1")).await,
        Err(StorageError::InvalidKey(_))
    ));
}
