//! `ChangeCursor`: the change feed as a gap-free, duplicate-free stream.
//!
//! The in-memory broadcast is fast but bounded; a receiver that falls behind
//! loses messages there. The cursor remembers the last sequence number it
//! delivered and fills any hole (lag, or changes committed before it
//! subscribed) from the change log, which holds every committed change.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};

use crate::{Change, StorageError, Store};

/// Changes read from the log per catch-up step.
const CATCH_UP_CHUNK: u64 = 1_024;

/// A cursor over the change feed.
#[derive(Debug)]
pub struct ChangeCursor {
    store: Store,
    rx: broadcast::Receiver<Arc<Change>>,
    last: u64,
    backlog: VecDeque<Arc<Change>>,
}

impl ChangeCursor {
    pub(crate) fn new(store: Store, rx: broadcast::Receiver<Arc<Change>>, after: u64) -> Self {
        ChangeCursor {
            store,
            rx,
            last: after,
            backlog: VecDeque::new(),
        }
    }

    /// The sequence number of the last change delivered.
    pub fn position(&self) -> u64 {
        self.last
    }

    /// The next change; `Err(Closed)` when the store is gone.
    pub async fn next(&mut self) -> Result<Arc<Change>, StorageError> {
        loop {
            if let Some(c) = self.backlog.pop_front() {
                self.last = c.seq;
                return Ok(c);
            }
            // What the broadcast already holds comes first: the log is read
            // only for a hole, not for a change still on its way here.
            match self.rx.try_recv() {
                Ok(c) => {
                    if let Some(c) = self.take(c)? {
                        return Ok(c);
                    }
                    continue;
                }
                Err(TryRecvError::Lagged(_)) => continue,
                Err(TryRecvError::Closed) => return Err(StorageError::Closed),
                Err(TryRecvError::Empty) => {}
            }
            // Changes committed before this cursor's subscription (or lost to
            // lag) are in the log up to last_seq.
            let committed = self.store.last_seq();
            if committed > self.last {
                self.fill_from_log(committed)?;
                if !self.backlog.is_empty() {
                    continue;
                }
            }
            match self.rx.recv().await {
                Ok(c) => {
                    if let Some(c) = self.take(c)? {
                        return Ok(c);
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return Err(StorageError::Closed),
            }
        }
    }

    /// A change from the broadcast: the next one (returned), an old one
    /// (dropped), or one after a hole (kept behind the hole, filled from
    /// the log).
    fn take(&mut self, c: Arc<Change>) -> Result<Option<Arc<Change>>, StorageError> {
        if c.seq <= self.last {
            return Ok(None);
        }
        if c.seq == self.last + 1 {
            self.last = c.seq;
            return Ok(Some(c));
        }
        self.fill_from_log(c.seq - 1)?;
        // A hole wider than one catch-up step is not filled yet: then `c`
        // is read again from the log (it is committed) after the rest.
        let filled_to = self.backlog.back().map_or(self.last, |b| b.seq);
        if filled_to + 1 == c.seq {
            self.backlog.push_back(c);
        }
        Ok(None)
    }

    fn fill_from_log(&mut self, upto: u64) -> Result<(), StorageError> {
        let to = upto.min(self.last + CATCH_UP_CHUNK);
        for change in self.store.changes(self.last + 1, to) {
            self.backlog.push_back(change?);
        }
        Ok(())
    }
}
