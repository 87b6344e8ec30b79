//! Decode and encode errors. Every decode error knows the MQTT 5.0 reason code a
//! server sends for it (in a DISCONNECT, or a CONNACK while connecting), so the
//! broker never has to guess how to refuse a packet.

use crate::{PacketType, PropertyId, ReasonCode};

/// Why bytes could not be decoded into a packet.
///
/// The comment on each variant names the normative statement of the MQTT
/// specification that makes the input invalid (5.0 ids unless marked 3.1.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A Variable Byte Integer with a fifth byte (section 1.5.5).
    #[error("variable byte integer longer than four bytes")]
    VarIntTooLong,
    /// A Variable Byte Integer not in its shortest form (MQTT-1.5.5-1).
    #[error("variable byte integer not encoded in the minimum number of bytes")]
    VarIntNotMinimal,
    /// The whole packet is larger than the receiver's maximum (MQTT-3.2.2-15 / 3.1.2-24).
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Size of the whole packet, fixed header included.
        size: usize,
        /// The limit in force.
        max: u32,
    },
    /// Packet type 0, or 15 (AUTH) on an MQTT 3.1.1 connection (section 2.1.2).
    #[error("reserved control packet type {0}")]
    ReservedPacketType(u8),
    /// Reserved fixed-header flag bits with the wrong value (MQTT-2.1.3-1).
    #[error("invalid fixed header flags {flags:#06b} for {packet:?}")]
    InvalidFixedHeaderFlags {
        /// The packet type.
        packet: PacketType,
        /// The four flag bits received.
        flags: u8,
    },
    /// A QoS of 3 in PUBLISH, a will or a subscription (MQTT-3.3.1-4, MQTT-3.1.2-12).
    #[error("QoS 3 is not a valid quality of service")]
    InvalidQos,
    /// A subscription's Maximum QoS of 3 on MQTT 5.0: a Protocol Error
    /// (section 3.8.3.1; on 3.1.1 it is malformed: `InvalidQos`).
    #[error("subscription QoS 3 is not a valid quality of service")]
    InvalidSubscriptionQos,
    /// A Response Topic containing `+` or `#` (MQTT-3.3.2-14, and section
    /// 3.1.3.2.5 for the will).
    #[error("response topic contains a wildcard character")]
    ResponseTopicWildcard,
    /// AUTH with a reason code but no Authentication Method (section 3.15.2.2.2).
    #[error("AUTH without an authentication method")]
    AuthWithoutMethod,
    /// DUP set on a QoS 0 PUBLISH (MQTT-3.3.1-2).
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupWithQos0,
    /// The packet ends before a field it must contain.
    #[error("packet ends before its {0}")]
    Truncated(&'static str),
    /// Bytes left over after every field of the packet was read.
    #[error("{0} unexpected bytes after the end of the packet")]
    TrailingBytes(usize),
    /// A string that is not well-formed UTF-8, including encoded surrogates (MQTT-1.5.4-1).
    #[error("string is not well-formed UTF-8")]
    InvalidUtf8,
    /// A string containing U+0000 (MQTT-1.5.4-2).
    #[error("string contains the null character U+0000")]
    NullCharacter,
    /// CONNECT with a protocol name other than "MQTT" (MQTT-3.1.2-1).
    #[error("protocol name {0:?} is not \"MQTT\"")]
    InvalidProtocolName(String),
    /// CONNECT with a protocol level other than 4 (3.1.1) or 5 (MQTT-3.1.2-2).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// CONNECT with the reserved flag bit set (MQTT-3.1.2-3).
    #[error("CONNECT reserved flag is set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set while the Will Flag is 0 (MQTT-3.1.2-11,
    /// MQTT-3.1.2-13; 3.1.1: MQTT-3.1.2-13, MQTT-3.1.2-15).
    #[error("will QoS or will retain set without the will flag")]
    WillFlagsWithoutWill,
    /// 3.1.1 CONNECT with a password but no user name (3.1.1: MQTT-3.1.2-22).
    #[error("password flag set without the user name flag")]
    PasswordWithoutUsername,
    /// CONNACK acknowledge flags with reserved bits set (MQTT-3.2.2-1).
    #[error("CONNACK acknowledge flags have reserved bits set")]
    ConnAckReservedFlags,
    /// An unknown or disallowed CONNACK / SUBACK / ack reason code (section 2.4).
    #[error("reason code {code:#04x} is not valid in {packet:?}")]
    InvalidReasonCode {
        /// The packet type.
        packet: PacketType,
        /// The byte received.
        code: u8,
    },
    /// A topic name containing `+` or `#` (MQTT-3.3.2-2).
    #[error("topic name contains a wildcard character")]
    TopicNameWildcard,
    /// An empty topic name: always in 3.1.1 (MQTT-4.7.3-1), without a topic
    /// alias in 5.0 (section 3.3.2.1).
    #[error("empty topic name")]
    EmptyTopicName,
    /// A topic filter that breaks the wildcard or shared-subscription rules
    /// (MQTT-4.7.1-1, MQTT-4.7.1-2, MQTT-4.7.3-1, MQTT-4.8.2-1, MQTT-4.8.2-2).
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(#[from] crate::topic::FilterError),
    /// A zero packet identifier where one is required (MQTT-2.2.1-3).
    #[error("packet identifier is zero")]
    ZeroPacketId,
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter (MQTT-3.8.3-2, MQTT-3.10.3-2).
    #[error("{0:?} contains no topic filter")]
    NoTopicFilters(PacketType),
    /// Subscription options with reserved bits set (MQTT-3.8.3-5; 3.1.1: MQTT-3.8.3-4).
    #[error("subscription options have reserved bits set")]
    SubscriptionOptionsReserved,
    /// Retain Handling 3 (section 3.8.3.1).
    #[error("retain handling 3 is not valid")]
    InvalidRetainHandling,
    /// No Local on a shared subscription (MQTT-3.8.3-4).
    #[error("no local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// A property identifier the specification does not define (section 2.2.2.2).
    #[error("unknown property identifier {0:#04x}")]
    UnknownProperty(u32),
    /// A property that is not valid in this packet (section 2.2.2.2).
    #[error("property {id:?} is not valid in {packet}")]
    UnexpectedProperty {
        /// The property.
        id: PropertyId,
        /// Where it appeared.
        packet: &'static str,
    },
    /// A property that may appear once appears again: a Protocol Error for every
    /// property but User Property and (in PUBLISH) Subscription Identifier (section 2.2.2.2).
    #[error("property {0:?} appears more than once")]
    DuplicateProperty(PropertyId),
    /// A property value outside its range (e.g. Receive Maximum 0, section 3.1.2.11.3).
    #[error("invalid value for property {0:?}")]
    InvalidPropertyValue(PropertyId),
    /// Topic Alias 0 (MQTT-3.3.2-8).
    #[error("topic alias 0 is not permitted")]
    TopicAliasZero,
    /// Authentication Data without an Authentication Method (section 3.1.2.11.10).
    #[error("authentication data without an authentication method")]
    AuthDataWithoutMethod,
}

impl DecodeError {
    /// The MQTT 5.0 reason code a server sends for this error: in a DISCONNECT,
    /// or in a CONNACK if the error is in the CONNECT packet.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError as E;
        match self {
            E::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            E::UnsupportedProtocolLevel(_) | E::InvalidProtocolName(_) => {
                ReasonCode::UnsupportedProtocolVersion
            }
            E::TopicNameWildcard => ReasonCode::TopicNameInvalid,
            E::TopicAliasZero => ReasonCode::TopicAliasInvalid,
            E::ZeroPacketId
            | E::EmptyTopicName
            | E::InvalidRetainHandling
            | E::NoLocalOnSharedSubscription
            | E::DuplicateProperty(_)
            | E::InvalidPropertyValue(_)
            | E::AuthDataWithoutMethod
            | E::InvalidSubscriptionQos
            | E::ResponseTopicWildcard
            | E::AuthWithoutMethod
            | E::NoTopicFilters(_) => ReasonCode::ProtocolError,
            E::VarIntTooLong
            | E::VarIntNotMinimal
            | E::ReservedPacketType(_)
            | E::InvalidFixedHeaderFlags { .. }
            | E::InvalidQos
            | E::DupWithQos0
            | E::Truncated(_)
            | E::TrailingBytes(_)
            | E::InvalidUtf8
            | E::NullCharacter
            | E::ConnectReservedFlag
            | E::WillFlagsWithoutWill
            | E::PasswordWithoutUsername
            | E::ConnAckReservedFlags
            | E::InvalidReasonCode { .. }
            | E::InvalidTopicFilter(_)
            | E::SubscriptionOptionsReserved
            | E::UnknownProperty(_)
            | E::UnexpectedProperty { .. } => ReasonCode::MalformedPacket,
        }
    }

    /// For an error in CONNECT on an MQTT 3.1.1 connection: the CONNACK return
    /// code to answer with before closing, if the specification asks for one.
    /// Only an unsupported protocol level gets one (3.1.1: MQTT-3.1.2-2);
    /// every other malformed CONNECT closes the connection without a CONNACK.
    pub fn v3_connack_code(&self) -> Option<u8> {
        match self {
            DecodeError::UnsupportedProtocolLevel(_) => Some(0x01),
            _ => None,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string or binary field longer than 65,535 bytes (section 1.5.4, 1.5.6).
    #[error("{0} is longer than 65535 bytes")]
    FieldTooLong(&'static str),
    /// A packet whose remaining length exceeds 268,435,455 bytes (section 1.5.5).
    #[error("packet body of {0} bytes exceeds the protocol maximum")]
    PacketTooLarge(usize),
    /// A QoS 1 or 2 PUBLISH without a packet identifier (MQTT-2.2.1-2).
    #[error("QoS > 0 PUBLISH without a packet identifier")]
    MissingPacketId,
    /// A value that cannot be represented in a Variable Byte Integer.
    #[error("value {0} does not fit a variable byte integer")]
    VarIntOutOfRange(usize),
    /// A packet that does not exist in the protocol version it is encoded for
    /// (AUTH in 3.1.1).
    #[error("{0:?} does not exist in MQTT 3.1.1")]
    NotInVersion(PacketType),
    /// SUBSCRIBE, UNSUBSCRIBE or SUBACK with an empty list.
    #[error("{0:?} needs at least one entry")]
    EmptyList(PacketType),
}
