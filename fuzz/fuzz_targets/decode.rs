//! Fuzz target for the MQTT decoder: any bytes, either protocol version.
//! Decoding must never panic, and every packet it accepts must re-encode to
//! bytes that decode to the same packet.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqdb_codec::{Limits, Version, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let version = if selector & 1 == 0 { Version::V311 } else { Version::V5 };
    let limits = Limits { max_packet_size: 64 * 1024 };
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = decode(&mut buf, version, &limits) {
        let mut again = BytesMut::new();
        encode(&packet, version, &mut again).expect("a decoded packet must encode");
        let round = decode(&mut again, version, &Limits::default())
            .expect("a re-encoded packet must decode")
            .expect("a re-encoded packet is complete");
        assert_eq!(round, packet);
        assert!(again.is_empty());
    }
});
