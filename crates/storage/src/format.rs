//! The on-disk layout: keys of the three keyspaces and the byte format of
//! records and change-log entries. Every stored value starts with a format
//! byte; a reader refuses formats it does not know instead of misreading them.
//!
//! ```text
//! records  key   table 0x00 id
//!          value [fmt=1][flags][hlc u64][node u64][seq u64][n u16]([len u16][index key])*[payload]
//! index    key   table 0x00 attribute 0x00 <order-preserving value key> id
//!          value id
//! log      key   seq u64 (big-endian, so keys sort in commit order)
//!          value [fmt=1][op][hlc u64][node u64][len u16][table][len u16][id][payload]
//! ```
//!
//! A record whose `flags` has the tombstone bit is a delete kept for
//! last-writer-wins: a replicated write older than the delete must not bring
//! the record back. Readers skip tombstones.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::StorageError;
use crate::hlc::Timestamp;

/// Current format byte of records and log entries.
pub(crate) const FORMAT_V1: u8 = 1;
const TOMBSTONE: u8 = 0b1;

/// A node of a cluster; a single server is node 0 unless configured.
pub type NodeId = u64;

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOp {
    /// The record now has this value.
    Put(Bytes),
    /// The record was deleted.
    Delete,
}

/// A stored record's metadata and payload, as read from the records keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredRecord {
    pub(crate) tombstone: bool,
    pub(crate) hlc: Timestamp,
    pub(crate) node: NodeId,
    pub(crate) seq: u64,
    pub(crate) index_keys: Vec<Bytes>,
    pub(crate) payload: Bytes,
}

pub(crate) fn validate_key_part(part: &str, what: &str) -> Result<(), StorageError> {
    if part.is_empty() && what == "table" {
        return Err(StorageError::InvalidKey("empty table name".into()));
    }
    if part.as_bytes().contains(&0) {
        return Err(StorageError::InvalidKey(format!(
            "{what} contains a NUL byte"
        )));
    }
    if part.len() > 16 * 1024 {
        return Err(StorageError::InvalidKey(format!(
            "{what} longer than 16 KiB"
        )));
    }
    Ok(())
}

pub(crate) fn record_key(table: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(table.len() + 1 + id.len());
    key.extend_from_slice(table.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The prefix under which all index entries of `table.attribute` live.
pub(crate) fn index_prefix(table: &str, attribute: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(table.len() + attribute.len() + 2);
    key.extend_from_slice(table.as_bytes());
    key.push(0);
    key.extend_from_slice(attribute.as_bytes());
    key.push(0);
    key
}

pub(crate) fn index_key(table: &str, attribute: &str, value_key: &[u8], id: &str) -> Vec<u8> {
    let mut key = index_prefix(table, attribute);
    key.extend_from_slice(value_key);
    key.extend_from_slice(id.as_bytes());
    key
}

pub(crate) fn encode_record(r: &StoredRecord) -> Bytes {
    let index_len: usize = r.index_keys.iter().map(|k| 2 + k.len()).sum();
    let mut buf = BytesMut::with_capacity(28 + index_len + r.payload.len());
    buf.put_u8(FORMAT_V1);
    buf.put_u8(if r.tombstone { TOMBSTONE } else { 0 });
    buf.put_u64(r.hlc);
    buf.put_u64(r.node);
    buf.put_u64(r.seq);
    buf.put_u16(r.index_keys.len() as u16);
    for k in &r.index_keys {
        buf.put_u16(k.len() as u16);
        buf.put_slice(k);
    }
    buf.put_slice(&r.payload);
    buf.freeze()
}

pub(crate) fn decode_record(mut buf: Bytes) -> Result<StoredRecord, StorageError> {
    let bad = |format| StorageError::Format {
        what: "record",
        format,
    };
    if buf.len() < 28 {
        return Err(bad(buf.first().copied().unwrap_or(0)));
    }
    let format = buf.get_u8();
    if format != FORMAT_V1 {
        return Err(bad(format));
    }
    let flags = buf.get_u8();
    let hlc = buf.get_u64();
    let node = buf.get_u64();
    let seq = buf.get_u64();
    let n = buf.get_u16() as usize;
    let mut index_keys = Vec::with_capacity(n);
    for _ in 0..n {
        if buf.len() < 2 {
            return Err(bad(format));
        }
        let len = buf.get_u16() as usize;
        if buf.len() < len {
            return Err(bad(format));
        }
        index_keys.push(buf.split_to(len));
    }
    Ok(StoredRecord {
        tombstone: flags & TOMBSTONE != 0,
        hlc,
        node,
        seq,
        index_keys,
        payload: buf,
    })
}

/// One entry of the change log, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogEntry {
    pub(crate) op: ChangeOp,
    pub(crate) hlc: Timestamp,
    pub(crate) node: NodeId,
    pub(crate) table: String,
    pub(crate) id: String,
}

/// Encodes a log entry from its parts (the writer has them as a `Change`;
/// nothing is copied but into the encoded buffer).
pub(crate) fn encode_log(
    op: &ChangeOp,
    hlc: Timestamp,
    node: NodeId,
    table: &str,
    id: &str,
) -> Bytes {
    let payload: &[u8] = match op {
        ChangeOp::Put(p) => p,
        ChangeOp::Delete => &[],
    };
    let mut buf = BytesMut::with_capacity(22 + table.len() + id.len() + payload.len());
    buf.put_u8(FORMAT_V1);
    buf.put_u8(match op {
        ChangeOp::Put(_) => 1,
        ChangeOp::Delete => 2,
    });
    buf.put_u64(hlc);
    buf.put_u64(node);
    buf.put_u16(table.len() as u16);
    buf.put_slice(table.as_bytes());
    buf.put_u16(id.len() as u16);
    buf.put_slice(id.as_bytes());
    buf.put_slice(payload);
    buf.freeze()
}

pub(crate) fn decode_log(mut buf: Bytes) -> Result<LogEntry, StorageError> {
    let bad = |format| StorageError::Format {
        what: "change log entry",
        format,
    };
    if buf.len() < 22 {
        return Err(bad(buf.first().copied().unwrap_or(0)));
    }
    let format = buf.get_u8();
    if format != FORMAT_V1 {
        return Err(bad(format));
    }
    let op = buf.get_u8();
    let hlc = buf.get_u64();
    let node = buf.get_u64();
    let string = |buf: &mut Bytes| -> Result<String, StorageError> {
        if buf.len() < 2 {
            return Err(bad(format));
        }
        let len = buf.get_u16() as usize;
        if buf.len() < len {
            return Err(bad(format));
        }
        String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| bad(format))
    };
    let table = string(&mut buf)?;
    let id = string(&mut buf)?;
    let op = match op {
        1 => ChangeOp::Put(buf),
        2 => ChangeOp::Delete,
        _ => return Err(bad(format)),
    };
    Ok(LogEntry {
        op,
        hlc,
        node,
        table,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let r = StoredRecord {
            tombstone: false,
            hlc: 7,
            node: 3,
            seq: 99,
            index_keys: vec![Bytes::from_static(b"T\0a\0k1"), Bytes::from_static(b"x")],
            payload: Bytes::from_static(b"\x81\xa1a\x01"),
        };
        assert_eq!(decode_record(encode_record(&r)).unwrap(), r);
    }

    #[test]
    fn log_entry_round_trips() {
        for op in [ChangeOp::Put(Bytes::from_static(b"v")), ChangeOp::Delete] {
            let e = LogEntry {
                op,
                hlc: 1,
                node: 2,
                table: "T".into(),
                id: "a/b".into(),
            };
            assert_eq!(
                decode_log(encode_log(&e.op, e.hlc, e.node, &e.table, &e.id)).unwrap(),
                e
            );
        }
    }

    #[test]
    fn unknown_format_byte_is_refused() {
        let mut bytes = encode_record(&StoredRecord {
            tombstone: true,
            hlc: 0,
            node: 0,
            seq: 0,
            index_keys: vec![],
            payload: Bytes::new(),
        })
        .to_vec();
        bytes[0] = 9;
        assert!(matches!(
            decode_record(Bytes::from(bytes)),
            Err(StorageError::Format {
                what: "record",
                format: 9
            })
        ));
    }
}
