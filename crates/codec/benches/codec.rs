//! Decode and encode throughput of PUBLISH packets, the broker's hot path:
//! 64-byte and 1 KiB payloads, MQTT 3.1.1 and 5.0 (with a content type and a
//! user property, as mqdb sends them). Run: `cargo bench -p mqdb-codec`.

use bytes::{Bytes, BytesMut};
use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use mqdb_codec::{
    ByteString, Limits, Packet, PacketId, Publish, PublishProperties, QoS, TopicName, UserProperty,
    Version, decode, encode,
};

fn main() {
    divan::main();
}

const SIZES: &[usize] = &[64, 1024];
/// Packets per iteration: decoding a batch from one buffer, as a socket read does.
const BATCH: usize = 100;

fn publish(payload: usize, version: Version) -> Packet {
    let mut properties = PublishProperties::default();
    if version == Version::V5 {
        properties.content_type = Some(ByteString::from_static("application/json"));
        properties
            .user_properties
            .push(UserProperty::new("source", "bench"));
    }
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new("Sensor/building-7/floor-3/room-12").unwrap(),
        packet_id: PacketId::new(42),
        properties,
        payload: Bytes::from(vec![b'x'; payload]),
    })
}

fn wire(payload: usize, version: Version) -> Bytes {
    let packet = publish(payload, version);
    let mut buf = BytesMut::new();
    for _ in 0..BATCH {
        encode(&packet, version, &mut buf).unwrap();
    }
    buf.freeze()
}

#[divan::bench(args = SIZES, consts = [4, 5])]
fn decode_publish<const LEVEL: u8>(bencher: Bencher<'_, '_>, payload: usize) {
    let version = if LEVEL == 5 {
        Version::V5
    } else {
        Version::V311
    };
    let bytes = wire(payload, version);
    let limits = Limits::default();
    bencher
        .counter(ItemsCount::new(BATCH))
        .counter(BytesCount::new(bytes.len()))
        .with_inputs(|| BytesMut::from(&bytes[..]))
        .bench_local_refs(|buf| {
            while let Some(p) = decode(buf, version, &limits).unwrap() {
                black_box(p);
            }
        });
}

#[divan::bench(args = SIZES, consts = [4, 5])]
fn encode_publish<const LEVEL: u8>(bencher: Bencher<'_, '_>, payload: usize) {
    let version = if LEVEL == 5 {
        Version::V5
    } else {
        Version::V311
    };
    let packet = publish(payload, version);
    let len = wire(payload, version).len();
    let mut buf = BytesMut::with_capacity(len);
    bencher
        .counter(ItemsCount::new(BATCH))
        .counter(BytesCount::new(len))
        .bench_local(|| {
            buf.clear();
            for _ in 0..BATCH {
                encode(black_box(&packet), version, &mut buf).unwrap();
            }
            black_box(&buf);
        });
}
