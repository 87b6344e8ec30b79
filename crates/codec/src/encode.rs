//! Encoding: [`Packet`]s into bytes for the network.
//!
//! The body length is computed first (it goes into the fixed header), then the
//! packet is written in one pass with the buffer reserved once. On an MQTT
//! 3.1.1 connection the 5.0-only fields (properties, reason codes) are left
//! out. On error nothing is left in the buffer.

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;
use crate::packet::{
    Connect, Packet, PacketType, Publish, QoS, RetainHandling, SubscriptionOptions, Version,
};
use crate::properties::AckProperties;
use crate::reason::ReasonCode;
use crate::wire::{MAX_VAR_INT, var_int_len, write_binary, write_string, write_var_int};

/// Appends the encoding of `packet` for a `version` connection to `buf`.
/// Returns the number of bytes written.
pub fn encode(packet: &Packet, version: Version, buf: &mut BytesMut) -> Result<usize, EncodeError> {
    let body = body_len(packet, version)?;
    framed(buf, first_byte(packet), body, |buf| {
        write_body(packet, version, buf)
    })
}

/// The size of the encoded packet, fixed header included: what a sender
/// compares with the receiver's Maximum Packet Size (MQTT-3.1.2-24).
pub fn encoded_len(packet: &Packet, version: Version) -> Result<usize, EncodeError> {
    framed_len(body_len(packet, version)?)
}

/// Appends the encoding of a PUBLISH: the same bytes as [`encode`] of
/// `Packet::Publish`, without first moving the publish into a [`Packet`]
/// (the hot path of a broker's delivery).
pub fn encode_publish(
    publish: &Publish,
    version: Version,
    buf: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let v5 = version == Version::V5;
    let first = ((PacketType::Publish as u8) << 4) | publish_flags(publish);
    framed(buf, first, publish_len(publish, v5)?, |buf| {
        write_publish(publish, v5, buf)
    })
}

/// [`encoded_len`] of a PUBLISH.
pub fn encoded_publish_len(publish: &Publish, version: Version) -> Result<usize, EncodeError> {
    framed_len(publish_len(publish, version == Version::V5)?)
}

/// The size of a packet with a `body`-byte body, fixed header included.
fn framed_len(body: usize) -> Result<usize, EncodeError> {
    if body > MAX_VAR_INT {
        return Err(EncodeError::PacketTooLarge(body));
    }
    Ok(1 + var_int_len(body) + body)
}

/// Appends a packet: its first byte, the body length, then the body that
/// `write_body` writes (with the buffer reserved once). On error nothing is
/// left in the buffer. Returns the number of bytes written.
fn framed(
    buf: &mut BytesMut,
    first: u8,
    body: usize,
    write_body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let len = framed_len(body)?;
    let start = buf.len();
    buf.reserve(len);
    buf.put_u8(first);
    let result = write_var_int(buf, body).and_then(|()| write_body(buf));
    if result.is_err() {
        buf.truncate(start);
    }
    result.map(|()| buf.len() - start)
}

fn first_byte(packet: &Packet) -> u8 {
    let packet_type = packet.packet_type();
    let flags = match packet {
        Packet::Publish(p) => publish_flags(p),
        _ => packet_type.required_flags(),
    };
    ((packet_type as u8) << 4) | flags
}

fn publish_flags(p: &Publish) -> u8 {
    // MQTT-3.3.1-2: DUP is 0 on QoS 0.
    let dup = p.dup && p.qos != QoS::AtMostOnce;
    (u8::from(dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
}

fn write_publish(p: &Publish, v5: bool, buf: &mut BytesMut) -> Result<(), EncodeError> {
    write_string(buf, &p.topic, "topic name")?;
    if p.qos != QoS::AtMostOnce {
        // Checked in publish_len.
        buf.put_u16(p.packet_id.map_or(0, |id| id.get()));
    }
    if v5 {
        p.properties.encode(buf)?;
    }
    buf.put_slice(&p.payload);
    Ok(())
}

/// The encoded size of a reason code plus properties that may both be left
/// out when they are `Success` and empty (acks, DISCONNECT, AUTH on 5.0).
fn optional_reason_len(reason: ReasonCode, props_len: usize, props_empty: bool) -> usize {
    match (reason == ReasonCode::Success, props_empty) {
        (true, true) => 0,
        (_, true) => 1,
        _ => 1 + props_len,
    }
}

fn body_len(packet: &Packet, version: Version) -> Result<usize, EncodeError> {
    let v5 = version == Version::V5;
    Ok(match packet {
        Packet::Connect(c) => connect_len(c),
        Packet::ConnAck(c) => 2 + if v5 { c.properties.encoded_len() } else { 0 },
        Packet::Publish(p) => publish_len(p, v5)?,
        Packet::PubAck(p) => 2 + ack_len(p.reason_code, &p.properties, v5),
        Packet::PubRec(p) => 2 + ack_len(p.reason_code, &p.properties, v5),
        Packet::PubRel(p) => 2 + ack_len(p.reason_code, &p.properties, v5),
        Packet::PubComp(p) => 2 + ack_len(p.reason_code, &p.properties, v5),
        Packet::Subscribe(s) => {
            if s.filters.is_empty() {
                return Err(EncodeError::EmptyList(PacketType::Subscribe));
            }
            2 + if v5 { s.properties.encoded_len() } else { 0 }
                + s.filters.iter().map(|(f, _)| 3 + f.len()).sum::<usize>()
        }
        Packet::SubAck(s) => {
            if s.reason_codes.is_empty() {
                return Err(EncodeError::EmptyList(PacketType::SubAck));
            }
            2 + if v5 { s.properties.encoded_len() } else { 0 } + s.reason_codes.len()
        }
        Packet::Unsubscribe(u) => {
            if u.filters.is_empty() {
                return Err(EncodeError::EmptyList(PacketType::Unsubscribe));
            }
            2 + if v5 { u.properties.encoded_len() } else { 0 }
                + u.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
        }
        Packet::UnsubAck(u) => {
            if !v5 {
                2
            } else if u.reason_codes.is_empty() {
                return Err(EncodeError::EmptyList(PacketType::UnsubAck));
            } else {
                2 + u.properties.encoded_len() + u.reason_codes.len()
            }
        }
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) if v5 => optional_reason_len(
            d.reason_code,
            d.properties.encoded_len(),
            d.properties.is_empty(),
        ),
        Packet::Disconnect(_) => 0,
        // Section 3.15.2.1: reason code and properties are omitted together
        // (Success without properties) or both written.
        Packet::Auth(a) if v5 => {
            if a.reason_code == ReasonCode::Success && a.properties.is_empty() {
                0
            } else {
                1 + a.properties.encoded_len()
            }
        }
        Packet::Auth(_) => return Err(EncodeError::NotInVersion(PacketType::Auth)),
    })
}

fn ack_len(reason: ReasonCode, props: &AckProperties, v5: bool) -> usize {
    if v5 {
        optional_reason_len(reason, props.encoded_len(), props.is_empty())
    } else {
        0
    }
}

fn connect_len(c: &Connect) -> usize {
    let v5 = c.protocol == Version::V5;
    // Protocol name (2 + 4), level, flags, keep alive.
    let mut len = 10 + 2 + c.client_id.len();
    if v5 {
        len += c.properties.encoded_len();
    }
    if let Some(will) = &c.will {
        len += 2 + will.topic.len() + 2 + will.payload.len();
        if v5 {
            len += will.properties.encoded_len();
        }
    }
    len += c.username.as_ref().map_or(0, |u| 2 + u.len());
    len += c.password.as_ref().map_or(0, |p| 2 + p.len());
    len
}

fn publish_len(p: &Publish, v5: bool) -> Result<usize, EncodeError> {
    let id_len = match (p.qos, p.packet_id) {
        (QoS::AtMostOnce, _) => 0,
        (_, Some(_)) => 2,
        (_, None) => return Err(EncodeError::MissingPacketId),
    };
    let props = if v5 { p.properties.encoded_len() } else { 0 };
    Ok(2 + p.topic.len() + id_len + props + p.payload.len())
}

fn write_body(packet: &Packet, version: Version, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = version == Version::V5;
    match packet {
        Packet::Connect(c) => write_connect(c, buf)?,
        Packet::ConnAck(c) => {
            buf.put_u8(u8::from(c.session_present));
            if v5 {
                buf.put_u8(c.reason_code.as_u8());
                c.properties.encode(buf)?;
            } else {
                buf.put_u8(c.reason_code.to_v3_connack());
            }
        }
        Packet::Publish(p) => write_publish(p, v5, buf)?,
        Packet::PubAck(p) => write_ack(buf, p.packet_id.get(), p.reason_code, &p.properties, v5)?,
        Packet::PubRec(p) => write_ack(buf, p.packet_id.get(), p.reason_code, &p.properties, v5)?,
        Packet::PubRel(p) => write_ack(buf, p.packet_id.get(), p.reason_code, &p.properties, v5)?,
        Packet::PubComp(p) => write_ack(buf, p.packet_id.get(), p.reason_code, &p.properties, v5)?,
        Packet::Subscribe(s) => {
            buf.put_u16(s.packet_id.get());
            if v5 {
                s.properties.encode(buf)?;
            }
            for (filter, options) in &s.filters {
                write_string(buf, filter, "topic filter")?;
                buf.put_u8(options_byte(options, v5));
            }
        }
        Packet::SubAck(s) => {
            buf.put_u16(s.packet_id.get());
            if v5 {
                s.properties.encode(buf)?;
            }
            for code in &s.reason_codes {
                buf.put_u8(if v5 {
                    code.as_u8()
                } else {
                    code.to_v3_suback()
                });
            }
        }
        Packet::Unsubscribe(u) => {
            buf.put_u16(u.packet_id.get());
            if v5 {
                u.properties.encode(buf)?;
            }
            for filter in &u.filters {
                write_string(buf, filter, "topic filter")?;
            }
        }
        Packet::UnsubAck(u) => {
            buf.put_u16(u.packet_id.get());
            if v5 {
                u.properties.encode(buf)?;
                for code in &u.reason_codes {
                    buf.put_u8(code.as_u8());
                }
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            if v5 && (d.reason_code != ReasonCode::Success || !d.properties.is_empty()) {
                buf.put_u8(d.reason_code.as_u8());
                if !d.properties.is_empty() {
                    d.properties.encode(buf)?;
                }
            }
        }
        Packet::Auth(a) => {
            if a.reason_code != ReasonCode::Success || !a.properties.is_empty() {
                buf.put_u8(a.reason_code.as_u8());
                a.properties.encode(buf)?;
            }
        }
    }
    Ok(())
}

fn write_ack(
    buf: &mut BytesMut,
    packet_id: u16,
    reason: ReasonCode,
    props: &AckProperties,
    v5: bool,
) -> Result<(), EncodeError> {
    buf.put_u16(packet_id);
    if v5 && (reason != ReasonCode::Success || !props.is_empty()) {
        buf.put_u8(reason.as_u8());
        if !props.is_empty() {
            props.encode(buf)?;
        }
    }
    Ok(())
}

fn options_byte(options: &SubscriptionOptions, v5: bool) -> u8 {
    let qos = options.qos as u8;
    if !v5 {
        return qos;
    }
    let retain_handling = match options.retain_handling {
        RetainHandling::SendAtSubscribe => 0,
        RetainHandling::SendIfNew => 1,
        RetainHandling::DoNotSend => 2,
    };
    qos | (u8::from(options.no_local) << 2)
        | (u8::from(options.retain_as_published) << 3)
        | (retain_handling << 4)
}

fn write_connect(c: &Connect, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = c.protocol == Version::V5;
    write_string(buf, "MQTT", "protocol name")?;
    buf.put_u8(c.protocol.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(will) = &c.will {
        flags |= 0x04 | ((will.qos as u8) << 3) | (u8::from(will.retain) << 5);
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    if v5 {
        c.properties.encode(buf)?;
    }
    write_string(buf, &c.client_id, "client identifier")?;
    if let Some(will) = &c.will {
        if v5 {
            will.properties.encode(buf)?;
        }
        write_string(buf, &will.topic, "will topic")?;
        write_binary(buf, &will.payload, "will payload")?;
    }
    if let Some(username) = &c.username {
        write_string(buf, username, "user name")?;
    }
    if let Some(password) = &c.password {
        write_binary(buf, password, "password")?;
    }
    Ok(())
}
