//! Decoding: bytes from the network into [`Packet`]s.
//!
//! The fixed header (section 2.1) is parsed first; its type, flags and
//! remaining length are checked before a single byte of the body is waited
//! for, so an oversized or nonsensical packet is refused at once:
//!
//! ```text
//!  bit     7   6   5   4   3   2   1   0
//!  byte 1  [packet type ]  [   flags    ]
//!  byte 2+ remaining length: 1-4 byte Variable Byte Integer
//! ```
//!
//! The body is then split off the read buffer and frozen, so payloads,
//! strings and binary fields are slices of it (no copy).

use bytes::{Buf, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketId, PacketType, PubAck, PubComp, PubRec,
    PubRel, Publish, QoS, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe, Version, Will,
};
use crate::properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UnsubscribeProperties, WillProperties,
};
use crate::reason::{ReasonCode, ReasonContext};
use crate::topic::{TopicFilter, TopicName};
use crate::wire::{parse_var_int, read_binary, read_string, read_u8, read_u16};

/// Limits a receiver enforces while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest whole packet (fixed header included) accepted, in bytes:
    /// the Maximum Packet Size of section 3.1.2.11.4 / 3.2.2.3.6.
    pub max_packet_size: u32,
}

impl Limits {
    /// The protocol's own ceiling: a 268,435,455-byte body plus a 5-byte header.
    pub const PROTOCOL_MAX: u32 = 268_435_460;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: Self::PROTOCOL_MAX,
        }
    }
}

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet (nothing is
/// consumed; the buffer's capacity is grown to fit the packet), and
/// `Ok(Some(packet))` after removing its bytes from `buf`. `version` is the
/// connection's protocol version; for CONNECT it is ignored and the packet's
/// own protocol level decides. After an error the connection must be closed:
/// the stream position is unspecified.
pub fn decode(
    buf: &mut BytesMut,
    version: Version,
    limits: &Limits,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = check_first_byte(first, version)?;
    let Some((remaining, len_bytes)) = parse_var_int(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + len_bytes + remaining as usize;
    if total > limits.max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge {
            size: total,
            max: limits.max_packet_size,
        });
    }
    if buf.len() < total {
        // Grow towards the announced size, but never reserve more than 1 MiB
        // on the word of a header alone: memory follows bytes received.
        buf.reserve((total - buf.len()).min(1 << 20));
        return Ok(None);
    }
    let mut body = buf.split_to(total).freeze();
    body.advance(1 + len_bytes);
    decode_body(packet_type, first & 0x0F, body, version).map(Some)
}

/// Checks the packet type and the flags it requires (MQTT-2.1.3-1).
fn check_first_byte(first: u8, version: Version) -> Result<PacketType, DecodeError> {
    let packet_type = PacketType::from_u8(first >> 4)
        .filter(|t| *t != PacketType::Auth || version == Version::V5)
        .ok_or(DecodeError::ReservedPacketType(first >> 4))?;
    let flags = first & 0x0F;
    if packet_type == PacketType::Publish {
        // MQTT-3.3.1-4: QoS 3 is malformed.
        if (flags >> 1) & 0b11 == 3 {
            return Err(DecodeError::InvalidQos);
        }
        // MQTT-3.3.1-2: DUP must be 0 on QoS 0.
        if flags & 0b1000 != 0 && (flags >> 1) & 0b11 == 0 {
            return Err(DecodeError::DupWithQos0);
        }
    } else if flags != packet_type.required_flags() {
        return Err(DecodeError::InvalidFixedHeaderFlags {
            packet: packet_type,
            flags,
        });
    }
    Ok(packet_type)
}

fn decode_body(
    packet_type: PacketType,
    flags: u8,
    mut body: Bytes,
    version: Version,
) -> Result<Packet, DecodeError> {
    let v5 = version == Version::V5;
    let packet = match packet_type {
        PacketType::Connect => Packet::Connect(Box::new(connect(&mut body)?)),
        PacketType::ConnAck => Packet::ConnAck(Box::new(connack(&mut body, v5)?)),
        PacketType::Publish => Packet::Publish(publish(&mut body, flags, v5)?),
        PacketType::PubAck => {
            let (packet_id, reason_code, properties) =
                pub_response(&mut body, v5, PacketType::PubAck)?;
            Packet::PubAck(PubAck {
                packet_id,
                reason_code,
                properties,
            })
        }
        PacketType::PubRec => {
            let (packet_id, reason_code, properties) =
                pub_response(&mut body, v5, PacketType::PubRec)?;
            Packet::PubRec(PubRec {
                packet_id,
                reason_code,
                properties,
            })
        }
        PacketType::PubRel => {
            let (packet_id, reason_code, properties) =
                pub_response(&mut body, v5, PacketType::PubRel)?;
            Packet::PubRel(PubRel {
                packet_id,
                reason_code,
                properties,
            })
        }
        PacketType::PubComp => {
            let (packet_id, reason_code, properties) =
                pub_response(&mut body, v5, PacketType::PubComp)?;
            Packet::PubComp(PubComp {
                packet_id,
                reason_code,
                properties,
            })
        }
        PacketType::Subscribe => Packet::Subscribe(subscribe(&mut body, v5)?),
        PacketType::SubAck => Packet::SubAck(suback(&mut body, v5)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(unsubscribe(&mut body, v5)?),
        PacketType::UnsubAck => Packet::UnsubAck(unsuback(&mut body, v5)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(disconnect(&mut body, v5)?),
        PacketType::Auth => Packet::Auth(auth(&mut body)?),
    };
    if !body.is_empty() {
        return Err(DecodeError::TrailingBytes(body.len()));
    }
    Ok(packet)
}

fn packet_id(buf: &mut Bytes) -> Result<PacketId, DecodeError> {
    // MQTT-2.2.1-3: SUBSCRIBE, UNSUBSCRIBE, QoS > 0 PUBLISH and their acks
    // carry a non-zero identifier.
    PacketId::new(read_u16(buf, "packet identifier")?).ok_or(DecodeError::ZeroPacketId)
}

fn reason_code(
    buf: &mut Bytes,
    packet: PacketType,
    ctx: ReasonContext,
) -> Result<ReasonCode, DecodeError> {
    let code = read_u8(buf, "reason code")?;
    ReasonCode::from_u8(code)
        .filter(|r| r.allowed_in(ctx))
        .ok_or(DecodeError::InvalidReasonCode { packet, code })
}

fn connect(buf: &mut Bytes) -> Result<Connect, DecodeError> {
    let name = read_binary(buf, "protocol name")?;
    let level = read_u8(buf, "protocol level")?;
    if &name[..] != b"MQTT" {
        // MQTT 3.1 ("MQIsdp", level 3) is an unsupported version rather than garbage.
        if &name[..] == b"MQIsdp" {
            return Err(DecodeError::UnsupportedProtocolLevel(level));
        }
        return Err(DecodeError::InvalidProtocolName(
            String::from_utf8_lossy(&name).into(),
        ));
    }
    // MQTT-3.1.2-2: only levels 4 and 5 are spoken here.
    let protocol = match level {
        4 => Version::V311,
        5 => Version::V5,
        other => return Err(DecodeError::UnsupportedProtocolLevel(other)),
    };
    let v5 = protocol == Version::V5;
    let flags = read_u8(buf, "connect flags")?;
    // MQTT-3.1.2-3: the reserved bit must be 0.
    if flags & 0x01 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::WillFlagsWithoutWill);
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidQos)?;
    // 3.1.1 MQTT-3.1.2-22; 5.0 allows a password without a user name.
    if !v5 && password_flag && !username_flag {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = read_u16(buf, "keep alive")?;
    let properties = if v5 {
        ConnectProperties::decode(buf)?
    } else {
        Default::default()
    };
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    let client_id = read_string(buf, "client identifier")?;
    let will = if will_flag {
        let properties = if v5 {
            WillProperties::decode(buf)?
        } else {
            Default::default()
        };
        check_response_topic(properties.response_topic.as_deref())?;
        let topic = read_string(buf, "will topic")?;
        if topic.is_empty() {
            return Err(DecodeError::EmptyTopicName);
        }
        let topic = TopicName::new(topic)?;
        let payload = read_binary(buf, "will payload")?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(read_string(buf, "user name")?)
    } else {
        None
    };
    let password = if password_flag {
        Some(read_binary(buf, "password")?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

/// MQTT-3.3.2-14: a Response Topic is a topic name, without wildcards.
fn check_response_topic(topic: Option<&str>) -> Result<(), DecodeError> {
    match topic {
        Some(t) if t.contains(['+', '#']) => Err(DecodeError::ResponseTopicWildcard),
        _ => Ok(()),
    }
}

fn connack(buf: &mut Bytes, v5: bool) -> Result<ConnAck, DecodeError> {
    let ack_flags = read_u8(buf, "connect acknowledge flags")?;
    // MQTT-3.2.2-1: bits 7-1 are reserved.
    if ack_flags & 0xFE != 0 {
        return Err(DecodeError::ConnAckReservedFlags);
    }
    let code = read_u8(buf, "connect reason code")?;
    let reason_code = if v5 {
        ReasonCode::from_u8(code).filter(|r| r.allowed_in(ReasonContext::ConnAck))
    } else {
        ReasonCode::from_v3_connack(code)
    }
    .ok_or(DecodeError::InvalidReasonCode {
        packet: PacketType::ConnAck,
        code,
    })?;
    let properties = if v5 {
        ConnAckProperties::decode(buf)?
    } else {
        Default::default()
    };
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(ConnAck {
        session_present: ack_flags & 1 != 0,
        reason_code,
        properties,
    })
}

fn publish(buf: &mut Bytes, flags: u8, v5: bool) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQos)?;
    let topic = TopicName::new(read_string(buf, "topic name")?)?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(buf)?)
    };
    let properties = if v5 {
        PublishProperties::decode(buf)?
    } else {
        Default::default()
    };
    // 3.1.1 MQTT-4.7.3-1; 5.0 section 3.3.2.1: empty only with a Topic Alias.
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::EmptyTopicName);
    }
    check_response_topic(properties.response_topic.as_deref())?;
    let payload = std::mem::take(buf);
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 1 != 0,
        topic,
        packet_id,
        properties,
        payload,
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP: the packet id, then on 5.0 an optional
/// reason code and optional properties (sections 3.4.2.1 and following).
fn pub_response(
    buf: &mut Bytes,
    v5: bool,
    packet: PacketType,
) -> Result<(PacketId, ReasonCode, AckProperties), DecodeError> {
    let id = packet_id(buf)?;
    if !v5 || buf.is_empty() {
        return Ok((id, ReasonCode::Success, AckProperties::default()));
    }
    let ctx = match packet {
        PacketType::PubAck | PacketType::PubRec => ReasonContext::PubAckOrRec,
        _ => ReasonContext::PubRelOrComp,
    };
    let code = reason_code(buf, packet, ctx)?;
    let properties = if buf.is_empty() {
        AckProperties::default()
    } else {
        AckProperties::decode(buf)?
    };
    Ok((id, code, properties))
}

fn subscribe(buf: &mut Bytes, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(buf)?;
    let properties = if v5 {
        SubscribeProperties::decode(buf)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !buf.is_empty() {
        let filter = TopicFilter::new(read_string(buf, "topic filter")?)?;
        let options = subscription_options(read_u8(buf, "subscription options")?, v5)?;
        // MQTT-3.8.3-4: No Local on a shared subscription is a Protocol Error.
        if options.no_local && filter.is_shared() {
            return Err(DecodeError::NoLocalOnSharedSubscription);
        }
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters(PacketType::Subscribe));
    }
    Ok(Subscribe {
        packet_id,
        properties,
        filters,
    })
}

fn subscription_options(byte: u8, v5: bool) -> Result<SubscriptionOptions, DecodeError> {
    // 5.0 MQTT-3.8.3-5: bits 6-7 reserved; 3.1.1 MQTT-3.8.3-4: bits 2-7 reserved.
    let reserved = if v5 { 0b1100_0000 } else { 0b1111_1100 };
    if byte & reserved != 0 {
        return Err(DecodeError::SubscriptionOptionsReserved);
    }
    // 5.0 section 3.8.3.1: Maximum QoS 3 is a Protocol Error; 3.1.1
    // MQTT-3.8.3-4: malformed.
    let qos = QoS::from_u8(byte & 0b11).ok_or(if v5 {
        DecodeError::InvalidSubscriptionQos
    } else {
        DecodeError::InvalidQos
    })?;
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::InvalidRetainHandling),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0b0100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}

fn suback(buf: &mut Bytes, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(buf)?;
    let properties = if v5 {
        AckProperties::decode(buf)?
    } else {
        Default::default()
    };
    let mut reason_codes = Vec::with_capacity(buf.len());
    while !buf.is_empty() {
        let code = if v5 {
            reason_code(buf, PacketType::SubAck, ReasonContext::SubAck)?
        } else {
            let code = read_u8(buf, "return code")?;
            ReasonCode::from_v3_suback(code).ok_or(DecodeError::InvalidReasonCode {
                packet: PacketType::SubAck,
                code,
            })?
        };
        reason_codes.push(code);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::Truncated("return codes"));
    }
    Ok(SubAck {
        packet_id,
        properties,
        reason_codes,
    })
}

fn unsubscribe(buf: &mut Bytes, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(buf)?;
    let properties = if v5 {
        UnsubscribeProperties::decode(buf)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !buf.is_empty() {
        filters.push(TopicFilter::new(read_string(buf, "topic filter")?)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe));
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

fn unsuback(buf: &mut Bytes, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(buf)?;
    if !v5 {
        return Ok(UnsubAck {
            packet_id,
            properties: Default::default(),
            reason_codes: vec![],
        });
    }
    let properties = AckProperties::decode(buf)?;
    let mut reason_codes = Vec::with_capacity(buf.len());
    while !buf.is_empty() {
        reason_codes.push(reason_code(
            buf,
            PacketType::UnsubAck,
            ReasonContext::UnsubAck,
        )?);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::Truncated("reason codes"));
    }
    Ok(UnsubAck {
        packet_id,
        properties,
        reason_codes,
    })
}

fn disconnect(buf: &mut Bytes, v5: bool) -> Result<Disconnect, DecodeError> {
    // Section 3.14.2.1: with a remaining length of 0 the reason is 0x00.
    if !v5 || buf.is_empty() {
        return Ok(Disconnect::default());
    }
    let reason_code = reason_code(buf, PacketType::Disconnect, ReasonContext::Disconnect)?;
    let properties = if buf.is_empty() {
        DisconnectProperties::default()
    } else {
        DisconnectProperties::decode(buf)?
    };
    Ok(Disconnect {
        reason_code,
        properties,
    })
}

fn auth(buf: &mut Bytes) -> Result<Auth, DecodeError> {
    // Section 3.15.2.1: the reason code and the properties are omitted
    // together, meaning Success with no properties; otherwise both are there.
    if buf.is_empty() {
        return Ok(Auth::default());
    }
    let reason_code = reason_code(buf, PacketType::Auth, ReasonContext::Auth)?;
    let properties = AuthProperties::decode(buf)?;
    // Section 3.15.2.2.2: omitting the Authentication Method is a Protocol Error.
    if properties.authentication_method.is_none() {
        return Err(DecodeError::AuthWithoutMethod);
    }
    Ok(Auth {
        reason_code,
        properties,
    })
}
