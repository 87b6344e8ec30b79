//! The MQTT 3.1.1 and 5.0 wire format: every control packet and every
//! property of both versions, decoded incrementally and validated as the
//! specification requires of a server, and encoded for either version.
//!
//! ```
//! use bytes::BytesMut;
//! use mqdb_codec::{decode, encode, Limits, Packet, Version};
//!
//! let mut wire = BytesMut::new();
//! encode(&Packet::PingReq, Version::V5, &mut wire).unwrap();
//! let packet = decode(&mut wire, Version::V5, &Limits::default()).unwrap();
//! assert_eq!(packet, Some(Packet::PingReq));
//! ```
//!
//! It is pure: bytes in, packets out. It knows no sockets, no tokio, no
//! sessions and no broker types, so it can be fuzzed and reused by any client
//! (the benchmark tool and the test client use it too). It is not a session
//! layer: rules that need connection state (receive maximum, topic alias
//! tables, which side may send which packet) belong to the broker.
//!
//! Zero-copy: a decoded packet's payload, strings and binary fields are
//! slices of the read buffer (`Bytes` / `ByteString`).

mod decode;
mod encode;
mod error;
mod packet;
mod properties;
mod reason;
mod topic;
mod wire;

pub use bytestring::ByteString;
pub use decode::{Limits, decode};
pub use encode::{encode, encode_publish, encoded_len, encoded_publish_len};
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketId, PacketType, PubAck, PubComp, PubRec,
    PubRel, Publish, QoS, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe, Version, Will,
};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PayloadFormat, PropertyId, PublishProperties, SubscribeProperties, SubscriptionId,
    UnsubscribeProperties, UserProperty, WillProperties,
};
pub use reason::{ReasonCode, ReasonContext};
pub use topic::{FilterError, SHARE_PREFIX, TopicFilter, TopicName};
