//! `Watch`: the current state of a record, an id prefix or a query, then every
//! change to it, without a gap or a duplicate.
//!
//! The cursor on the change feed is opened at sequence S *before* the
//! current records are read, so no change after S can be missed. A record
//! read during that scan may already carry a change newer than S; its version
//! is remembered and the same change arriving from the feed is skipped. For a
//! query, a record that stops matching is reported once, as a delete.

use std::collections::{HashMap, HashSet};

use mqdb_storage::{ChangeCursor, ChangeOp, millis};

use crate::db::{Database, Entry, entry};
use crate::error::ResourceError;
use crate::query::Query;
use crate::record::Body;
use crate::schema::TableDef;

/// What to watch in a table.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchTarget {
    /// One record.
    Record(String),
    /// Every record whose id starts with this prefix ("" for the whole table).
    Prefix(String),
    /// Every record that satisfies the query.
    Query(Query),
}

/// One event of a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// A current record (initial state) or a record's new value.
    Put {
        /// The record.
        entry: Entry,
        /// True while the initial state is delivered, false for changes.
        initial: bool,
    },
    /// The record was deleted, or (for a query) no longer matches.
    Delete {
        /// Record id.
        id: String,
        /// Version of the change.
        version: u64,
        /// Timestamp of the change, Unix milliseconds.
        timestamp: u64,
    },
}

type EntryIter = Box<dyn Iterator<Item = Result<Entry, ResourceError>> + Send>;

/// A running watch. Call [`Watch::next`] until it returns an error.
pub struct Watch {
    db: Database,
    table: TableDef,
    target: WatchTarget,
    cursor: ChangeCursor,
    start: u64,
    initial: Option<EntryIter>,
    /// Versions newer than `start` already delivered by the initial scan.
    seen: HashMap<String, u64>,
    /// For a query: ids that currently match.
    matching: HashSet<String>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("table", &self.table.name)
            .field("target", &self.target)
            .finish()
    }
}

impl Watch {
    pub(crate) fn new(db: Database, table: TableDef, target: WatchTarget) -> Watch {
        // Open the cursor first: nothing committed after `start` is missed.
        let start = db.store().last_seq();
        let cursor = db.store().follow(start);
        let initial: EntryIter = match &target {
            WatchTarget::Record(id) => Box::new(db.get(&table, id).transpose().into_iter()),
            WatchTarget::Prefix(prefix) => Box::new(db.scan(&table, prefix)),
            WatchTarget::Query(q) => {
                // Unprojected and unlimited: the watch must know every match.
                let q = Query {
                    conditions: q.conditions.clone(),
                    ..Query::default()
                };
                match db.query(&table, &q) {
                    Ok(iter) => iter,
                    Err(e) => Box::new(std::iter::once(Err(e))),
                }
            }
        };
        Watch {
            db,
            table,
            target,
            cursor,
            start,
            initial: Some(initial),
            seen: HashMap::new(),
            matching: HashSet::new(),
        }
    }

    /// The next event: first the current records, then changes as they commit.
    ///
    /// Cancel-safe: dropping the future before it completes loses no event
    /// (it can be raced in `select!`), because the only await is on the change
    /// feed cursor, whose position advances only when an event is returned.
    pub async fn next(&mut self) -> Result<WatchEvent, ResourceError> {
        if let Some(initial) = &mut self.initial {
            match initial.next() {
                Some(Ok(entry)) => {
                    if entry.version > self.start {
                        self.seen.insert(entry.id.clone(), entry.version);
                    }
                    if matches!(self.target, WatchTarget::Query(_)) {
                        self.matching.insert(entry.id.clone());
                    }
                    let entry = self.project(entry);
                    return Ok(WatchEvent::Put {
                        entry,
                        initial: true,
                    });
                }
                Some(Err(e)) => return Err(e),
                None => self.initial = None,
            }
        }
        loop {
            let change = self.cursor.next().await?;
            if *change.table != *self.table.name || !self.targets(&change.id) {
                continue;
            }
            if let Some(&version) = self.seen.get(&*change.id) {
                if change.seq <= version {
                    continue;
                }
                self.seen.remove(&*change.id);
            }
            let timestamp = millis(change.hlc);
            let delete = WatchEvent::Delete {
                id: change.id.to_string(),
                version: change.seq,
                timestamp,
            };
            let value = match &change.op {
                ChangeOp::Delete => {
                    if let WatchTarget::Query(_) = self.target {
                        if !self.matching.remove(&*change.id) {
                            continue;
                        }
                    }
                    return Ok(delete);
                }
                ChangeOp::Put(value) => value.clone(),
            };
            let record = mqdb_storage::Record {
                id: change.id.to_string(),
                value,
                seq: change.seq,
                hlc: change.hlc,
                node: change.node,
            };
            let entry = entry(record)?;
            if let WatchTarget::Query(q) = &self.target {
                let now_matches = match &entry.body {
                    Body::Map(m) => q.matches(&self.table, m),
                    Body::Binary(_) => q.conditions.is_empty(),
                };
                if !now_matches {
                    if self.matching.remove(&entry.id) {
                        return Ok(delete);
                    }
                    continue;
                }
                self.matching.insert(entry.id.clone());
            }
            let entry = self.project(entry);
            return Ok(WatchEvent::Put {
                entry,
                initial: false,
            });
        }
    }

    /// The database this watch reads.
    pub fn database(&self) -> &Database {
        &self.db
    }

    fn targets(&self, id: &str) -> bool {
        match &self.target {
            WatchTarget::Record(want) => id == want,
            WatchTarget::Prefix(prefix) => id.starts_with(prefix.as_str()),
            WatchTarget::Query(_) => true,
        }
    }

    fn project(&self, mut entry: Entry) -> Entry {
        if let (WatchTarget::Query(q), Body::Map(m)) = (&self.target, &entry.body) {
            entry.body = Body::Map(q.project(&self.table, m.clone()));
        }
        entry
    }
}
