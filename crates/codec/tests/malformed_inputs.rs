//! Malformed inputs: one table row per way a packet can break the MQTT 3.1.1 or
//! 5.0 specification, each with its raw bytes, the exact `DecodeError`, the
//! reason code a server answers with and the normative statement it violates.
//! Every proper prefix of a row's bytes must give `Ok(None)` or the same error.
//! Also: inputs that look suspicious but are valid (and must be accepted),
//! the Maximum Packet Size check on the fixed header alone, and incremental
//! decoding (byte by byte, packets back to back).

use std::num::NonZeroU16;

use bytes::{BufMut, Bytes, BytesMut};
use mqdb_codec::Version::{V5, V311};
use mqdb_codec::{
    Connect, DecodeError, FilterError, Limits, Packet, PacketId, PacketType, PropertyId, PubAck,
    Publish, PublishProperties, QoS, ReasonCode, Subscribe, SubscriptionId, SubscriptionOptions,
    TopicFilter, TopicName, UserProperty, Version, decode, encode,
};

use DecodeError as E;
use PacketType as T;
use PropertyId as P;
use ReasonCode as R;

/// Concatenates byte arrays, byte strings and `Vec<u8>`s into one packet.
macro_rules! wire {
    ($($part:expr),* $(,)?) => {{
        let mut bytes: Vec<u8> = Vec::new();
        $( bytes.extend_from_slice(AsRef::<[u8]>::as_ref(&$part)); )*
        bytes
    }};
}

/// One malformed input: a row of the tables below.
struct Case {
    name: &'static str,
    version: Version,
    /// The normative statement (or section, where it has no id) violated.
    rule: &'static str,
    bytes: Vec<u8>,
    error: DecodeError,
    reason: ReasonCode,
}

fn row(
    name: &'static str,
    version: Version,
    rule: &'static str,
    bytes: Vec<u8>,
    error: DecodeError,
    reason: ReasonCode,
) -> Case {
    Case {
        name,
        version,
        rule,
        bytes,
        error,
        reason,
    }
}

fn try_decode(bytes: &[u8], version: Version) -> Result<Option<Packet>, DecodeError> {
    decode(&mut BytesMut::from(bytes), version, &Limits::default())
}

fn check(cases: &[Case]) {
    for c in cases {
        let context = format!("{} [{:?}, {}] {:02X?}", c.name, c.version, c.rule, c.bytes);
        let result = try_decode(&c.bytes, c.version);
        assert_eq!(result, Err(c.error.clone()), "{context}");
        assert_eq!(c.error.reason_code(), c.reason, "reason code: {context}");
        // 3.1.1 MQTT-3.1.2-2: only an unacceptable protocol level is answered
        // with a CONNACK (return code 1); other malformed packets just close.
        let v3 = matches!(c.error, E::UnsupportedProtocolLevel(_)).then_some(0x01);
        assert_eq!(c.error.v3_connack_code(), v3, "CONNACK code: {context}");
        for n in 0..c.bytes.len() {
            let mut partial = BytesMut::from(&c.bytes[..n]);
            match decode(&mut partial, c.version, &Limits::default()) {
                Ok(None) => assert_eq!(partial.len(), n, "prefix consumed: {context}"),
                Err(e) => assert_eq!(e, c.error, "prefix of {n} bytes: {context}"),
                Ok(Some(p)) => panic!("prefix of {n} bytes decoded to {p:?}: {context}"),
            }
        }
    }
}

/// CONNECT variable header up to the Keep Alive (10 bytes): "MQTT", level, flags, 60 s.
fn connect_head(level: u8, flags: u8) -> Vec<u8> {
    wire![[0x00, 0x04], b"MQTT", [level], [flags], [0x00, 0x3C]]
}

/// A 5.0 SUBSCRIBE of one filter: packet id 1, no properties.
fn subscribe_v5(filter: &str, options: u8) -> Vec<u8> {
    let len = u8::try_from(filter.len()).unwrap();
    wire![
        [0x82, 6 + len],
        [0x00, 0x01],
        [0x00],
        [0x00, len],
        filter,
        [options]
    ]
}

/// A 5.0 CONNECT (clean start, client id "") with the given property bytes.
fn connect_v5_with(props: &[u8]) -> Vec<u8> {
    let len = u8::try_from(props.len()).unwrap();
    wire![
        [0x10, 13 + len],
        connect_head(5, 0x02),
        [len],
        props,
        [0x00, 0x00]
    ]
}

#[test]
#[rustfmt::skip]
fn fixed_header_violations() {
    let flags = |packet, flags| E::InvalidFixedHeaderFlags { packet, flags };
    check(&[
        row("remaining length with a fifth byte", V5, "§1.5.5",
            wire![[0x30], /* PUBLISH */ [0xFF, 0xFF, 0xFF, 0xFF, 0x7F] /* 5-byte length */],
            E::VarIntTooLong, R::MalformedPacket),
        row("remaining length 0 in two bytes", V5, "MQTT-1.5.5-1",
            wire![[0xC0], /* PINGREQ */ [0x80, 0x00] /* 0, not minimal */],
            E::VarIntNotMinimal, R::MalformedPacket),
        row("remaining length 5 in two bytes", V5, "MQTT-1.5.5-1",
            wire![[0x30, 0x85, 0x00], /* PUBLISH, 5 as 85 00 */ [0x00, 0x01], b"a", /* topic */
                  [0x00], /* property length */ b"x" /* payload */],
            E::VarIntNotMinimal, R::MalformedPacket),
        row("property length 0 in two bytes", V5, "MQTT-1.5.5-1",
            wire![[0x40, 0x05], /* PUBACK */ [0x00, 0x01], /* id */ [0x00], /* reason */
                  [0x80, 0x00] /* property length 0, not minimal */],
            E::VarIntNotMinimal, R::MalformedPacket),
        row("packet type 0", V5, "§2.1.2 (reserved)",
            wire![[0x00, 0x00]], E::ReservedPacketType(0), R::MalformedPacket),
        row("packet type 0 on 3.1.1", V311, "3.1.1 §2.2.1 (reserved)",
            wire![[0x00, 0x00]], E::ReservedPacketType(0), R::MalformedPacket),
        row("AUTH on a 3.1.1 connection", V311, "3.1.1 §2.2.1 (15 is reserved)",
            wire![[0xF0, 0x02], /* AUTH */ [0x18], /* continue */ [0x00] /* properties */],
            E::ReservedPacketType(15), R::MalformedPacket),
        row("CONNECT with flags 0001", V5, "MQTT-2.1.3-1",
            wire![[0x11, 0x00]], flags(T::Connect, 0b0001), R::MalformedPacket),
        row("PUBREL with flags 0000, not 0010", V311, "3.1.1 MQTT-3.6.1-1",
            wire![[0x60, 0x02], [0x00, 0x01] /* id */], flags(T::PubRel, 0b0000), R::MalformedPacket),
        row("PUBREL with flags 0100, not 0010", V5, "MQTT-2.1.3-1",
            wire![[0x64, 0x02], [0x00, 0x01] /* id */], flags(T::PubRel, 0b0100), R::MalformedPacket),
        row("SUBSCRIBE with flags 0000, not 0010", V311, "3.1.1 MQTT-3.8.1-1",
            wire![[0x80, 0x06], [0x00, 0x01], /* id */ [0x00, 0x01], b"a", /* filter */ [0x00] /* QoS */],
            flags(T::Subscribe, 0b0000), R::MalformedPacket),
        row("UNSUBSCRIBE with flags 0000, not 0010", V5, "MQTT-2.1.3-1",
            wire![[0xA0, 0x06], [0x00, 0x01], /* id */ [0x00], /* properties */ [0x00, 0x01], b"a"],
            flags(T::Unsubscribe, 0b0000), R::MalformedPacket),
        row("PINGREQ with flags 0001", V311, "3.1.1 MQTT-2.2.2-2",
            wire![[0xC1, 0x00]], flags(T::PingReq, 0b0001), R::MalformedPacket),
        row("DISCONNECT with flags 0010", V5, "MQTT-2.1.3-1",
            wire![[0xE2, 0x00]], flags(T::Disconnect, 0b0010), R::MalformedPacket),
        row("PUBLISH with QoS 3", V5, "MQTT-3.3.1-4",
            wire![[0x36, 0x04], /* PUBLISH QoS 3 */ [0x00, 0x01], b"a", /* topic */ [0x00] /* properties */],
            E::InvalidQos, R::MalformedPacket),
        row("PUBLISH QoS 0 with DUP", V311, "MQTT-3.3.1-2",
            wire![[0x38, 0x03], /* PUBLISH DUP QoS 0 */ [0x00, 0x01], b"a" /* topic */],
            E::DupWithQos0, R::MalformedPacket),
    ]);
}

#[test]
#[rustfmt::skip]
fn truncated_and_overlong_bodies() {
    check(&[
        row("topic name length past the end", V311, "§1.5.4",
            wire![[0x30, 0x04], [0x00, 0x05], /* topic length 5 */ b"ab" /* only 2 bytes */],
            E::Truncated("topic name"), R::MalformedPacket),
        row("client identifier length past the end", V311, "§1.5.4",
            wire![[0x10, 0x0E], connect_head(4, 0x02), [0x00, 0x0A], /* client id length 10 */ b"ab"],
            E::Truncated("client identifier"), R::MalformedPacket),
        row("SUBSCRIBE filter without its options byte", V311, "3.1.1 §3.8.3",
            wire![[0x82, 0x05], [0x00, 0x01], /* id */ [0x00, 0x01], b"a" /* filter, then nothing */],
            E::Truncated("subscription options"), R::MalformedPacket),
        row("PUBACK with a one-byte packet id", V311, "3.1.1 §3.4.2",
            wire![[0x40, 0x01], [0x00]], E::Truncated("packet identifier"), R::MalformedPacket),
        row("property length past the end", V5, "§2.2.2.1",
            wire![[0x30, 0x05], [0x00, 0x01], b"a", /* topic */ [0x05], /* property length 5 */ [0x01]],
            E::Truncated("properties"), R::MalformedPacket),
        row("Message Expiry Interval with 2 of its 4 bytes", V5, "§2.2.2.2",
            wire![[0x30, 0x07], [0x00, 0x01], b"a", /* topic */ [0x03], /* property length */
                  [0x02, 0x00, 0x00] /* Message Expiry Interval, cut short */],
            E::Truncated("property value"), R::MalformedPacket),
        row("PINGREQ with a body", V5, "§3.12.1 (remaining length 0)",
            wire![[0xC0, 0x01], [0x00]], E::TrailingBytes(1), R::MalformedPacket),
        row("3.1.1 PUBACK with a reason code", V311, "3.1.1 §3.4.1 (remaining length 2)",
            wire![[0x40, 0x03], [0x00, 0x01], /* id */ [0x00] /* 5.0 reason code */],
            E::TrailingBytes(1), R::MalformedPacket),
        row("3.1.1 DISCONNECT with a reason code", V311, "3.1.1 §3.14.1 (remaining length 0)",
            wire![[0xE0, 0x01], [0x00]], E::TrailingBytes(1), R::MalformedPacket),
        row("3.1.1 CONNACK with a property length", V311, "3.1.1 §3.2.1 (remaining length 2)",
            wire![[0x20, 0x03], [0x00], /* ack flags */ [0x00], /* return code */ [0x00] /* extra */],
            E::TrailingBytes(1), R::MalformedPacket),
    ]);
}

#[test]
#[rustfmt::skip]
fn malformed_strings() {
    check(&[
        row("invalid UTF-8 (C3 28) in a topic name", V5, "MQTT-1.5.4-1",
            wire![[0x30, 0x05], [0x00, 0x02, 0xC3, 0x28], /* topic */ [0x00] /* properties */],
            E::InvalidUtf8, R::MalformedPacket),
        row("UTF-16 surrogate U+D800 encoded as ED A0 80", V5, "MQTT-1.5.4-1",
            wire![[0x30, 0x06], [0x00, 0x03, 0xED, 0xA0, 0x80], /* topic */ [0x00] /* properties */],
            E::InvalidUtf8, R::MalformedPacket),
        row("UTF-16 surrogate in a 3.1.1 topic name", V311, "3.1.1 MQTT-1.5.3-1",
            wire![[0x30, 0x05], [0x00, 0x03, 0xED, 0xA0, 0x80] /* topic */],
            E::InvalidUtf8, R::MalformedPacket),
        row("overlong encoding C0 80 of U+0000", V5, "MQTT-1.5.4-1",
            wire![[0x30, 0x05], [0x00, 0x02, 0xC0, 0x80], /* topic */ [0x00] /* properties */],
            E::InvalidUtf8, R::MalformedPacket),
        row("U+0000 in a topic name", V311, "3.1.1 MQTT-1.5.3-2",
            wire![[0x30, 0x05], [0x00, 0x03], b"a\0b" /* topic */],
            E::NullCharacter, R::MalformedPacket),
        row("U+0000 in a client identifier", V5, "MQTT-1.5.4-2",
            wire![[0x10, 0x0F], connect_head(5, 0x02), [0x00], /* properties */ [0x00, 0x02], b"a\0"],
            E::NullCharacter, R::MalformedPacket),
        row("invalid UTF-8 in a user property value", V5, "MQTT-1.5.4-1",
            wire![[0x30, 0x0B], [0x00, 0x01], b"a", /* topic */ [0x07], /* property length */
                  [0x26, 0x00, 0x01], b"k", /* User Property name */ [0x00, 0x01, 0xFF] /* value */],
            E::InvalidUtf8, R::MalformedPacket),
    ]);
}

#[test]
#[rustfmt::skip]
fn connect_violations() {
    let unsupported = R::UnsupportedProtocolVersion;
    check(&[
        row("protocol name MQTX", V311, "MQTT-3.1.2-1",
            wire![[0x10, 0x0C], [0x00, 0x04], b"MQTX", /* protocol name */
                  [0x04, 0x02, 0x00, 0x3C], /* level, flags, keep alive */ [0x00, 0x00] /* client id */],
            E::InvalidProtocolName("MQTX".into()), unsupported),
        row("protocol level 3", V311, "3.1.1 MQTT-3.1.2-2",
            wire![[0x10, 0x0C], connect_head(3, 0x02), [0x00, 0x00] /* client id */],
            E::UnsupportedProtocolLevel(3), unsupported),
        row("protocol level 6", V5, "MQTT-3.1.2-2",
            wire![[0x10, 0x0D], connect_head(6, 0x02), [0x00], /* properties */ [0x00, 0x00]],
            E::UnsupportedProtocolLevel(6), unsupported),
        row("MQTT 3.1 (MQIsdp, level 3)", V311, "3.1.1 MQTT-3.1.2-2",
            wire![[0x10, 0x0E], [0x00, 0x06], b"MQIsdp", [0x03, 0x02, 0x00, 0x3C], [0x00, 0x00]],
            E::UnsupportedProtocolLevel(3), unsupported),
        row("reserved connect flag set", V5, "MQTT-3.1.2-3",
            wire![[0x10, 0x0D], connect_head(5, 0x03), [0x00], /* properties */ [0x00, 0x00]],
            E::ConnectReservedFlag, R::MalformedPacket),
        row("will QoS 1 without the will flag", V5, "MQTT-3.1.2-11",
            wire![[0x10, 0x0D], connect_head(5, 0x0A), [0x00], /* properties */ [0x00, 0x00]],
            E::WillFlagsWithoutWill, R::MalformedPacket),
        row("will retain without the will flag", V5, "MQTT-3.1.2-13",
            wire![[0x10, 0x0D], connect_head(5, 0x22), [0x00], /* properties */ [0x00, 0x00]],
            E::WillFlagsWithoutWill, R::MalformedPacket),
        row("will retain without the will flag on 3.1.1", V311, "3.1.1 MQTT-3.1.2-15",
            wire![[0x10, 0x0C], connect_head(4, 0x22), [0x00, 0x00] /* client id */],
            E::WillFlagsWithoutWill, R::MalformedPacket),
        row("will QoS 3", V5, "MQTT-3.1.2-12",
            wire![[0x10, 0x0D], connect_head(5, 0x1E), [0x00], /* properties */ [0x00, 0x00]],
            E::InvalidQos, R::MalformedPacket),
        row("password without user name on 3.1.1", V311, "3.1.1 MQTT-3.1.2-22",
            wire![[0x10, 0x10], connect_head(4, 0x42), [0x00, 0x00], /* client id */ [0x00, 0x02], b"pw"],
            E::PasswordWithoutUsername, R::MalformedPacket),
        row("will topic with #", V311, "MQTT-3.3.2-2 (a will topic is a topic name)",
            wire![[0x10, 0x11], connect_head(4, 0x06), /* will, clean */ [0x00, 0x00], /* client id */
                  [0x00, 0x01], b"#", /* will topic */ [0x00, 0x00] /* will payload */],
            E::TopicNameWildcard, R::TopicNameInvalid),
        row("empty will topic", V5, "MQTT-4.7.3-1",
            wire![[0x10, 0x12], connect_head(5, 0x06), [0x00], /* properties */ [0x00, 0x00], /* client id */
                  [0x00], /* will properties */ [0x00, 0x00], /* will topic "" */ [0x00, 0x00] /* payload */],
            E::EmptyTopicName, R::ProtocolError),
    ]);
}

#[test]
#[rustfmt::skip]
fn connack_violations() {
    check(&[
        row("CONNACK acknowledge flags 0x02", V5, "MQTT-3.2.2-1",
            wire![[0x20, 0x03], [0x02], /* ack flags */ [0x00], /* reason */ [0x00] /* properties */],
            E::ConnAckReservedFlags, R::MalformedPacket),
        row("3.1.1 CONNACK acknowledge flags 0x80", V311, "3.1.1 §3.2.2.1",
            wire![[0x20, 0x02], [0x80], /* ack flags */ [0x00] /* return code */],
            E::ConnAckReservedFlags, R::MalformedPacket),
        row("3.1.1 CONNACK return code 6", V311, "3.1.1 §3.2.2.3 (6-255 reserved)",
            wire![[0x20, 0x02], [0x00], /* ack flags */ [0x06] /* return code */],
            E::InvalidReasonCode { packet: T::ConnAck, code: 6 }, R::MalformedPacket),
        row("CONNACK reason code 0x04 (a DISCONNECT code)", V5, "§3.2.2.2",
            wire![[0x20, 0x03], [0x00], /* ack flags */ [0x04], /* reason */ [0x00] /* properties */],
            E::InvalidReasonCode { packet: T::ConnAck, code: 0x04 }, R::MalformedPacket),
        row("Maximum QoS 2", V5, "§3.2.2.3.4",
            wire![[0x20, 0x05], [0x00, 0x00], /* flags, reason */ [0x02], [0x24, 0x02] /* Maximum QoS 2 */],
            E::InvalidPropertyValue(P::MaximumQos), R::ProtocolError),
    ]);
}

#[test]
#[rustfmt::skip]
fn publish_violations() {
    check(&[
        row("topic name with +", V5, "MQTT-3.3.2-2",
            wire![[0x30, 0x06], [0x00, 0x03], b"a/+", /* topic */ [0x00] /* properties */],
            E::TopicNameWildcard, R::TopicNameInvalid),
        row("topic name with #", V311, "MQTT-3.3.2-2",
            wire![[0x30, 0x05], [0x00, 0x03], b"a/#" /* topic */],
            E::TopicNameWildcard, R::TopicNameInvalid),
        row("empty topic name on 3.1.1", V311, "3.1.1 MQTT-4.7.3-1",
            wire![[0x30, 0x02], [0x00, 0x00] /* topic "" */],
            E::EmptyTopicName, R::ProtocolError),
        row("empty topic name without a topic alias", V5, "§3.3.2.1",
            wire![[0x30, 0x03], [0x00, 0x00], /* topic "" */ [0x00] /* properties */],
            E::EmptyTopicName, R::ProtocolError),
        row("topic alias 0", V5, "MQTT-3.3.2-8",
            wire![[0x30, 0x07], [0x00, 0x01], b"a", /* topic */ [0x03], [0x23, 0x00, 0x00] /* alias 0 */],
            E::TopicAliasZero, R::TopicAliasInvalid),
        row("QoS 1 PUBLISH with packet id 0", V311, "3.1.1 MQTT-2.3.1-1",
            wire![[0x32, 0x05], [0x00, 0x01], b"a", /* topic */ [0x00, 0x00] /* id */],
            E::ZeroPacketId, R::ProtocolError),
        row("QoS 2 PUBLISH with packet id 0", V5, "MQTT-2.2.1-3",
            wire![[0x34, 0x06], [0x00, 0x01], b"a", /* topic */ [0x00, 0x00], /* id */ [0x00]],
            E::ZeroPacketId, R::ProtocolError),
        row("PUBACK with packet id 0", V5, "MQTT-2.2.1-3",
            wire![[0x40, 0x02], [0x00, 0x00] /* id */], E::ZeroPacketId, R::ProtocolError),
        row("PUBREL with packet id 0", V311, "3.1.1 MQTT-2.3.1-1",
            wire![[0x62, 0x02], [0x00, 0x00] /* id */], E::ZeroPacketId, R::ProtocolError),
    ]);
}

#[test]
#[rustfmt::skip]
fn subscribe_and_unsubscribe_violations() {
    use FilterError as F;
    let filter = |filter: &'static str, rule, error| {
        let name = if filter.is_empty() { "empty filter" } else { filter };
        row(name, V5, rule, subscribe_v5(filter, 0), E::InvalidTopicFilter(error), R::MalformedPacket)
    };
    check(&[
        row("SUBSCRIBE with packet id 0", V311, "3.1.1 MQTT-2.3.1-1",
            wire![[0x82, 0x06], [0x00, 0x00], /* id */ [0x00, 0x01], b"a", /* filter */ [0x00]],
            E::ZeroPacketId, R::ProtocolError),
        row("UNSUBSCRIBE with packet id 0", V5, "MQTT-2.2.1-3",
            wire![[0xA2, 0x06], [0x00, 0x00], /* id */ [0x00], /* properties */ [0x00, 0x01], b"a"],
            E::ZeroPacketId, R::ProtocolError),
        row("SUBSCRIBE without filters", V5, "MQTT-3.8.3-2",
            wire![[0x82, 0x03], [0x00, 0x01], /* id */ [0x00] /* properties */],
            E::NoTopicFilters(T::Subscribe), R::ProtocolError),
        row("3.1.1 SUBSCRIBE without filters", V311, "3.1.1 MQTT-3.8.3-3",
            wire![[0x82, 0x02], [0x00, 0x01] /* id */],
            E::NoTopicFilters(T::Subscribe), R::ProtocolError),
        row("UNSUBSCRIBE without filters", V5, "MQTT-3.10.3-2",
            wire![[0xA2, 0x03], [0x00, 0x01], /* id */ [0x00] /* properties */],
            E::NoTopicFilters(T::Unsubscribe), R::ProtocolError),
        row("3.1.1 UNSUBSCRIBE without filters", V311, "3.1.1 MQTT-3.10.3-2",
            wire![[0xA2, 0x02], [0x00, 0x01] /* id */],
            E::NoTopicFilters(T::Unsubscribe), R::ProtocolError),
        filter("a/#/b", "MQTT-4.7.1-1", F::MisplacedMultiLevelWildcard),
        filter("a+", "MQTT-4.7.1-2", F::MisplacedSingleLevelWildcard),
        filter("", "MQTT-4.7.3-1", F::Empty),
        filter("$share//x", "MQTT-4.8.2-1", F::EmptyShareName),
        filter("$share/g", "MQTT-4.8.2-2", F::MissingSharedFilter),
        filter("$share/g+/x", "MQTT-4.8.2-2", F::WildcardInShareName),
        row("3.1.1 UNSUBSCRIBE of a/#/b", V311, "3.1.1 MQTT-4.7.1-2",
            wire![[0xA2, 0x09], [0x00, 0x01], /* id */ [0x00, 0x05], b"a/#/b" /* filter */],
            E::InvalidTopicFilter(F::MisplacedMultiLevelWildcard), R::MalformedPacket),
        row("UNSUBSCRIBE of $share/g", V5, "MQTT-4.8.2-2",
            wire![[0xA2, 0x0D], [0x00, 0x01], /* id */ [0x00], /* properties */ [0x00, 0x08], b"$share/g"],
            E::InvalidTopicFilter(F::MissingSharedFilter), R::MalformedPacket),
        row("subscription options bit 6", V5, "MQTT-3.8.3-5",
            subscribe_v5("a", 0b0100_0000), E::SubscriptionOptionsReserved, R::MalformedPacket),
        row("subscription options bit 7", V5, "MQTT-3.8.3-5",
            subscribe_v5("a", 0b1000_0000), E::SubscriptionOptionsReserved, R::MalformedPacket),
        row("3.1.1 subscription options bit 2", V311, "3.1.1 MQTT-3.8.3-4",
            wire![[0x82, 0x06], [0x00, 0x01], /* id */ [0x00, 0x01], b"a", /* filter */ [0b0000_0100]],
            E::SubscriptionOptionsReserved, R::MalformedPacket),
        row("3.1.1 subscription QoS 3", V311, "3.1.1 MQTT-3.8.3-4",
            wire![[0x82, 0x06], [0x00, 0x01], /* id */ [0x00, 0x01], b"a", /* filter */ [0x03] /* QoS */],
            E::InvalidQos, R::MalformedPacket),
        row("retain handling 3", V5, "§3.8.3.1",
            subscribe_v5("a", 0b0011_0000), E::InvalidRetainHandling, R::ProtocolError),
        row("no local on a shared subscription", V5, "MQTT-3.8.3-4",
            subscribe_v5("$share/g/x", 0b0000_0100), E::NoLocalOnSharedSubscription, R::ProtocolError),
    ]);
}

#[test]
#[rustfmt::skip]
fn property_violations() {
    let unexpected = |id, packet| E::UnexpectedProperty { id, packet };
    check(&[
        row("unknown property 0x7F", V5, "§2.2.2.2",
            wire![[0x30, 0x06], [0x00, 0x01], b"a", /* topic */ [0x02], [0x7F, 0x00] /* property 0x7F */],
            E::UnknownProperty(0x7F), R::MalformedPacket),
        row("unknown two-byte property 128", V5, "§2.2.2.2",
            wire![[0x30, 0x07], [0x00, 0x01], b"a", /* topic */ [0x03], [0x80, 0x01, 0x00] /* id 128 */],
            E::UnknownProperty(128), R::MalformedPacket),
        row("Topic Alias in CONNECT", V5, "§2.2.2.2",
            connect_v5_with(&[0x23, 0x00, 0x01]),
            unexpected(P::TopicAlias, "CONNECT"), R::MalformedPacket),
        row("Will Delay Interval in PUBLISH", V5, "§2.2.2.2",
            wire![[0x30, 0x09], [0x00, 0x01], b"a", /* topic */ [0x05], [0x18, 0x00, 0x00, 0x00, 0x05]],
            unexpected(P::WillDelayInterval, "PUBLISH"), R::MalformedPacket),
        row("Topic Alias in the will properties", V5, "§2.2.2.2",
            wire![[0x10, 0x16], connect_head(5, 0x06), /* will flag */ [0x00], /* properties */
                  [0x00, 0x00], /* client id */ [0x03, 0x23, 0x00, 0x01], /* will properties: alias 1 */
                  [0x00, 0x01], b"w", /* will topic */ [0x00, 0x00] /* will payload */],
            unexpected(P::TopicAlias, "will properties"), R::MalformedPacket),
        row("Reason String in SUBSCRIBE", V5, "§2.2.2.2",
            wire![[0x82, 0x0B], [0x00, 0x01], /* id */ [0x04, 0x1F, 0x00, 0x01], b"r", /* properties */
                  [0x00, 0x01], b"a", /* filter */ [0x00] /* options */],
            unexpected(P::ReasonString, "SUBSCRIBE"), R::MalformedPacket),
        row("two Content Types in PUBLISH", V5, "§3.3.2.3.9",
            wire![[0x30, 0x0C], [0x00, 0x01], b"a", /* topic */ [0x08], /* property length */
                  [0x03, 0x00, 0x01], b"x", /* Content Type */ [0x03, 0x00, 0x01], b"y" /* again */],
            E::DuplicateProperty(P::ContentType), R::ProtocolError),
        row("two Subscription Identifiers in SUBSCRIBE", V5, "§3.8.2.1.2",
            wire![[0x82, 0x0B], [0x00, 0x01], /* id */ [0x04, 0x0B, 0x01, 0x0B, 0x02], /* ids 1, 2 */
                  [0x00, 0x01], b"a", /* filter */ [0x00] /* options */],
            E::DuplicateProperty(P::SubscriptionIdentifier), R::ProtocolError),
        row("two Reason Strings in PUBACK", V5, "§3.4.2.2.2",
            wire![[0x40, 0x0C], [0x00, 0x01], /* id */ [0x00], /* reason */ [0x08], /* property length */
                  [0x1F, 0x00, 0x01], b"x", /* Reason String */ [0x1F, 0x00, 0x01], b"y" /* again */],
            E::DuplicateProperty(P::ReasonString), R::ProtocolError),
        row("Receive Maximum 0", V5, "§3.1.2.11.3",
            connect_v5_with(&[0x21, 0x00, 0x00]),
            E::InvalidPropertyValue(P::ReceiveMaximum), R::ProtocolError),
        row("Maximum Packet Size 0", V5, "§3.1.2.11.4",
            connect_v5_with(&[0x27, 0x00, 0x00, 0x00, 0x00]),
            E::InvalidPropertyValue(P::MaximumPacketSize), R::ProtocolError),
        row("Request Problem Information 2", V5, "§3.1.2.11.7",
            connect_v5_with(&[0x17, 0x02]),
            E::InvalidPropertyValue(P::RequestProblemInformation), R::ProtocolError),
        row("Payload Format Indicator 2", V5, "§3.3.2.3.2",
            wire![[0x30, 0x06], [0x00, 0x01], b"a", /* topic */ [0x02], [0x01, 0x02] /* indicator 2 */],
            E::InvalidPropertyValue(P::PayloadFormatIndicator), R::ProtocolError),
        row("Subscription Identifier 0 in SUBSCRIBE", V5, "§3.8.2.1.2",
            wire![[0x82, 0x09], [0x00, 0x01], /* id */ [0x02, 0x0B, 0x00], /* Subscription Identifier 0 */
                  [0x00, 0x01], b"a", /* filter */ [0x00] /* options */],
            E::InvalidPropertyValue(P::SubscriptionIdentifier), R::ProtocolError),
        row("Subscription Identifier 0 in PUBLISH", V5, "§3.3.2.3.8",
            wire![[0x30, 0x06], [0x00, 0x01], b"a", /* topic */ [0x02], [0x0B, 0x00] /* id 0 */],
            E::InvalidPropertyValue(P::SubscriptionIdentifier), R::ProtocolError),
        row("Authentication Data without Method in CONNECT", V5, "§3.1.2.11.10",
            connect_v5_with(&[0x16, 0x00, 0x01, 0xAA]),
            E::AuthDataWithoutMethod, R::ProtocolError),
        row("Authentication Data without Method in AUTH", V5, "§3.15.2.2.2",
            wire![[0xF0, 0x06], [0x18], /* continue */ [0x04], [0x16, 0x00, 0x01, 0xAA] /* data */],
            E::AuthWithoutMethod, R::ProtocolError),
    ]);
}

#[test]
#[rustfmt::skip]
fn invalid_reason_codes() {
    let bad = |packet, code| E::InvalidReasonCode { packet, code };
    let malformed = R::MalformedPacket;
    check(&[
        row("PUBACK 0x92", V5, "MQTT-3.4.2-1",
            wire![[0x40, 0x03], [0x00, 0x01], /* id */ [0x92]], bad(T::PubAck, 0x92), malformed),
        row("PUBREC 0x92", V5, "MQTT-3.5.2-1",
            wire![[0x50, 0x03], [0x00, 0x01], /* id */ [0x92]], bad(T::PubRec, 0x92), malformed),
        row("PUBREL 0x10", V5, "MQTT-3.6.2-1",
            wire![[0x62, 0x03], [0x00, 0x01], /* id */ [0x10]], bad(T::PubRel, 0x10), malformed),
        row("PUBCOMP 0x80", V5, "MQTT-3.7.2-1",
            wire![[0x70, 0x03], [0x00, 0x01], /* id */ [0x80]], bad(T::PubComp, 0x80), malformed),
        row("SUBACK 0x05", V5, "MQTT-3.9.3-2",
            wire![[0x90, 0x04], [0x00, 0x01], /* id */ [0x00], /* properties */ [0x05]],
            bad(T::SubAck, 0x05), malformed),
        row("3.1.1 SUBACK 0x03", V311, "3.1.1 MQTT-3.9.3-2",
            wire![[0x90, 0x03], [0x00, 0x01], /* id */ [0x03]], bad(T::SubAck, 0x03), malformed),
        row("UNSUBACK 0x01", V5, "MQTT-3.11.3-2",
            wire![[0xB0, 0x04], [0x00, 0x01], /* id */ [0x00], /* properties */ [0x01]],
            bad(T::UnsubAck, 0x01), malformed),
        row("DISCONNECT 0x03", V5, "MQTT-3.14.2-1",
            wire![[0xE0, 0x01], [0x03]], bad(T::Disconnect, 0x03), malformed),
        row("AUTH 0x80", V5, "MQTT-3.15.2-1",
            wire![[0xF0, 0x02], [0x80], /* reason */ [0x00] /* properties */], bad(T::Auth, 0x80), malformed),
    ]);
}

// Inputs the specification forbids that the codec accepts or classifies
// differently. Kept out of the tables so those stay green; see the reasons.

#[test]
fn subscription_qos_3_is_a_protocol_error_in_v5() {
    let err = try_decode(&subscribe_v5("a", 0x03), V5).unwrap_err();
    assert_eq!(err.reason_code(), R::ProtocolError, "{err:?}");
}

#[test]
fn response_topic_with_wildcard_is_rejected() {
    #[rustfmt::skip]
    let bytes = wire![[0x30, 0x0A], [0x00, 0x01], b"a", /* topic */ [0x06], /* property length */
                      [0x08, 0x00, 0x03], b"r/#" /* Response Topic */];
    assert!(try_decode(&bytes, V5).is_err(), "MQTT-3.3.2-14");
}

#[test]
fn auth_without_authentication_method_is_a_protocol_error() {
    #[rustfmt::skip]
    let bytes = wire![[0xF0, 0x06], [0x18], /* continue */ [0x04], [0x1F, 0x00, 0x01], b"r" /* Reason String */];
    let err = try_decode(&bytes, V5).unwrap_err();
    assert_eq!(err.reason_code(), R::ProtocolError, "{err:?}");
}

fn decode_one(bytes: &[u8], version: Version) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, version, &Limits::default())
        .unwrap()
        .unwrap();
    assert!(buf.is_empty(), "{} bytes left", buf.len());
    packet
}

#[test]
fn password_without_user_name_is_accepted_in_v5() {
    #[rustfmt::skip]
    let bytes = wire![[0x10, 0x11], connect_head(5, 0x42), /* password flag */ [0x00], /* properties */
                      [0x00, 0x00], /* client id */ [0x00, 0x02], b"pw" /* password */];
    let Packet::Connect(connect) = decode_one(&bytes, V5) else {
        panic!("not a CONNECT")
    };
    assert_eq!(connect.username, None);
    assert_eq!(connect.password, Some(Bytes::from_static(b"pw")));
}

#[test]
fn empty_topic_with_topic_alias_is_accepted_in_v5() {
    #[rustfmt::skip]
    let bytes = wire![[0x30, 0x07], [0x00, 0x00], /* topic "" */ [0x03, 0x23, 0x00, 0x05], /* alias 5 */ b"x"];
    let Packet::Publish(publish) = decode_one(&bytes, V5) else {
        panic!("not a PUBLISH")
    };
    assert!(publish.topic.is_empty());
    assert_eq!(publish.properties.topic_alias, NonZeroU16::new(5));
    assert_eq!(publish.payload, Bytes::from_static(b"x"));
}

#[test]
fn two_subscription_identifiers_in_publish_are_accepted_in_order() {
    #[rustfmt::skip]
    let bytes = wire![[0x30, 0x09], [0x00, 0x01], b"a", /* topic */ [0x05], /* property length */
                      [0x0B, 0x80, 0x01], /* Subscription Identifier 128 */ [0x0B, 0x02] /* and 2 */];
    let Packet::Publish(publish) = decode_one(&bytes, V5) else {
        panic!("not a PUBLISH")
    };
    let ids = &publish.properties.subscription_identifiers;
    assert_eq!(ids.iter().map(|id| id.get()).collect::<Vec<_>>(), [128, 2]);
}

#[test]
fn repeated_user_properties_are_accepted_in_order() {
    #[rustfmt::skip]
    let bytes = wire![[0x30, 0x18], [0x00, 0x01], b"a", /* topic */ [0x14], /* property length 20 */
                      [0x26, 0x00, 0x01], b"k", [0x00, 0x01], b"2", /* k=2 */
                      [0x26, 0x00, 0x01], b"k", [0x00, 0x01], b"1", /* k=1 */
                      [0x26, 0x00, 0x01], b"a", [0x00, 0x00] /* a="" */];
    let Packet::Publish(publish) = decode_one(&bytes, V5) else {
        panic!("not a PUBLISH")
    };
    let expected = [("k", "2"), ("k", "1"), ("a", "")].map(|(k, v)| UserProperty::new(k, v));
    assert_eq!(publish.properties.user_properties, expected);
}

#[test]
fn packet_larger_than_maximum_is_refused_from_the_fixed_header_alone() {
    let limits = Limits {
        max_packet_size: 100,
    };
    // PUBLISH fixed headers without any body, and the packet size they announce.
    let headers: [(&[u8], usize); 5] = [
        (&[0x30, 0x63], 1 + 1 + 99),
        (&[0x30, 0x80, 0x01], 1 + 2 + 128),
        (&[0x30, 0xFF, 0x7F], 1 + 2 + 16_383),
        (&[0x30, 0x80, 0x80, 0x01], 1 + 3 + 16_384),
        (&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], 1 + 4 + 268_435_455),
    ];
    for (header, size) in headers {
        let mut buf = BytesMut::new();
        for (i, &byte) in header.iter().enumerate() {
            buf.put_u8(byte);
            let result = decode(&mut buf, V5, &limits);
            if i + 1 < header.len() {
                assert_eq!(result, Ok(None), "{header:02X?} after {} bytes", i + 1);
            } else {
                let err = result.unwrap_err();
                assert_eq!(err, E::PacketTooLarge { size, max: 100 }, "{header:02X?}");
                assert_eq!(err.reason_code(), R::PacketTooLarge);
            }
        }
    }
    // Exactly 100 bytes is allowed: the header waits for the body, then decodes.
    let packet = wire![[0x30, 0x62], [0x00, 0x01], b"a", [0x00], [0x55; 94]];
    assert_eq!(packet.len(), 100);
    assert_eq!(
        decode(&mut BytesMut::from(&packet[..2]), V5, &limits),
        Ok(None)
    );
    let decoded = decode(&mut BytesMut::from(&packet[..]), V5, &limits).unwrap();
    assert!(matches!(decoded, Some(Packet::Publish(p)) if p.payload.len() == 94));
}

fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

/// A QoS 1 PUBLISH big enough for a two-byte remaining length.
fn big_publish(version: Version) -> Packet {
    let mut properties = PublishProperties::default();
    if version == V5 {
        properties.message_expiry_interval = Some(60);
        properties.subscription_identifiers = vec![SubscriptionId::new(7).unwrap()];
        properties.user_properties = vec![UserProperty::new("k", "v")];
    }
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: TopicName::new("sensors/1/temp").unwrap(),
        packet_id: Some(pid(42)),
        properties,
        payload: Bytes::from(vec![0xA5; 300]),
    })
}

#[test]
fn packet_fed_one_byte_at_a_time_appears_with_its_last_byte() {
    let connect = Packet::Connect(Box::new(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 30,
        properties: Default::default(),
        client_id: "c".into(),
        will: None,
        username: Some("u".into()),
        password: None,
    }));
    let limits = Limits::default();
    for (packet, version) in [
        (big_publish(V311), V311),
        (big_publish(V5), V5),
        (connect, V5),
    ] {
        let mut bytes = BytesMut::new();
        encode(&packet, version, &mut bytes).unwrap();
        let (last, body) = bytes.split_last().unwrap();
        let mut buf = BytesMut::new();
        for (i, &byte) in body.iter().enumerate() {
            buf.put_u8(byte);
            assert_eq!(
                decode(&mut buf, version, &limits),
                Ok(None),
                "after {} bytes",
                i + 1
            );
            assert_eq!(
                buf.len(),
                i + 1,
                "nothing is consumed before the packet is whole"
            );
        }
        // The last byte arrives together with the start of the next packet.
        let following = [0x30, 0x05, 0x00];
        buf.put_u8(*last);
        buf.put_slice(&following);
        assert_eq!(decode(&mut buf, version, &limits), Ok(Some(packet)));
        assert_eq!(
            &buf[..],
            &following,
            "the following bytes stay in the buffer"
        );
        assert_eq!(decode(&mut buf, version, &limits), Ok(None));
        assert_eq!(&buf[..], &following);
    }
}

#[test]
fn packets_back_to_back_decode_in_order() {
    for version in [V311, V5] {
        let subscribe = Packet::Subscribe(Subscribe {
            packet_id: pid(7),
            properties: Default::default(),
            filters: vec![(
                TopicFilter::new("a/+").unwrap(),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    ..Default::default()
                },
            )],
        });
        let puback = Packet::PubAck(PubAck::new(pid(42)));
        let packets = [big_publish(version), puback, Packet::PingReq, subscribe];
        let mut buf = BytesMut::new();
        for packet in &packets {
            encode(packet, version, &mut buf).unwrap();
        }
        for packet in packets {
            let decoded = decode(&mut buf, version, &Limits::default());
            assert_eq!(decoded, Ok(Some(packet)), "{version:?}");
        }
        assert_eq!(decode(&mut buf, version, &Limits::default()), Ok(None));
        assert!(buf.is_empty());
    }
}
