//! The packets of MQTT 3.1.1 and 5.0 as plain data. One struct per packet
//! type serves both versions: fields that exist only in 5.0 (properties,
//! reason codes) are empty or `Success` on a 3.1.1 connection and are not
//! encoded there.

use std::num::NonZeroU16;

use bytes::Bytes;
use bytestring::ByteString;

use crate::properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UnsubscribeProperties, WillProperties,
};
use crate::{ReasonCode, TopicFilter, TopicName};

/// The protocol version of a connection, read from CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// MQTT 3.1.1, protocol level 4.
    V311,
    /// MQTT 5.0, protocol level 5.
    V5,
}

impl Version {
    /// The protocol level byte in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

/// Quality of service (section 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for bits 0-1 of a byte; `None` for 3 (MQTT-3.3.1-4).
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A packet identifier: never zero (MQTT-2.2.1-3).
pub type PacketId = NonZeroU16;

/// The control packet types (section 2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// The type in the high nibble of the first byte; `None` for 0 (reserved).
    pub fn from_u8(value: u8) -> Option<Self> {
        use PacketType as P;
        Some(match value {
            1 => P::Connect,
            2 => P::ConnAck,
            3 => P::Publish,
            4 => P::PubAck,
            5 => P::PubRec,
            6 => P::PubRel,
            7 => P::PubComp,
            8 => P::Subscribe,
            9 => P::SubAck,
            10 => P::Unsubscribe,
            11 => P::UnsubAck,
            12 => P::PingReq,
            13 => P::PingResp,
            14 => P::Disconnect,
            15 => P::Auth,
            _ => return None,
        })
    }

    /// The fixed-header flags every packet but PUBLISH must carry (section 2.1.3).
    pub(crate) fn required_flags(self) -> u8 {
        match self {
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        }
    }
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Packet {
    /// Boxed, as is CONNACK: rare, and far larger than the rest (a packet
    /// is moved several times on its way; every move copies the size of
    /// the largest variant).
    Connect(Box<Connect>),
    ConnAck(Box<ConnAck>),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        use PacketType as T;
        match self {
            Packet::Connect(_) => T::Connect,
            Packet::ConnAck(_) => T::ConnAck,
            Packet::Publish(_) => T::Publish,
            Packet::PubAck(_) => T::PubAck,
            Packet::PubRec(_) => T::PubRec,
            Packet::PubRel(_) => T::PubRel,
            Packet::PubComp(_) => T::PubComp,
            Packet::Subscribe(_) => T::Subscribe,
            Packet::SubAck(_) => T::SubAck,
            Packet::Unsubscribe(_) => T::Unsubscribe,
            Packet::UnsubAck(_) => T::UnsubAck,
            Packet::PingReq => T::PingReq,
            Packet::PingResp => T::PingResp,
            Packet::Disconnect(_) => T::Disconnect,
            Packet::Auth(_) => T::Auth,
        }
    }
}

/// CONNECT (section 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version, from the protocol level byte.
    pub protocol: Version,
    /// Clean Start (5.0) / Clean Session (3.1.1).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// CONNECT properties (5.0).
    pub properties: ConnectProperties,
    /// Client Identifier; may be empty (the server assigns one).
    pub client_id: ByteString,
    /// The Will Message, if the Will Flag is set.
    pub will: Option<Will>,
    /// User Name.
    pub username: Option<ByteString>,
    /// Password (binary data).
    pub password: Option<Bytes>,
}

/// The Will Message of a CONNECT (section 3.1.3.2 - 3.1.3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Will Topic.
    pub topic: TopicName,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will properties (5.0).
    pub properties: WillProperties,
}

/// CONNACK (section 3.2). On 3.1.1 the reason code is one of the six return
/// codes, mapped as in [`ReasonCode::to_v3_connack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present.
    pub session_present: bool,
    /// Connect Reason Code (5.0) / Connect Return Code (3.1.1).
    pub reason_code: ReasonCode,
    /// CONNACK properties (5.0).
    pub properties: ConnAckProperties,
}

/// PUBLISH (section 3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP: this may be a re-delivery.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// Topic Name (empty only with a 5.0 topic alias).
    pub topic: TopicName,
    /// Packet Identifier, present exactly when QoS > 0.
    pub packet_id: Option<PacketId>,
    /// PUBLISH properties (5.0).
    pub properties: PublishProperties,
    /// Application message, shared with the buffer it was read from.
    pub payload: Bytes,
}

macro_rules! pub_response {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// Packet Identifier of the PUBLISH this answers.
            pub packet_id: PacketId,
            /// Reason Code (5.0); always `Success` on 3.1.1.
            pub reason_code: ReasonCode,
            /// Properties (5.0).
            pub properties: AckProperties,
        }

        impl $name {
            /// A successful response without properties.
            pub fn new(packet_id: PacketId) -> Self {
                $name { packet_id, reason_code: ReasonCode::Success, properties: AckProperties::default() }
            }
        }
    };
}

pub_response!(
    /// PUBACK (section 3.4): QoS 1 acknowledgement.
    PubAck
);
pub_response!(
    /// PUBREC (section 3.5): QoS 2 delivery part 1.
    PubRec
);
pub_response!(
    /// PUBREL (section 3.6): QoS 2 delivery part 2.
    PubRel
);
pub_response!(
    /// PUBCOMP (section 3.7): QoS 2 delivery part 3.
    PubComp
);

/// Retain Handling subscription option (section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe,
    /// 1: send them only if the subscription does not already exist.
    SendIfNew,
    /// 2: do not send retained messages.
    DoNotSend,
}

/// Subscription options (section 3.8.3.1); on 3.1.1 only `qos` is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local: do not deliver the client's own publications back to it.
    pub no_local: bool,
    /// Retain As Published: keep the RETAIN flag as published.
    pub retain_as_published: bool,
    /// Retain Handling.
    pub retain_handling: RetainHandling,
}

/// SUBSCRIBE (section 3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// SUBSCRIBE properties (5.0).
    pub properties: SubscribeProperties,
    /// Topic filters and their options; never empty (MQTT-3.8.3-2).
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
}

/// SUBACK (section 3.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet Identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (5.0).
    pub properties: AckProperties,
    /// One reason code per filter, in order.
    pub reason_codes: Vec<ReasonCode>,
}

/// UNSUBSCRIBE (section 3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// UNSUBSCRIBE properties (5.0).
    pub properties: UnsubscribeProperties,
    /// Topic filters; never empty (MQTT-3.10.3-2).
    pub filters: Vec<TopicFilter>,
}

/// UNSUBACK (section 3.11). 3.1.1 carries no reason codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (5.0).
    pub properties: AckProperties,
    /// One reason code per filter (5.0); empty on 3.1.1.
    pub reason_codes: Vec<ReasonCode>,
}

/// DISCONNECT (section 3.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Disconnect Reason Code (5.0); `Success` is a normal disconnection.
    pub reason_code: ReasonCode,
    /// Properties (5.0).
    pub properties: DisconnectProperties,
}

/// AUTH (section 3.15), MQTT 5.0 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Authenticate Reason Code.
    pub reason_code: ReasonCode,
    /// Properties.
    pub properties: AuthProperties,
}

impl Disconnect {
    /// A DISCONNECT with a reason code and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Disconnect {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }
}

impl Default for Disconnect {
    /// A normal disconnection (0x00).
    fn default() -> Self {
        Disconnect::new(ReasonCode::Success)
    }
}

impl Default for Auth {
    /// A successful AUTH without properties.
    fn default() -> Self {
        Auth {
            reason_code: ReasonCode::Success,
            properties: AuthProperties::default(),
        }
    }
}
