//! A publishing connection: sends stamped PUBLISH packets as fast as the
//! broker takes them or at a fixed rate, keeps at most a window of QoS 1/2
//! messages unacknowledged, and times every acknowledgement.
//!
//! Writes are batched: every message that is due and fits in the window is
//! encoded into one buffer and written with a single `write_all`. The task
//! never outlives the run's deadline: every wait is bounded by it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use mqdb_codec::{Packet, PacketId, PubComp, PubRel, Publish, PublishProperties, QoS, TopicName};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::client::Conn;
use super::latency::Latency;
use super::progress::Counters;
use super::stamp::{PublishTemplate, Stamp, stamped_payload};
use super::{Control, Schedule};

/// Most messages encoded into one write.
const BATCH: u64 = 512;

/// Where a publisher's messages go.
#[derive(Debug, Clone)]
pub(crate) enum Topics {
    /// Every message to this topic.
    Fixed(String),
    /// Message `i` to `<prefix>/<i>` (distinct records).
    Numbered(String),
}

/// What one publisher does.
#[derive(Debug, Clone)]
pub(crate) struct PubPlan {
    /// Publisher id, carried in every stamp.
    pub(crate) id: u32,
    pub(crate) topics: Topics,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) payload: usize,
    /// Stop after this many messages (else at the end of the schedule).
    pub(crate) count: Option<u64>,
    /// Messages per second; `None`: as fast as the broker accepts them.
    pub(crate) rate: Option<f64>,
    /// Most QoS 1/2 messages unacknowledged at once.
    pub(crate) window: u16,
    /// The run's running totals (for the progress line).
    pub(crate) counters: Arc<Counters>,
}

/// What one publisher did.
#[derive(Debug, Default)]
pub(crate) struct PubStats {
    /// PUBLISH packets written to the socket.
    pub(crate) sent: u64,
    /// Acknowledged with success (PUBACK, or PUBCOMP at QoS 2).
    pub(crate) acked: u64,
    /// Acknowledged with an error reason code (5.0).
    pub(crate) rejected: u64,
    /// Still unacknowledged when the publisher stopped.
    pub(crate) unacked: u64,
    pub(crate) first_send: Option<Instant>,
    pub(crate) last_send: Option<Instant>,
    pub(crate) last_ack: Option<Instant>,
    /// From writing a PUBLISH to reading its PUBACK / PUBCOMP.
    pub(crate) ack_latency: Latency,
    /// The window actually used (after the broker's Receive Maximum).
    pub(crate) window: u64,
    /// Why it stopped early, if it did.
    pub(crate) error: Option<String>,
    /// The deadline passed before it finished.
    pub(crate) timed_out: bool,
}

/// Publishes `plan` on `conn` once the schedule is set, then disconnects.
pub(crate) async fn run(
    mut conn: Conn,
    plan: PubPlan,
    epoch: Instant,
    mut control: watch::Receiver<Control>,
) -> PubStats {
    let mut stats = PubStats::default();
    let schedule = match control.wait_for(|c| c.schedule.is_some()).await {
        Ok(c) => c.schedule.expect("waited for a schedule"),
        Err(_) => {
            stats.error = Some("the run was cancelled".into());
            return stats;
        }
    };
    match publish(&mut conn, &plan, epoch, schedule, &mut stats).await {
        Ok(()) => conn.disconnect().await,
        Err(e) => stats.error = Some(format!("publisher {}: {e:#}", plan.id)),
    }
    stats
}

async fn publish(
    conn: &mut Conn,
    plan: &PubPlan,
    epoch: Instant,
    schedule: Schedule,
    stats: &mut PubStats,
) -> Result<()> {
    let acked_qos = plan.qos != QoS::AtMostOnce;
    let window = if acked_qos {
        // A 5.0 broker's Receive Maximum caps the window (MQTT-3.3.4-7).
        u64::from(plan.window.min(conn.receive_maximum).max(1))
    } else {
        u64::MAX
    };
    stats.window = window;
    let template = match &plan.topics {
        Topics::Fixed(topic) => Some(PublishTemplate::new(
            topic,
            plan.qos,
            plan.retain,
            plan.payload,
            conn.version(),
        )?),
        Topics::Numbered(_) => None,
    };
    let mut inflight = Inflight::new();
    loop {
        let now = Instant::now();
        if now >= schedule.deadline {
            stats.timed_out = true;
            break;
        }
        let publishing = now < schedule.end && plan.count.is_none_or(|count| stats.sent < count);
        if !publishing && inflight.len == 0 {
            break;
        }
        let mut n = 0;
        if publishing {
            let room = window - inflight.len;
            let due = match plan.rate {
                Some(rate) => {
                    let elapsed = now.saturating_duration_since(schedule.go).as_secs_f64();
                    ((elapsed * rate) as u64 + 1).saturating_sub(stats.sent)
                }
                None => BATCH,
            };
            let left = plan.count.map_or(u64::MAX, |c| c - stats.sent);
            n = room.min(due).min(left).min(BATCH);
        }
        if n > 0 {
            let sent_ns = nanos_since(epoch);
            if let Some(template) = &template {
                conn.wbuf.reserve(n as usize * template.len());
            }
            for _ in 0..n {
                let packet_id = if acked_qos { inflight.take(sent_ns) } else { 0 };
                let stamp = Stamp {
                    sent_ns,
                    publisher: plan.id,
                    seq: u32::try_from(stats.sent).map_err(|_| anyhow!("sequence overflow"))?,
                };
                match (&template, &plan.topics) {
                    (Some(template), _) => template.put(&mut conn.wbuf, packet_id, stamp),
                    (None, Topics::Numbered(prefix)) => {
                        conn.queue(&numbered(prefix, plan, packet_id, stamp)?)?
                    }
                    (None, Topics::Fixed(_)) => unreachable!("fixed topics have a template"),
                }
                stats.sent += 1;
            }
            timeout_at(schedule.deadline, conn.flush())
                .await
                .map_err(|_| anyhow!("write still blocked at the deadline"))??;
            plan.counters.sent(n);
            stats.first_send.get_or_insert(now);
            stats.last_send = Some(Instant::now());
            continue;
        }
        // Nothing may be sent now: wait for acknowledgements, the next due
        // message, the end of publishing or the deadline.
        let mut wake = schedule.deadline;
        if publishing {
            wake = wake.min(schedule.end);
            if let (Some(rate), true) = (plan.rate, inflight.len < window) {
                let next = schedule.go + Duration::from_secs_f64(stats.sent as f64 / rate);
                wake = wake.min(next);
            }
        }
        tokio::select! {
            read = conn.fill() => {
                read?;
                handle_acks(conn, &mut inflight, epoch, stats)?;
                conn.flush().await?;
            }
            () = sleep_until(wake) => {}
        }
    }
    stats.unacked = inflight.len;
    Ok(())
}

/// Message `stamp.seq` to `<prefix>/<seq>`.
fn numbered(prefix: &str, plan: &PubPlan, packet_id: u16, stamp: Stamp) -> Result<Packet> {
    Ok(Packet::Publish(Publish {
        dup: false,
        qos: plan.qos,
        retain: plan.retain,
        topic: TopicName::new(format!("{prefix}/{}", stamp.seq))?,
        packet_id: PacketId::new(packet_id),
        properties: PublishProperties::default(),
        payload: stamped_payload(stamp, plan.payload),
    }))
}

/// Processes every acknowledgement read so far; queues PUBREL for PUBREC.
fn handle_acks(
    conn: &mut Conn,
    inflight: &mut Inflight,
    epoch: Instant,
    stats: &mut PubStats,
) -> Result<()> {
    let now_ns = nanos_since(epoch);
    while let Some(packet) = conn.decoded()? {
        match packet {
            Packet::PubAck(ack) => finish(
                inflight,
                ack.packet_id,
                ack.reason_code.is_error(),
                now_ns,
                stats,
            ),
            Packet::PubRec(rec) if rec.reason_code.is_error() => {
                // MQTT-4.3.3: an error PUBREC ends the exchange.
                finish(inflight, rec.packet_id, true, now_ns, stats);
            }
            Packet::PubRec(rec) => conn.queue(&Packet::PubRel(PubRel::new(rec.packet_id)))?,
            Packet::PubComp(PubComp { packet_id, .. }) => {
                finish(inflight, packet_id, false, now_ns, stats)
            }
            Packet::Disconnect(d) => bail!("the broker sent DISCONNECT {:?}", d.reason_code),
            _ => {}
        }
    }
    Ok(())
}

fn finish(inflight: &mut Inflight, id: PacketId, failed: bool, now_ns: u64, stats: &mut PubStats) {
    // An acknowledgement for an id not in flight is ignored: nothing was
    // waiting for it, so it cannot count as a delivery.
    if let Some(sent_ns) = inflight.release(id.get()) {
        if failed {
            stats.rejected += 1;
        } else {
            stats.acked += 1;
            stats.ack_latency.record_ns(now_ns.saturating_sub(sent_ns));
        }
        stats.last_ack = Some(Instant::now());
    }
}

/// Nanoseconds since `epoch` (the run's shared start).
pub(crate) fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Packet identifiers in use, with the time each message was sent.
#[derive(Debug)]
struct Inflight {
    /// Indexed by packet id; slot 0 is never used (MQTT-2.2.1-3).
    slots: Vec<Option<u64>>,
    next: u16,
    len: u64,
}

impl Inflight {
    fn new() -> Self {
        Inflight {
            slots: vec![None; 1 << 16],
            next: 0,
            len: 0,
        }
    }

    /// A free packet id, now in flight. The caller keeps `len` below the
    /// window (at most 65,535), so a free id exists.
    fn take(&mut self, sent_ns: u64) -> u16 {
        loop {
            self.next = self.next.wrapping_add(1).max(1);
            let slot = &mut self.slots[usize::from(self.next)];
            if slot.is_none() {
                *slot = Some(sent_ns);
                self.len += 1;
                return self.next;
            }
        }
    }

    /// Frees `id`; its send time, or `None` if it was not in flight.
    fn release(&mut self, id: u16) -> Option<u64> {
        let sent = self.slots[usize::from(id)].take()?;
        self.len -= 1;
        Some(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_ids_skip_zero_and_ids_in_use() {
        let mut inflight = Inflight::new();
        assert_eq!(inflight.take(1), 1);
        assert_eq!(inflight.take(2), 2);
        inflight.next = u16::MAX - 1;
        assert_eq!(inflight.take(3), u16::MAX);
        assert_eq!(inflight.take(4), 3, "wraps past 0 and the ids in use");
        assert_eq!(inflight.release(2), Some(2));
        assert_eq!(inflight.release(2), None, "a second ack is not counted");
        assert_eq!(inflight.len, 3);
    }
}
