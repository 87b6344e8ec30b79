//! What a benchmark message carries and how it is put on the wire cheaply.
//!
//! The first [`STAMP_LEN`] bytes of every payload are a [`Stamp`]: when the
//! message was handed to the socket (nanoseconds since the run's shared
//! start `Instant`) and which message it is (publisher id, sequence number).
//! Subscribers read it back to measure end-to-end latency and to count loss
//! and duplicates. The rest of the payload is filler.
//!
//! [`PublishTemplate`] encodes one PUBLISH once and then stamps copies of
//! its bytes, so the generator spends no allocation and no encoder work per
//! message and leaves the cores to the broker under test.

use bytes::{BufMut as _, Bytes, BytesMut};
use mqdb_codec::{Packet, PacketId, Publish, PublishProperties, QoS, TopicName, Version, encode};

/// Bytes at the start of each payload taken by the stamp.
pub(crate) const STAMP_LEN: usize = 16;

/// The identity and send time of one benchmark message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Nanoseconds since the run's start `Instant` when the message was sent.
    pub(crate) sent_ns: u64,
    /// The publisher that sent it (0-based).
    pub(crate) publisher: u32,
    /// Its sequence number within that publisher (0-based).
    pub(crate) seq: u32,
}

impl Stamp {
    /// Writes the stamp into the first [`STAMP_LEN`] bytes of `payload`.
    pub(crate) fn write(self, payload: &mut [u8]) {
        payload[..8].copy_from_slice(&self.sent_ns.to_be_bytes());
        payload[8..12].copy_from_slice(&self.publisher.to_be_bytes());
        payload[12..16].copy_from_slice(&self.seq.to_be_bytes());
    }

    /// The stamp at the start of `payload`; `None` if it is too short to
    /// carry one (a message this run did not send).
    pub(crate) fn read(payload: &[u8]) -> Option<Stamp> {
        let head: &[u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
        let (ns, rest) = head.split_at(8);
        let (publisher, seq) = rest.split_at(4);
        Some(Stamp {
            sent_ns: u64::from_be_bytes(ns.try_into().ok()?),
            publisher: u32::from_be_bytes(publisher.try_into().ok()?),
            seq: u32::from_be_bytes(seq.try_into().ok()?),
        })
    }
}

/// A payload of `len` bytes (at least [`STAMP_LEN`]) carrying `stamp`.
pub(crate) fn stamped_payload(stamp: Stamp, len: usize) -> Bytes {
    let mut payload = vec![b'x'; len.max(STAMP_LEN)];
    stamp.write(&mut payload);
    Bytes::from(payload)
}

/// One PUBLISH encoded once; [`PublishTemplate::put`] appends copies that
/// differ only in packet identifier and stamp.
#[derive(Debug, Clone)]
pub(crate) struct PublishTemplate {
    bytes: Vec<u8>,
    /// Where the two packet-identifier bytes are (QoS 1 and 2 only).
    packet_id_at: Option<usize>,
    /// Where the payload starts; the payload runs to the end.
    payload_at: usize,
}

impl PublishTemplate {
    /// Encodes a PUBLISH of `payload_len` bytes (at least [`STAMP_LEN`]) to
    /// `topic` without properties.
    pub(crate) fn new(
        topic: &str,
        qos: QoS,
        retain: bool,
        payload_len: usize,
        version: Version,
    ) -> anyhow::Result<Self> {
        let payload_len = payload_len.max(STAMP_LEN);
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic: TopicName::new(topic.to_owned())?,
            packet_id: (qos != QoS::AtMostOnce).then_some(PacketId::MIN),
            properties: PublishProperties::default(),
            payload: Bytes::from(vec![b'x'; payload_len]),
        };
        let mut buf = BytesMut::new();
        encode(&Packet::Publish(publish), version, &mut buf)?;
        let payload_at = buf.len() - payload_len;
        // Section 3.3.2: the packet identifier is followed by the property
        // length (one byte, 0, in 5.0) and then the payload.
        let props_len = usize::from(version == Version::V5);
        let packet_id_at = (qos != QoS::AtMostOnce).then(|| payload_at - props_len - 2);
        Ok(PublishTemplate {
            bytes: buf.to_vec(),
            packet_id_at,
            payload_at,
        })
    }

    /// Encoded size of one message.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends one message with `packet_id` (ignored at QoS 0) and `stamp`.
    pub(crate) fn put(&self, out: &mut BytesMut, packet_id: u16, stamp: Stamp) {
        let start = out.len();
        out.put_slice(&self.bytes);
        let msg = &mut out[start..];
        if let Some(at) = self.packet_id_at {
            msg[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        stamp.write(&mut msg[self.payload_at..]);
    }
}

#[cfg(test)]
mod tests {
    use mqdb_codec::{Limits, decode};

    use super::*;

    #[test]
    fn stamp_round_trips_through_a_payload() {
        let stamp = Stamp {
            sent_ns: 0x0102_0304_0506_0708,
            publisher: 7,
            seq: u32::MAX,
        };
        let payload = stamped_payload(stamp, 64);
        assert_eq!(payload.len(), 64);
        assert_eq!(Stamp::read(&payload), Some(stamp));
    }

    #[test]
    fn short_payloads_carry_no_stamp() {
        assert_eq!(Stamp::read(b"hello"), None);
        assert_eq!(Stamp::read(&[]), None);
    }

    #[test]
    fn payload_is_never_shorter_than_the_stamp() {
        let stamp = Stamp {
            sent_ns: 1,
            publisher: 2,
            seq: 3,
        };
        assert_eq!(stamped_payload(stamp, 4).len(), STAMP_LEN);
    }

    #[test]
    fn template_copies_decode_with_their_own_id_and_stamp() {
        for version in [Version::V311, Version::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let template = PublishTemplate::new("bench/t/3", qos, false, 64, version).unwrap();
                let mut wire = BytesMut::new();
                for seq in 0..3u32 {
                    let stamp = Stamp {
                        sent_ns: 1000 + u64::from(seq),
                        publisher: 3,
                        seq,
                    };
                    template.put(&mut wire, 500 + seq as u16, stamp);
                }
                assert_eq!(wire.len(), 3 * template.len());
                for seq in 0..3u32 {
                    let Some(Packet::Publish(p)) =
                        decode(&mut wire, version, &Limits::default()).unwrap()
                    else {
                        panic!("expected a PUBLISH");
                    };
                    assert_eq!(p.topic.as_str(), "bench/t/3");
                    assert_eq!(p.qos, qos);
                    assert_eq!(p.payload.len(), 64);
                    let expected_id = (qos != QoS::AtMostOnce).then(|| 500 + seq as u16);
                    assert_eq!(p.packet_id.map(|id| id.get()), expected_id);
                    let stamp = Stamp::read(&p.payload).unwrap();
                    assert_eq!((stamp.publisher, stamp.seq), (3, seq));
                    assert_eq!(stamp.sent_ns, 1000 + u64::from(seq));
                }
            }
        }
    }
}
