//! MQTT 5.0 properties (section 2.2.2), typed per packet.
//!
//! Each packet has its own property struct holding exactly the properties the
//! specification allows in it; anything else is rejected on decode. Single
//! properties are `Option`s and a second occurrence is a Protocol Error;
//! User Properties keep their order; Subscription Identifier may repeat in
//! PUBLISH only. Properties are encoded in field order, user properties last.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::QoS;
use crate::error::{DecodeError, EncodeError};
use crate::wire::{
    read_binary, read_string, read_u8, read_u16, read_u32, read_var_int, take, var_int_len,
    write_binary, write_string, write_var_int,
};

macro_rules! property_ids {
    ($( $name:ident = $value:literal, )*) => {
        /// A property identifier (section 2.2.2.2).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum PropertyId {
            $(
                #[allow(missing_docs)]
                $name = $value,
            )*
        }

        impl PropertyId {
            /// The identifier for a decoded number, if the specification defines it.
            pub fn from_u32(value: u32) -> Option<Self> {
                match value {
                    $( $value => Some(PropertyId::$name), )*
                    _ => None,
                }
            }
        }
    };
}

property_ids! {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQos = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

/// Payload Format Indicator values (section 3.3.2.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    Unspecified,
    /// 1: UTF-8 encoded character data.
    Utf8,
}

/// A Subscription Identifier: 1 to 268,435,455 (section 3.8.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(NonZeroU32);

impl SubscriptionId {
    /// The largest identifier a Variable Byte Integer can carry.
    pub const MAX: u32 = crate::wire::MAX_VAR_INT as u32;

    /// An identifier, if `value` is within 1..=268,435,455.
    pub fn new(value: u32) -> Option<Self> {
        if value > Self::MAX {
            return None;
        }
        NonZeroU32::new(value).map(SubscriptionId)
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// A User Property: a name and value pair (section 3.1.2.11.8). Order and
/// repetition are preserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserProperty {
    /// The name.
    pub name: ByteString,
    /// The value.
    pub value: ByteString,
}

impl UserProperty {
    /// A pair from anything string-like.
    pub fn new(name: impl Into<ByteString>, value: impl Into<ByteString>) -> Self {
        UserProperty {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A property value type: how it is read, sized and written.
pub(crate) trait PropValue: Sized {
    fn read(buf: &mut Bytes, id: PropertyId) -> Result<Self, DecodeError>;
    fn value_len(&self) -> usize;
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError>;
}

impl PropValue for u16 {
    fn read(buf: &mut Bytes, _: PropertyId) -> Result<Self, DecodeError> {
        read_u16(buf, "property value")
    }
    fn value_len(&self) -> usize {
        2
    }
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(*self);
        Ok(())
    }
}

impl PropValue for u32 {
    fn read(buf: &mut Bytes, _: PropertyId) -> Result<Self, DecodeError> {
        read_u32(buf, "property value")
    }
    fn value_len(&self) -> usize {
        4
    }
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u32(*self);
        Ok(())
    }
}

/// Receive Maximum and Topic Alias: zero is not allowed (3.1.2.11.3, MQTT-3.3.2-8).
impl PropValue for NonZeroU16 {
    fn read(buf: &mut Bytes, id: PropertyId) -> Result<Self, DecodeError> {
        NonZeroU16::new(read_u16(buf, "property value")?).ok_or(match id {
            PropertyId::TopicAlias => DecodeError::TopicAliasZero,
            _ => DecodeError::InvalidPropertyValue(id),
        })
    }
    fn value_len(&self) -> usize {
        2
    }
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(self.get());
        Ok(())
    }
}

/// Maximum Packet Size: zero is a Protocol Error (section 3.1.2.11.4).
impl PropValue for NonZeroU32 {
    fn read(buf: &mut Bytes, id: PropertyId) -> Result<Self, DecodeError> {
        NonZeroU32::new(read_u32(buf, "property value")?)
            .ok_or(DecodeError::InvalidPropertyValue(id))
    }
    fn value_len(&self) -> usize {
        4
    }
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u32(self.get());
        Ok(())
    }
}

/// Byte properties that are flags: any value but 0 or 1 is a Protocol Error.
impl PropValue for bool {
    fn read(buf: &mut Bytes, id: PropertyId) -> Result<Self, DecodeError> {
        match read_u8(buf, "property value")? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }
    fn value_len(&self) -> usize {
        1
    }
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u8(u8::from(*self));
        Ok(())
    }
}

impl PropValue for PayloadFormat {
    fn read(buf: &mut Bytes, id: PropertyId) -> Result<Self, DecodeError> {
        Ok(if bool::read(buf, id)? {
            PayloadFormat::Utf8
        } else {
            PayloadFormat::Unspecified
        })
    }
    fn value_len(&self) -> usize {
        1
    }
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u8(u8::from(*self == PayloadFormat::Utf8));
        Ok(())
    }
}

/// Maximum QoS: 0 or 1; sending 2 or more is a Protocol Error (section 3.2.2.3.4).
impl PropValue for QoS {
    fn read(buf: &mut Bytes, id: PropertyId) -> Result<Self, DecodeError> {
        match read_u8(buf, "property value")? {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }
    fn value_len(&self) -> usize {
        1
    }
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u8(*self as u8);
        Ok(())
    }
}

impl PropValue for SubscriptionId {
    fn read(buf: &mut Bytes, id: PropertyId) -> Result<Self, DecodeError> {
        SubscriptionId::new(read_var_int(buf, "property value")?)
            .ok_or(DecodeError::InvalidPropertyValue(id))
    }
    fn value_len(&self) -> usize {
        var_int_len(self.get() as usize)
    }
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        write_var_int(buf, self.get() as usize)
    }
}

impl PropValue for ByteString {
    fn read(buf: &mut Bytes, _: PropertyId) -> Result<Self, DecodeError> {
        read_string(buf, "property value")
    }
    fn value_len(&self) -> usize {
        2 + str::len(self)
    }
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        write_string(buf, self, "string property")
    }
}

impl PropValue for Bytes {
    fn read(buf: &mut Bytes, _: PropertyId) -> Result<Self, DecodeError> {
        read_binary(buf, "property value")
    }
    fn value_len(&self) -> usize {
        2 + Bytes::len(self)
    }
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        write_binary(buf, self, "binary property")
    }
}

impl PropValue for UserProperty {
    fn read(buf: &mut Bytes, _: PropertyId) -> Result<Self, DecodeError> {
        let name = read_string(buf, "user property name")?;
        let value = read_string(buf, "user property value")?;
        Ok(UserProperty { name, value })
    }
    fn value_len(&self) -> usize {
        4 + str::len(&self.name) + str::len(&self.value)
    }
    fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        write_string(buf, &self.name, "user property name")?;
        write_string(buf, &self.value, "user property value")
    }
}

fn set_once<T: PropValue>(
    slot: &mut Option<T>,
    id: PropertyId,
    buf: &mut Bytes,
) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(T::read(buf, id)?);
    Ok(())
}

/// Declares a property struct with its decoder and encoder. Fields listed
/// under `repeated` are `Vec`s that accept several occurrences.
macro_rules! properties {
    (
        $(#[$meta:meta])*
        pub struct $name:ident in $packet:literal {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $id:ident, )*
        }
        $( repeated { $( $(#[$rmeta:meta])* $rfield:ident : $rty:ty = $rid:ident, )* } )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: Option<$ty>, )*
            $($( $(#[$rmeta])* pub $rfield: Vec<$rty>, )*)?
            /// User Properties, in the order they were sent.
            pub user_properties: Vec<UserProperty>,
        }

        impl $name {
            /// True when no property is set.
            pub fn is_empty(&self) -> bool {
                self == &Self::default()
            }

            /// Reads the Property Length and the properties it covers.
            pub(crate) fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
                let len = read_var_int(buf, "property length")? as usize;
                let mut props = take(buf, len, "properties")?;
                let mut this = Self::default();
                while !props.is_empty() {
                    let raw = read_var_int(&mut props, "property identifier")?;
                    let id = PropertyId::from_u32(raw).ok_or(DecodeError::UnknownProperty(raw))?;
                    match id {
                        $( PropertyId::$id => set_once(&mut this.$field, id, &mut props)?, )*
                        $($( PropertyId::$rid => this.$rfield.push(PropValue::read(&mut props, id)?), )*)?
                        PropertyId::UserProperty => {
                            this.user_properties.push(PropValue::read(&mut props, id)?)
                        }
                        #[allow(unreachable_patterns)]
                        other => {
                            return Err(DecodeError::UnexpectedProperty { id: other, packet: $packet })
                        }
                    }
                }
                Ok(this)
            }

            /// The Property Length: bytes of the properties, without the length itself.
            pub(crate) fn body_len(&self) -> usize {
                let mut len = 0;
                $( if let Some(v) = &self.$field { len += 1 + v.value_len(); } )*
                $($( len += self.$rfield.iter().map(|v| 1 + v.value_len()).sum::<usize>(); )*)?
                len += self.user_properties.iter().map(|v| 1 + v.value_len()).sum::<usize>();
                len
            }

            /// Bytes the encoded properties take, the Property Length included.
            pub(crate) fn encoded_len(&self) -> usize {
                let body = self.body_len();
                var_int_len(body) + body
            }

            pub(crate) fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
                write_var_int(buf, self.body_len())?;
                $( if let Some(v) = &self.$field {
                    buf.put_u8(PropertyId::$id as u8);
                    v.write(buf)?;
                } )*
                $($( for v in &self.$rfield {
                    buf.put_u8(PropertyId::$rid as u8);
                    v.write(buf)?;
                } )*)?
                for v in &self.user_properties {
                    buf.put_u8(PropertyId::UserProperty as u8);
                    v.write(buf)?;
                }
                Ok(())
            }
        }
    };
}

properties! {
    /// CONNECT properties (section 3.1.2.11).
    pub struct ConnectProperties in "CONNECT" {
        /// Session Expiry Interval in seconds; absent means 0.
        session_expiry_interval: u32 = SessionExpiryInterval,
        /// Receive Maximum; absent means 65,535.
        receive_maximum: NonZeroU16 = ReceiveMaximum,
        /// Maximum Packet Size the client accepts.
        maximum_packet_size: NonZeroU32 = MaximumPacketSize,
        /// Topic Alias Maximum the client accepts; absent means 0.
        topic_alias_maximum: u16 = TopicAliasMaximum,
        /// Request Response Information.
        request_response_information: bool = RequestResponseInformation,
        /// Request Problem Information; absent means true.
        request_problem_information: bool = RequestProblemInformation,
        /// Authentication Method (enhanced authentication).
        authentication_method: ByteString = AuthenticationMethod,
        /// Authentication Data.
        authentication_data: Bytes = AuthenticationData,
    }
}

properties! {
    /// Will properties, in the CONNECT payload (section 3.1.3.2).
    pub struct WillProperties in "will properties" {
        /// Will Delay Interval in seconds.
        will_delay_interval: u32 = WillDelayInterval,
        /// Payload Format Indicator.
        payload_format_indicator: PayloadFormat = PayloadFormatIndicator,
        /// Message Expiry Interval in seconds.
        message_expiry_interval: u32 = MessageExpiryInterval,
        /// Content Type.
        content_type: ByteString = ContentType,
        /// Response Topic.
        response_topic: ByteString = ResponseTopic,
        /// Correlation Data.
        correlation_data: Bytes = CorrelationData,
    }
}

properties! {
    /// CONNACK properties (section 3.2.2.3).
    pub struct ConnAckProperties in "CONNACK" {
        /// Session Expiry Interval the server uses.
        session_expiry_interval: u32 = SessionExpiryInterval,
        /// Receive Maximum of the server.
        receive_maximum: NonZeroU16 = ReceiveMaximum,
        /// Maximum QoS the server supports (0 or 1; absent means 2).
        maximum_qos: QoS = MaximumQos,
        /// Retain Available.
        retain_available: bool = RetainAvailable,
        /// Maximum Packet Size the server accepts.
        maximum_packet_size: NonZeroU32 = MaximumPacketSize,
        /// Assigned Client Identifier.
        assigned_client_identifier: ByteString = AssignedClientIdentifier,
        /// Topic Alias Maximum the server accepts.
        topic_alias_maximum: u16 = TopicAliasMaximum,
        /// Reason String.
        reason_string: ByteString = ReasonString,
        /// Wildcard Subscription Available.
        wildcard_subscription_available: bool = WildcardSubscriptionAvailable,
        /// Subscription Identifiers Available.
        subscription_identifiers_available: bool = SubscriptionIdentifierAvailable,
        /// Shared Subscription Available.
        shared_subscription_available: bool = SharedSubscriptionAvailable,
        /// Server Keep Alive, overriding the client's.
        server_keep_alive: u16 = ServerKeepAlive,
        /// Response Information.
        response_information: ByteString = ResponseInformation,
        /// Server Reference.
        server_reference: ByteString = ServerReference,
        /// Authentication Method.
        authentication_method: ByteString = AuthenticationMethod,
        /// Authentication Data.
        authentication_data: Bytes = AuthenticationData,
    }
}

properties! {
    /// PUBLISH properties (section 3.3.2.3).
    pub struct PublishProperties in "PUBLISH" {
        /// Payload Format Indicator.
        payload_format_indicator: PayloadFormat = PayloadFormatIndicator,
        /// Message Expiry Interval in seconds.
        message_expiry_interval: u32 = MessageExpiryInterval,
        /// Topic Alias.
        topic_alias: NonZeroU16 = TopicAlias,
        /// Response Topic.
        response_topic: ByteString = ResponseTopic,
        /// Correlation Data.
        correlation_data: Bytes = CorrelationData,
        /// Content Type.
        content_type: ByteString = ContentType,
    }
    repeated {
        /// Subscription Identifiers of the matching subscriptions (server to client).
        subscription_identifiers: SubscriptionId = SubscriptionIdentifier,
    }
}

properties! {
    /// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK
    /// (sections 3.4.2.2, 3.5.2.2, 3.6.2.2, 3.7.2.2, 3.9.2.1, 3.11.2.1).
    pub struct AckProperties in "an acknowledgement" {
        /// Reason String.
        reason_string: ByteString = ReasonString,
    }
}

properties! {
    /// SUBSCRIBE properties (section 3.8.2.1).
    pub struct SubscribeProperties in "SUBSCRIBE" {
        /// Subscription Identifier (at most once: section 3.8.2.1.2).
        subscription_identifier: SubscriptionId = SubscriptionIdentifier,
    }
}

properties! {
    /// UNSUBSCRIBE properties (section 3.10.2.1): user properties only.
    pub struct UnsubscribeProperties in "UNSUBSCRIBE" {}
}

properties! {
    /// DISCONNECT properties (section 3.14.2.2).
    pub struct DisconnectProperties in "DISCONNECT" {
        /// Session Expiry Interval (client to server only).
        session_expiry_interval: u32 = SessionExpiryInterval,
        /// Reason String.
        reason_string: ByteString = ReasonString,
        /// Server Reference.
        server_reference: ByteString = ServerReference,
    }
}

properties! {
    /// AUTH properties (section 3.15.2.2).
    pub struct AuthProperties in "AUTH" {
        /// Authentication Method.
        authentication_method: ByteString = AuthenticationMethod,
        /// Authentication Data.
        authentication_data: Bytes = AuthenticationData,
        /// Reason String.
        reason_string: ByteString = ReasonString,
    }
}
