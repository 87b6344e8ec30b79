//! A subscribing connection: reads every PUBLISH, acknowledges QoS 1/2 in
//! batches, and counts what arrived (latency from the stamp, duplicates and
//! loss by sequence number).
//!
//! It stops when every message published has arrived, when nothing more
//! arrives for [`DRAIN_IDLE`] after the publishers finished, or at the
//! deadline, whichever comes first.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use mqdb_codec::{Packet, PubAck, PubComp, PubRec, QoS};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::Control;
use super::client::{Conn, KEEP_ALIVE};
use super::latency::{Latency, SeqTracker};
use super::publisher::nanos_since;
use super::stamp::Stamp;

/// How long a subscriber waits for stragglers once publishing is over.
pub(crate) const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// What one subscriber received.
#[derive(Debug, Default)]
pub(crate) struct SubStats {
    /// Stamped messages of this run, duplicates included.
    pub(crate) received: u64,
    /// Messages without a valid stamp of this run (not counted as received).
    pub(crate) foreign: u64,
    pub(crate) seqs: SeqTracker,
    pub(crate) latency: Latency,
    pub(crate) last_receive: Option<Instant>,
    pub(crate) error: Option<String>,
    /// The deadline passed before everything expected had arrived.
    pub(crate) timed_out: bool,
}

/// Receives on `conn` (already subscribed) until done; `publishers` is the
/// number of publishers whose stamps are valid.
pub(crate) async fn run(
    mut conn: Conn,
    index: u32,
    publishers: u32,
    epoch: Instant,
    control: watch::Receiver<Control>,
) -> SubStats {
    let mut stats = SubStats::default();
    match receive(&mut conn, publishers, epoch, control, &mut stats).await {
        Ok(()) => conn.disconnect().await,
        Err(e) => stats.error = Some(format!("subscriber {index}: {e:#}")),
    }
    stats
}

async fn receive(
    conn: &mut Conn,
    publishers: u32,
    epoch: Instant,
    mut control: watch::Receiver<Control>,
    stats: &mut SubStats,
) -> Result<()> {
    let mut control_open = true;
    // When the expected total became known.
    let mut done_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let current = *control.borrow_and_update();
        let mut drain_until = None;
        if let Some(expected) = current.expected {
            let done_at = *done_at.get_or_insert(now);
            if stats.seqs.unique() >= expected {
                return Ok(());
            }
            let quiet_since = stats.last_receive.map_or(done_at, |t| t.max(done_at));
            if now >= quiet_since + DRAIN_IDLE {
                return Ok(());
            }
            drain_until = Some(quiet_since + DRAIN_IDLE);
        }
        let deadline = current.schedule.map(|s| s.deadline);
        if deadline.is_some_and(|d| now >= d) {
            stats.timed_out = true;
            return Ok(());
        }
        if !control_open && current.schedule.is_none() {
            bail!("the run was cancelled");
        }
        let ping_at = conn.last_write + KEEP_ALIVE / 2;
        let mut wake = ping_at;
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        if let Some(until) = drain_until {
            wake = wake.min(until);
        }
        tokio::select! {
            read = conn.fill() => {
                read?;
                take_messages(conn, publishers, epoch, stats)?;
            }
            changed = control.changed(), if control_open => {
                control_open = changed.is_ok();
            }
            () = sleep_until(wake) => {
                if Instant::now() >= ping_at {
                    conn.queue(&Packet::PingReq)?;
                }
            }
        }
        // Acknowledgements and pings; bounded like every other wait.
        match deadline {
            Some(d) => timeout_at(d, conn.flush())
                .await
                .map_err(|_| anyhow!("write still blocked at the deadline"))??,
            None => conn.flush().await?,
        }
    }
}

/// Counts every PUBLISH read so far and queues its acknowledgement.
fn take_messages(
    conn: &mut Conn,
    publishers: u32,
    epoch: Instant,
    stats: &mut SubStats,
) -> Result<()> {
    // One clock reading per read batch: every message in it arrived by now.
    let now_ns = nanos_since(epoch);
    let mut any = false;
    while let Some(packet) = conn.decoded()? {
        match packet {
            Packet::Publish(publish) => {
                match publish.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => {
                        let id = publish.packet_id.expect("decoder checks QoS 1 ids");
                        conn.queue(&Packet::PubAck(PubAck::new(id)))?;
                    }
                    QoS::ExactlyOnce => {
                        let id = publish.packet_id.expect("decoder checks QoS 2 ids");
                        conn.queue(&Packet::PubRec(PubRec::new(id)))?;
                    }
                }
                match Stamp::read(&publish.payload) {
                    Some(s) if s.publisher < publishers && s.sent_ns <= now_ns => {
                        stats.received += 1;
                        any = true;
                        if stats.seqs.insert(s.publisher, s.seq) {
                            stats.latency.record_ns(now_ns - s.sent_ns);
                        }
                    }
                    _ => stats.foreign += 1,
                }
            }
            Packet::PubRel(rel) => conn.queue(&Packet::PubComp(PubComp::new(rel.packet_id)))?,
            Packet::Disconnect(d) => bail!("the broker sent DISCONNECT {:?}", d.reason_code),
            _ => {}
        }
    }
    if any {
        stats.last_receive = Some(Instant::now());
    }
    Ok(())
}
