//! Embedding mqdb's broker and watching its server events (SPEC §6).
#![allow(clippy::print_stdout)] // An example: printing is its output.
//!
//! Run with `cargo run -p mqdb-broker --example events`. It opens a store in
//! a temporary directory, serves MQTT on an ephemeral loopback port, prints
//! every event as it happens, and connects one client (a hand-written
//! MQTT 3.1.1 CONNECT, then DISCONNECT) so there is something to see.

use std::time::Duration;

use futures_util::StreamExt as _;
use mqdb_broker::{Broker, BrokerConfig, EventKind};
use mqdb_resource::{Database, Schema};
use mqdb_storage::{Store, StoreConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("mqdb-events-example-{}", std::process::id()));
    let store = Store::open(StoreConfig {
        path: dir.clone(),
        sync: true,
        node: 0,
    })?;
    let db = Database::new(store, Schema::empty());
    // Without `require_authentication`, clients without credentials are
    // anonymous (full access: no `anonymous` role is configured).
    let broker = Broker::start(db, BrokerConfig::default()).await?;

    // Subscribe to events before anything happens.
    let mut events = broker.events();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            println!(
                "{:<13} client={:?} user={:?} from={:?} over={} reason={:?}",
                event.kind.as_str(),
                event.client_id,
                event.username,
                event.remote_addr,
                event.transport,
                event.reason
            );
            if event.kind == EventKind::Disconnected {
                break;
            }
        }
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mqdb_broker::serve_tcp(broker.clone(), listener, async {
        let _ = stopped.await;
    }));

    // A client: CONNECT (3.1.1, clean session, id "example"), then DISCONNECT.
    let mut client = tokio::net::TcpStream::connect(addr).await?;
    client
        .write_all(&[
            0x10, 19, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 7, b'e', b'x', b'a', b'm',
            b'p', b'l', b'e',
        ])
        .await?;
    let mut connack = [0u8; 4];
    client.read_exact(&mut connack).await?;
    println!("CONNACK return code {}", connack[3]);
    client.write_all(&[0xE0, 0]).await?;

    tokio::time::timeout(Duration::from_secs(5), printer).await??;
    let _ = stop.send(());
    server.await?;
    broker.shutdown(Duration::from_secs(1)).await;
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
