//! A disconnected 5.0 session ends when its Session Expiry Interval has
//! passed, while the server runs: reconnecting after that finds no session.

use std::time::Duration;

use mqdb_codec::*;
use mqdb_testkit::*;

#[tokio::test]
async fn a_session_ends_after_its_expiry_interval() {
    let server = TestServer::start("type T @table @export").await;
    let connect = |expiry| {
        let mut c = RawClient::connect_packet(Version::V5, "expiring");
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(expiry);
        c
    };
    let (mut c, ack) = RawClient::connect(server.mqtt, connect(1)).await;
    assert!(!ack.session_present);
    c.send(&Packet::Disconnect(Disconnect::default())).await;
    drop(c);
    // Within the interval the session is there.
    let (mut c, ack) = RawClient::connect(server.mqtt, connect(1)).await;
    assert!(ack.session_present);
    c.send(&Packet::Disconnect(Disconnect::default())).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (_c, ack) = RawClient::connect(server.mqtt, connect(1)).await;
    assert!(!ack.session_present, "expired after 1 s");
    server.stop().await;
}
