//! The resource layer by scenario, over a real store in a temporary directory:
//! the record rules (primary key, validation, binary records), patch, create,
//! delete, queries with and without indexes, and watches.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use mqdb_resource::*;
use mqdb_storage::{Store, StoreConfig};

const SCHEMA: &str = r#"
type Sensor @table @export
type Device @table @export(name: "devices") {
  id: ID @primaryKey
  name: String
  temp: Float
  room: String @indexed
  floor: Int @indexed
}
"#;

fn db(dir: &tempfile::TempDir) -> Database {
    let store = Store::open(StoreConfig {
        path: dir.path().to_path_buf(),
        sync: true,
        node: 0,
    })
    .unwrap();
    Database::new(
        store,
        Schema::parse(SCHEMA, Path::new("schema.graphql")).unwrap(),
    )
}

fn map(json: &str) -> Map {
    match Format::Json.decode(json.as_bytes()).unwrap() {
        Value::Map(m) => m,
        other => panic!("not a map: {other:?}"),
    }
}

fn json(body: &Body) -> String {
    match body {
        Body::Map(m) => String::from_utf8(Format::Json.encode(&Value::Map(m.clone()))).unwrap(),
        Body::Binary(b) => format!("binary:{}", String::from_utf8_lossy(b)),
    }
}

#[tokio::test]
async fn the_primary_key_is_the_id_whatever_the_body_says() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir);
    let t = db.exported("devices").unwrap().clone();
    db.put(
        &t,
        "a/b",
        Body::Map(map(r#"{"id":"other","temp":1.5}"#)),
        Meta::default(),
    )
    .await
    .unwrap();
    let e = db.get(&t, "a/b").unwrap().unwrap();
    assert_eq!(json(&e.body), r#"{"id":"a/b","temp":1.5}"#);
    let sensor = db.exported("Sensor").unwrap().clone();
    db.put(&sensor, "s1", Body::Map(map(r#"{"v":1}"#)), Meta::default())
        .await
        .unwrap();
    assert_eq!(
        json(&db.get(&sensor, "s1").unwrap().unwrap().body),
        r#"{"id":"s1","v":1}"#
    );
}

#[tokio::test]
async fn typed_tables_refuse_wrong_types_and_binary_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir);
    let t = db.exported("devices").unwrap().clone();
    let err = db
        .put(
            &t,
            "d",
            Body::Map(map(r#"{"temp":"hot"}"#)),
            Meta::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ResourceError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("temp"), "{err}");
    let err = db
        .put(
            &t,
            "d",
            Body::Binary(Bytes::from_static(b"hi")),
            Meta::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ResourceError::Unprocessable(_)));
    assert_eq!(db.get(&t, "d").unwrap(), None);
    assert!(
        db.exported("Device").is_err(),
        "exported under its name only"
    );
    assert!(matches!(
        db.exported("Nope"),
        Err(ResourceError::UnknownTable(_))
    ));
}

#[tokio::test]
async fn binary_records_keep_their_bytes_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir);
    let t = db.exported("Sensor").unwrap().clone();
    let meta = Meta {
        content_type: Some("text/plain".into()),
        ..Meta::default()
    };
    db.put(
        &t,
        "x",
        Body::Binary(Bytes::from_static(b"\x00raw\xff")),
        meta.clone(),
    )
    .await
    .unwrap();
    let e = db.get(&t, "x").unwrap().unwrap();
    assert_eq!(e.body, Body::Binary(Bytes::from_static(b"\x00raw\xff")));
    assert_eq!(e.meta, meta);
}

#[tokio::test]
async fn patch_merges_removes_nulls_and_needs_an_existing_map() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir);
    let t = db.exported("devices").unwrap().clone();
    let err = db.patch(&t, "d", map(r#"{"temp":2.0}"#)).await.unwrap_err();
    assert!(matches!(err, ResourceError::NotFound { .. }), "{err:?}");
    db.put(
        &t,
        "d",
        Body::Map(map(r#"{"name":"n","temp":1.0}"#)),
        Meta::default(),
    )
    .await
    .unwrap();
    let w = db
        .patch(&t, "d", map(r#"{"temp":2.5,"name":null,"room":"k"}"#))
        .await
        .unwrap();
    assert!(w.existed);
    assert_eq!(
        json(&db.get(&t, "d").unwrap().unwrap().body),
        r#"{"id":"d","temp":2.5,"room":"k"}"#
    );
    let err = db.patch(&t, "d", map(r#"{"temp":"x"}"#)).await.unwrap_err();
    assert!(matches!(err, ResourceError::Invalid(_)), "{err:?}");
    let s = db.exported("Sensor").unwrap().clone();
    db.put(
        &s,
        "b",
        Body::Binary(Bytes::from_static(b"raw")),
        Meta::default(),
    )
    .await
    .unwrap();
    let err = db.patch(&s, "b", map(r#"{"a":1}"#)).await.unwrap_err();
    assert!(matches!(err, ResourceError::Unprocessable(_)), "{err:?}");
}

#[tokio::test]
async fn create_generates_distinct_ids_and_delete_reports_existence() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir);
    let t = db.exported("Sensor").unwrap().clone();
    let (a, _) = db
        .create(&t, Body::Map(map(r#"{"v":1}"#)), Meta::default())
        .await
        .unwrap();
    let (b, _) = db
        .create(&t, Body::Map(map(r#"{"v":2}"#)), Meta::default())
        .await
        .unwrap();
    assert_ne!(a, b);
    assert!(a < b, "ids are time-ordered");
    assert!(db.delete(&t, &a).await.unwrap());
    assert!(!db.delete(&t, &a).await.unwrap());
    assert_eq!(db.get(&t, &a).unwrap(), None);
    assert!(db.get(&t, &b).unwrap().is_some());
}

async fn seed(db: &Database) -> TableDef {
    let t = db.exported("devices").unwrap().clone();
    for (id, room, floor, temp) in [
        ("a", "kitchen", 1, 20.5),
        ("b", "hall", 2, 18.0),
        ("c", "kitchen", 3, 22.0),
        ("d", "attic", 3, 15.0),
    ] {
        let body = map(&format!(
            r#"{{"room":"{room}","floor":{floor},"temp":{temp:?}}}"#
        ));
        db.put(&t, id, Body::Map(body), Meta::default())
            .await
            .unwrap();
    }
    t
}

fn ids(db: &Database, t: &TableDef, q: &str) -> Vec<String> {
    db.query(t, &Query::parse(q).unwrap())
        .unwrap()
        .map(|e| e.unwrap().id)
        .collect()
}

#[tokio::test]
async fn queries_filter_sort_limit_and_select() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir);
    let t = seed(&db).await;
    assert_eq!(ids(&db, &t, "room=kitchen"), ["a", "c"]); // index
    assert_eq!(ids(&db, &t, "floor=ge=2&room=kitchen"), ["c"]); // index + filter
    assert_eq!(ids(&db, &t, "floor=lt=3"), ["a", "b"]);
    assert_eq!(ids(&db, &t, "temp=gt=19"), ["a", "c"]); // no index
    assert_eq!(ids(&db, &t, "room=ne=kitchen"), ["b", "d"]);
    assert_eq!(ids(&db, &t, "sort(-temp)&limit(2)"), ["c", "a"]);
    assert_eq!(ids(&db, &t, "sort(floor)"), ["a", "b", "c", "d"]);
    assert_eq!(ids(&db, &t, "limit(1)"), ["a"]);
    let e = db
        .query(&t, &Query::parse("select(temp)&room=hall").unwrap())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(json(&e.body), r#"{"id":"b","temp":18.0}"#);
    // The index follows updates.
    db.patch(&t, "a", map(r#"{"room":"hall"}"#)).await.unwrap();
    assert_eq!(ids(&db, &t, "room=kitchen"), ["c"]);
    assert_eq!(ids(&db, &t, "room=hall"), ["a", "b"]);
}

async fn next(w: &mut Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("event in time")
        .unwrap()
}

fn put_id(e: &WatchEvent) -> (&str, bool) {
    match e {
        WatchEvent::Put { entry, initial } => (entry.id.as_str(), *initial),
        other => panic!("expected a put, got {other:?}"),
    }
}

#[tokio::test]
async fn a_record_watch_sees_the_current_value_then_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir);
    let t = seed(&db).await;
    let mut w = db.watch(&t, WatchTarget::Record("a".into()));
    assert_eq!(put_id(&next(&mut w).await), ("a", true));
    db.patch(&t, "b", map(r#"{"temp":1.0}"#)).await.unwrap(); // not watched
    db.patch(&t, "a", map(r#"{"temp":1.0}"#)).await.unwrap();
    assert_eq!(put_id(&next(&mut w).await), ("a", false));
    db.delete(&t, "a").await.unwrap();
    assert!(matches!(next(&mut w).await, WatchEvent::Delete { id, .. } if id == "a"));
}

#[tokio::test]
async fn a_query_watch_reports_records_that_stop_matching_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir);
    let t = seed(&db).await;
    let mut w = db.watch(
        &t,
        WatchTarget::Query(Query::parse("room=kitchen").unwrap()),
    );
    let mut initial = vec![
        put_id(&next(&mut w).await).0.to_owned(),
        put_id(&next(&mut w).await).0.to_owned(),
    ];
    initial.sort();
    assert_eq!(initial, ["a", "c"]);
    db.patch(&t, "b", map(r#"{"room":"kitchen"}"#))
        .await
        .unwrap(); // starts matching
    assert_eq!(put_id(&next(&mut w).await), ("b", false));
    db.patch(&t, "a", map(r#"{"room":"hall"}"#)).await.unwrap(); // stops matching
    assert!(matches!(next(&mut w).await, WatchEvent::Delete { id, .. } if id == "a"));
    db.patch(&t, "a", map(r#"{"temp":3.0}"#)).await.unwrap(); // still not matching: silent
    db.delete(&t, "d").await.unwrap(); // never matched: silent
    db.patch(&t, "c", map(r#"{"temp":3.0}"#)).await.unwrap();
    assert_eq!(put_id(&next(&mut w).await), ("c", false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_watch_under_concurrent_writes_has_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir);
    let t = db.exported("Sensor").unwrap().clone();
    for i in 0..200 {
        db.put(
            &t,
            &format!("p/{i:03}"),
            Body::Map(map(r#"{"n":0}"#)),
            Meta::default(),
        )
        .await
        .unwrap();
    }
    let writer = {
        let (db, t) = (db.clone(), t.clone());
        tokio::spawn(async move {
            for i in 0..200 {
                db.put(
                    &t,
                    &format!("p/{i:03}"),
                    Body::Map(map(r#"{"n":1}"#)),
                    Meta::default(),
                )
                .await
                .unwrap();
            }
        })
    };
    let mut w = db.watch(&t, WatchTarget::Prefix("p/".into()));
    // Every record ends at n=1, each version is seen at most once, in order.
    let mut last_version = std::collections::HashMap::new();
    let mut done = std::collections::HashSet::new();
    while done.len() < 200 {
        let WatchEvent::Put { entry, .. } = next(&mut w).await else {
            panic!("no deletes here")
        };
        let prev = last_version.insert(entry.id.clone(), entry.version);
        assert!(
            prev.is_none_or(|p| p < entry.version),
            "duplicate or reordered {}",
            entry.id
        );
        if json(&entry.body).contains(r#""n":1"#) {
            done.insert(entry.id);
        }
    }
    writer.await.unwrap();
}
