//! A subscribing connection: reads every PUBLISH, acknowledges QoS 1/2 in
//! batches, and counts what arrived (latency from the stamp, duplicates and
//! loss by sequence number).
//!
//! It stops when every message published has arrived, when nothing more
//! arrives for [`DRAIN_IDLE`] after the publishers finished, or at the
//! deadline, whichever comes first.

use std::ops::Range;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use mqdb_codec::{Packet, PubAck, PubComp, PubRec, QoS};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::Control;
use super::client::{Conn, KEEP_ALIVE};
use super::latency::{Latency, SeqTracker};
use super::progress::Counters;
use super::publisher::nanos_since;
use super::pubsub::expected;
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

/// Receives on `conn` (already subscribed) until done; `from` are the
/// publishers whose stamps are valid here, and whose messages it expects.
pub(crate) async fn run(
    mut conn: Conn,
    index: u32,
    from: Range<u32>,
    epoch: Instant,
    control: watch::Receiver<Control>,
    counters: &Counters,
) -> SubStats {
    let mut stats = SubStats::default();
    let hears = Hears { from, counters };
    match receive(&mut conn, &hears, epoch, control, &mut stats).await {
        Ok(()) => conn.disconnect().await,
        Err(e) => stats.error = Some(format!("subscriber {index}: {e:#}")),
    }
    stats
}

/// The publishers a subscriber hears, and where it adds what it read.
struct Hears<'a> {
    from: Range<u32>,
    counters: &'a Counters,
}

async fn receive(
    conn: &mut Conn,
    hears: &Hears<'_>,
    epoch: Instant,
    mut control: watch::Receiver<Control>,
    stats: &mut SubStats,
) -> Result<()> {
    let mut control_open = true;
    // When the publishers' counts became known, and what they add up to.
    let mut done: Option<(Instant, u64)> = None;
    loop {
        let now = Instant::now();
        let (schedule, sent) = {
            let current = control.borrow_and_update();
            let sent = done.is_none().then(|| current.sent.clone()).flatten();
            (current.schedule, sent)
        };
        if let Some(sent) = sent {
            done = Some((now, expected(&sent, hears.from.clone())));
        }
        let mut drain_until = None;
        if let Some((done_at, expected)) = done {
            if stats.seqs.unique() >= expected {
                return Ok(());
            }
            let quiet_since = stats.last_receive.map_or(done_at, |t| t.max(done_at));
            if now >= quiet_since + DRAIN_IDLE {
                return Ok(());
            }
            drain_until = Some(quiet_since + DRAIN_IDLE);
        }
        let deadline = schedule.map(|s| s.deadline);
        if deadline.is_some_and(|d| now >= d) {
            stats.timed_out = true;
            return Ok(());
        }
        if !control_open && schedule.is_none() {
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
                take_messages(conn, hears, epoch, stats)?;
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
    hears: &Hears<'_>,
    epoch: Instant,
    stats: &mut SubStats,
) -> Result<()> {
    // One clock reading per read batch: every message in it arrived by now.
    let now_ns = nanos_since(epoch);
    let mut counted = 0;
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
                    Some(s) if hears.from.contains(&s.publisher) && s.sent_ns <= now_ns => {
                        stats.received += 1;
                        counted += 1;
                        // Indexed from the first publisher heard: a paired
                        // subscriber tracks one publisher, whatever its id.
                        if stats.seqs.insert(s.publisher - hears.from.start, s.seq) {
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
    if counted > 0 {
        stats.last_receive = Some(Instant::now());
        hears.counters.received(counted);
    }
    Ok(())
}
