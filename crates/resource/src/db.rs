//! `Database`: the operations MQTT and REST share — get, put (replace),
//! patch (merge), create, delete, query and watch — over the exported tables
//! of the schema. Every rule about records (the primary key equals the id,
//! typed tables validate, indexes follow the record) is applied here, once.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use mqdb_storage::{Decision, IndexEntry, Mutation, Record, Store, WriteOp, WriteOutcome, millis};

use crate::error::ResourceError;
use crate::query::{Op, Query};
use crate::record::{self, Body, Meta};
use crate::schema::{AttrType, Schema, TableDef};
use crate::value::{Map, Value};
use crate::watch::{Watch, WatchTarget};

/// A record as read: id, value, metadata, version and timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Record id.
    pub id: String,
    /// Its value.
    pub body: Body,
    /// Message metadata stored with it.
    pub meta: Meta,
    /// Version: the sequence number of the change that wrote it.
    pub version: u64,
    /// Timestamp of that change, Unix milliseconds.
    pub timestamp: u64,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The record's new version.
    pub version: u64,
    /// Whether the record existed before.
    pub existed: bool,
}

/// A queued write: resolves when it is committed.
pub type Completion =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ResourceError>> + Send>>;

/// The resource layer over one store and schema. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    store: Store,
    schema: Arc<Schema>,
}

impl Database {
    /// The operations over `store` with the tables of `schema`.
    pub fn new(store: Store, schema: Schema) -> Database {
        Database {
            store,
            schema: Arc::new(schema),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The exported table reachable under `path`.
    pub fn exported(&self, path: &str) -> Result<&TableDef, ResourceError> {
        self.schema
            .exported(path)
            .ok_or_else(|| ResourceError::UnknownTable(path.to_owned()))
    }

    /// The record `id` of `table`.
    pub fn get(&self, table: &TableDef, id: &str) -> Result<Option<Entry>, ResourceError> {
        Ok(self
            .store
            .get(&table.name, id)?
            .map(entry)
            .transpose()?
            .filter(live))
    }

    /// Replaces (or creates) the record `id`.
    pub async fn put(
        &self,
        table: &TableDef,
        id: &str,
        body: Body,
        meta: Meta,
    ) -> Result<Written, ResourceError> {
        let (value, index) = prepare(table, id, body, &meta)?;
        let outcome = self
            .write(table, id, Mutation::Put { value, index })
            .await?;
        written(table, id, outcome)
    }

    /// Queues a replace of the record `id` and returns once it is queued;
    /// the returned future resolves when it is committed. Validation errors
    /// are returned at once. Submissions commit in the order they are made.
    pub async fn submit_put(
        &self,
        table: &TableDef,
        id: &str,
        body: Body,
        meta: Meta,
    ) -> Result<Completion, ResourceError> {
        let (value, index) = prepare(table, id, body, &meta)?;
        // Without an index the writer need not read the old record first
        // (this path does not report whether it existed).
        let mutation = if index.is_empty() && table.indexed_attributes().next().is_none() {
            Mutation::Overwrite { value }
        } else {
            Mutation::Put { value, index }
        };
        self.submit(table, id, mutation).await
    }

    /// Queues a delete of the record `id` (see [`Database::submit_put`]).
    pub async fn submit_delete(
        &self,
        table: &TableDef,
        id: &str,
    ) -> Result<Completion, ResourceError> {
        self.submit(table, id, Mutation::Delete).await
    }

    async fn submit(
        &self,
        table: &TableDef,
        id: &str,
        mutation: Mutation,
    ) -> Result<Completion, ResourceError> {
        if id.is_empty() {
            return Err(ResourceError::BadId("empty id".into()));
        }
        let pending = self
            .store
            .submit(vec![WriteOp::local(table.name.as_str(), id, mutation)])
            .await?;
        Ok(Box::pin(async move {
            pending.outcome().await?;
            Ok(())
        }))
    }

    /// Merges `patch` into the existing record `id`: each attribute of the
    /// patch replaces the record's, and a `null` removes it. The merge runs in
    /// the writer, so concurrent patches never lose each other's changes.
    pub async fn patch(
        &self,
        table: &TableDef,
        id: &str,
        patch: Map,
    ) -> Result<Written, ResourceError> {
        let failure: Arc<Mutex<Option<ResourceError>>> = Arc::default();
        let fail = failure.clone();
        let def = table.clone();
        let owned_id = id.to_owned();
        let merge = move |current: Option<&Record>| -> Result<Decision, String> {
            let result = (|| {
                let current = current.ok_or_else(|| not_found(&def, &owned_id))?;
                let (body, meta) = record::decode(current.value.clone())?;
                let Body::Map(mut map) = body else {
                    return Err(ResourceError::Unprocessable(format!(
                        "record `{owned_id}` of {} is binary: it can be replaced, not patched",
                        def.name
                    )));
                };
                for (k, v) in patch {
                    if v.is_null() {
                        map.shift_remove(&k);
                    } else {
                        map.insert(k, v);
                    }
                }
                let (value, index) = prepare(&def, &owned_id, Body::Map(map), &meta)?;
                Ok(Decision::Put { value, index })
            })();
            result.map_err(|e| {
                let message = e.to_string();
                *fail.lock().expect("not poisoned") = Some(e);
                message
            })
        };
        let outcome = self
            .write(table, id, Mutation::Modify(Box::new(merge)))
            .await?;
        if let WriteOutcome::Rejected(_) = outcome {
            if let Some(e) = failure.lock().expect("not poisoned").take() {
                return Err(e);
            }
        }
        written(table, id, outcome)
    }

    /// Creates a record with a generated id; returns the id.
    pub async fn create(
        &self,
        table: &TableDef,
        body: Body,
        meta: Meta,
    ) -> Result<(String, Written), ResourceError> {
        let id = generate_id(table.primary_key_type());
        let written = self.put(table, &id, body, meta).await?;
        Ok((id, written))
    }

    /// Deletes the record `id`; `Ok(false)` if there was none.
    pub async fn delete(&self, table: &TableDef, id: &str) -> Result<bool, ResourceError> {
        match self.write(table, id, Mutation::Delete).await? {
            WriteOutcome::Written { existed, .. } => Ok(existed),
            _ => Ok(false),
        }
    }

    /// Records of `table` that satisfy `query`, projected, sorted and limited.
    /// Uses an index when a condition is on an indexed attribute. Without
    /// `sort`, records are streamed; with it, the matches are collected.
    pub fn query(
        &self,
        table: &TableDef,
        query: &Query,
    ) -> Result<Box<dyn Iterator<Item = Result<Entry, ResourceError>> + Send>, ResourceError> {
        let candidates = self.candidates(table, query);
        let def = table.clone();
        let q = query.clone();
        let matching = candidates.filter_map(move |e| match e {
            Ok(entry) => match &entry.body {
                Body::Map(m) if q.matches(&def, m) => Some(Ok(entry)),
                Body::Binary(_) if q.conditions.is_empty() => Some(Ok(entry)),
                _ => None,
            },
            Err(e) => Some(Err(e)),
        });
        let def = table.clone();
        let q = query.clone();
        let project = move |e: Result<Entry, ResourceError>| {
            e.map(|mut entry| {
                if let Body::Map(m) = entry.body {
                    entry.body = Body::Map(q.project(&def, m));
                }
                entry
            })
        };
        let limit = query.limit.unwrap_or(usize::MAX);
        if query.sort.is_none() {
            return Ok(Box::new(matching.take(limit).map(project)));
        }
        let mut all = matching.collect::<Result<Vec<_>, _>>()?;
        let empty = Map::new();
        all.sort_by(|a, b| {
            query.order(
                a.body.as_map().unwrap_or(&empty),
                b.body.as_map().unwrap_or(&empty),
            )
        });
        all.truncate(limit);
        Ok(Box::new(all.into_iter().map(Ok).map(project)))
    }

    /// Every record of `table` whose id starts with `prefix`, in id order.
    pub fn scan(
        &self,
        table: &TableDef,
        prefix: &str,
    ) -> impl Iterator<Item = Result<Entry, ResourceError>> + Send + use<> {
        self.store
            .scan(&table.name, prefix)
            .map(|r| entry(r?))
            .filter(|e| e.as_ref().map_or(true, live))
    }

    /// The current matching records, then every change to them.
    pub fn watch(&self, table: &TableDef, target: WatchTarget) -> Watch {
        Watch::new(self.clone(), table.clone(), target)
    }

    fn candidates(
        &self,
        table: &TableDef,
        query: &Query,
    ) -> Box<dyn Iterator<Item = Result<Entry, ResourceError>> + Send> {
        use std::ops::Bound;
        let indexed = query.conditions.iter().find_map(|c| {
            let attr = table
                .attribute(&c.attribute)
                .filter(|a| a.indexed && !a.list)?;
            let literal = c.literals(table).into_iter().next()?;
            let key = literal.index_key()?;
            (c.op != Op::Ne).then_some((attr.name.clone(), c.op, key))
        });
        let Some((attr, op, key)) = indexed else {
            return Box::new(self.scan(table, ""));
        };
        let (lo, hi) = match op {
            Op::Eq => (Bound::Included(&key[..]), Bound::Included(&key[..])),
            Op::Gt => (Bound::Excluded(&key[..]), Bound::Unbounded),
            Op::Ge => (Bound::Included(&key[..]), Bound::Unbounded),
            Op::Lt => (Bound::Unbounded, Bound::Excluded(&key[..])),
            Op::Le | Op::Ne => (Bound::Unbounded, Bound::Included(&key[..])),
        };
        let store = self.store.clone();
        let name = table.name.clone();
        Box::new(
            self.store
                .index_range(&table.name, &attr, lo, hi)
                .filter_map(move |id| match id {
                    Ok(id) => store
                        .get(&name, &id)
                        .map_err(ResourceError::from)
                        .and_then(|r| r.map(entry).transpose())
                        .transpose(),
                    Err(e) => Some(Err(e.into())),
                }),
        )
    }

    async fn write(
        &self,
        table: &TableDef,
        id: &str,
        mutation: Mutation,
    ) -> Result<WriteOutcome, ResourceError> {
        if id.is_empty() {
            return Err(ResourceError::BadId("empty id".into()));
        }
        Ok(self
            .store
            .write_one(WriteOp::local(table.name.as_str(), id, mutation))
            .await?)
    }
}

/// False for a record whose time to live has passed (it is about to be
/// deleted; until then it is not served).
fn live(e: &Entry) -> bool {
    e.meta.expires_at.is_none_or(|at| {
        at > std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}

fn not_found(table: &TableDef, id: &str) -> ResourceError {
    ResourceError::NotFound {
        table: table.name.clone(),
        id: id.to_owned(),
    }
}

fn written(table: &TableDef, id: &str, outcome: WriteOutcome) -> Result<Written, ResourceError> {
    match outcome {
        WriteOutcome::Written { seq, existed, .. } => Ok(Written {
            version: seq,
            existed,
        }),
        WriteOutcome::Rejected(why) => Err(ResourceError::Unprocessable(why)),
        WriteOutcome::Unchanged { .. } | WriteOutcome::Superseded => Err(not_found(table, id)),
    }
}

/// Decodes a stored record into an entry.
pub(crate) fn entry(r: Record) -> Result<Entry, ResourceError> {
    let (body, meta) = record::decode(r.value)?;
    Ok(Entry {
        id: r.id,
        body,
        meta,
        version: r.seq,
        timestamp: millis(r.hlc),
    })
}

/// Applies the record rules and encodes the record for storage: the primary
/// key attribute is set to the id, a typed table validates the record (and
/// refuses binary records), and indexed attributes get their index entries.
pub(crate) fn prepare(
    table: &TableDef,
    id: &str,
    body: Body,
    meta: &Meta,
) -> Result<(Bytes, Vec<IndexEntry>), ResourceError> {
    let body = match body {
        Body::Map(mut map) => {
            let key = match table.primary_key_type() {
                AttrType::Int | AttrType::Long => id
                    .parse::<i64>()
                    .map(Value::Int)
                    .unwrap_or_else(|_| Value::String(id.into())),
                _ => Value::String(id.into()),
            };
            match map.get_mut(&table.primary_key) {
                Some(v) => *v = key,
                None => {
                    map.shift_insert(0, table.primary_key.clone(), key);
                }
            }
            let value = Value::Map(map);
            table.validate(&value)?;
            let Value::Map(map) = value else {
                unreachable!("validated as a map")
            };
            Body::Map(map)
        }
        Body::Binary(bytes) => {
            if !table.schemaless {
                return Err(ResourceError::Unprocessable(format!(
                    "{} has a schema: its records must be maps, not binary payloads",
                    table.name
                )));
            }
            Body::Binary(bytes)
        }
    };
    let index = match &body {
        Body::Map(map) => table
            .indexed_attributes()
            .filter_map(|a| {
                let key = map.get(&a.name)?.index_key()?;
                Some(IndexEntry {
                    attribute: a.name.clone(),
                    value_key: key,
                })
            })
            .collect(),
        Body::Binary(_) => Vec::new(),
    };
    Ok((record::encode(&body, meta), index))
}

/// A fresh record id, time-ordered (so new records sort last): for an Int
/// or Long primary key a number (microseconds since the epoch times 1,000
/// plus a counter, within i64), else 32 hex digits of time and randomness.
fn generate_id(key_type: AttrType) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    match key_type {
        AttrType::Int => {
            // i32 range: seconds since 2020 can only be unique per second,
            // so add the counter's low bits.
            let secs = since_epoch.as_secs().saturating_sub(1_577_836_800);
            let n = (secs << 8 | (COUNTER.load(Ordering::Relaxed) & 0xFF)) & 0x7FFF_FFFF;
            n.to_string()
        }
        AttrType::Long => {
            let micros = since_epoch.as_micros() as u64;
            (micros * 1000 + COUNTER.load(Ordering::Relaxed) % 1000).to_string()
        }
        _ => format!("{:016x}{:016x}", since_epoch.as_nanos() as u64, h.finish()),
    }
}
