//! Runs one measured round: connects every subscriber (and waits for its
//! SUBACK) and every publisher, starts them together on one schedule, waits
//! for the publishers, tells the subscribers how many messages to expect,
//! waits for them, and adds up what each connection counted.
//!
//! Every workload is such a round: fan-in, fan-out and latency differ in
//! their numbers, pairs give each publisher its own subscriber, retained
//! writes are a round without subscribers.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use mqdb_codec::QoS;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::client::{Conn, HANDSHAKE_TIMEOUT, Target};
use super::latency::{Latency, Percentiles};
use super::progress::{Counters, Ticker};
use super::publisher::{self, PubPlan, PubStats, Topics};
use super::subscriber::{self, SubStats};
use super::{Control, Schedule};

/// After the end of publishing, how long the round may go on draining.
pub(crate) const GRACE: Duration = Duration::from_secs(10);

/// How long after the deadline a task may take to hand in its counts
/// before it is aborted (and reported as such).
const JOIN_GRACE: Duration = Duration::from_secs(3);

/// The shape of a round.
#[derive(Debug, Clone)]
pub(crate) struct RoundPlan {
    /// Where each publisher sends; one entry per publisher.
    pub(crate) topics: Vec<Topics>,
    pub(crate) subscribers: Subscribers,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) payload: usize,
    /// Messages per second per publisher; `None`: unpaced.
    pub(crate) rate: Option<f64>,
    /// Messages in total, split evenly over the publishers.
    pub(crate) count: Option<u64>,
    pub(crate) window: u16,
    /// How long publishing lasts at most.
    pub(crate) duration: Duration,
    /// Draw the progress line on stderr under this label.
    pub(crate) progress: Option<String>,
}

/// Who subscribes, to what, and whose messages each one expects.
#[derive(Debug, Clone)]
pub(crate) enum Subscribers {
    /// `count` subscribers on `filter` (which must match every topic), each
    /// expecting every publisher's messages.
    Shared { count: u32, filter: String },
    /// One subscriber per publisher, on that publisher's fixed topic,
    /// expecting its messages only.
    Paired,
}

impl Subscribers {
    /// No subscriber at all.
    pub(crate) fn none() -> Self {
        Subscribers::Shared {
            count: 0,
            filter: String::new(),
        }
    }
}

impl RoundPlan {
    /// How many subscribing connections the round opens.
    pub(crate) fn subscriber_count(&self) -> u32 {
        match &self.subscribers {
            Subscribers::Shared { count, .. } => *count,
            Subscribers::Paired => u32::try_from(self.topics.len()).unwrap_or(u32::MAX),
        }
    }

    /// Subscriber `index`'s filter and the publishers it hears.
    fn subscription(&self, index: u32, publishers: u32) -> Result<(String, Range<u32>)> {
        match &self.subscribers {
            Subscribers::Shared { filter, .. } => Ok((filter.clone(), 0..publishers)),
            Subscribers::Paired => match self.topics.get(index as usize) {
                Some(Topics::Fixed(topic)) => Ok((topic.clone(), index..index + 1)),
                _ => bail!("paired subscriber {index} has no fixed topic to subscribe to"),
            },
        }
    }
}

/// The counts of a round, added over all connections.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) rejected: u64,
    pub(crate) unacked: u64,
    /// The smallest QoS 1/2 window a publisher used (the broker's Receive
    /// Maximum may lower `--window`); `None` at QoS 0.
    pub(crate) window: Option<u64>,
    /// From the start to the last PUBLISH written.
    pub(crate) publish_secs: f64,
    /// From the first PUBLISH written to the last acknowledgement read.
    pub(crate) ack_secs: f64,
    pub(crate) ack_latency: Percentiles,
    /// Messages every subscriber should have had, added up.
    pub(crate) expected: u64,
    pub(crate) received: u64,
    pub(crate) unique: u64,
    pub(crate) duplicates: u64,
    pub(crate) foreign: u64,
    /// From the start to the last message received.
    pub(crate) deliver_secs: f64,
    pub(crate) latency: Percentiles,
    pub(crate) errors: Vec<String>,
    pub(crate) timed_out: bool,
}

impl Outcome {
    /// Expected messages that no subscriber received.
    pub(crate) fn loss(&self) -> u64 {
        self.expected.saturating_sub(self.unique)
    }
}

/// Runs `plan` against `target`. Fails only if a connection cannot be set
/// up; failures during the round are counted in [`Outcome::errors`].
pub(crate) async fn run(target: &Target, plan: &RoundPlan) -> Result<Outcome> {
    let epoch = Instant::now();
    let publishers =
        u32::try_from(plan.topics.len()).map_err(|_| anyhow!("too many publishers"))?;
    let subscribers = plan.subscriber_count();
    let subscriptions = (0..subscribers)
        .map(|index| plan.subscription(index, publishers))
        .collect::<Result<Vec<_>>>()?;
    let (control, control_rx) = watch::channel(Control::default());
    let counters = Arc::new(Counters::default());

    // Subscribers first, each acknowledged, so nothing published is missed.
    let (ready_tx, mut ready) = mpsc::channel(64);
    let mut subs: Vec<JoinHandle<SubStats>> = Vec::new();
    for (index, (filter, from)) in (0..subscribers).zip(subscriptions.iter().cloned()) {
        let (target, ready_tx, control_rx) = (target.clone(), ready_tx.clone(), control_rx.clone());
        let (qos, counters) = (plan.qos, Arc::clone(&counters));
        subs.push(tokio::spawn(async move {
            let setup = async {
                let mut conn = Conn::connect(&target, &format!("sub{index}")).await?;
                conn.subscribe(&filter, qos).await?;
                Ok::<_, anyhow::Error>(conn)
            };
            match setup.await {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(())).await;
                    subscriber::run(conn, index, from, epoch, control_rx, &counters).await
                }
                Err(e) => {
                    let _ = ready_tx
                        .send(Err(e.context(format!("subscriber {index}"))))
                        .await;
                    SubStats::default()
                }
            }
        }));
    }
    let mut pubs: Vec<JoinHandle<PubStats>> = Vec::new();
    for (id, topics) in (0..publishers).zip(&plan.topics) {
        let (target, ready_tx, control_rx) = (target.clone(), ready_tx.clone(), control_rx.clone());
        let pub_plan = PubPlan {
            id,
            topics: topics.clone(),
            qos: plan.qos,
            retain: plan.retain,
            payload: plan.payload,
            count: plan.count.map(|c| share(c, publishers, id)),
            rate: plan.rate,
            window: plan.window,
            counters: Arc::clone(&counters),
        };
        pubs.push(tokio::spawn(async move {
            match Conn::connect(&target, &format!("pub{id}")).await {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(())).await;
                    publisher::run(conn, pub_plan, epoch, control_rx).await
                }
                Err(e) => {
                    let _ = ready_tx
                        .send(Err(e.context(format!("publisher {id}"))))
                        .await;
                    PubStats::default()
                }
            }
        }));
    }
    drop(ready_tx);
    if let Err(e) = all_ready(&mut ready, subscribers + publishers).await {
        drop(control);
        for task in &subs {
            task.abort();
        }
        for task in &pubs {
            task.abort();
        }
        return Err(e);
    }

    let go = Instant::now();
    let schedule = Schedule {
        go,
        end: go + plan.duration,
        deadline: go + plan.duration + GRACE,
    };
    let ticker = plan
        .progress
        .as_deref()
        .and_then(|label| Ticker::start(true, label, &counters));
    control.send_modify(|c| c.schedule = Some(schedule));
    let join_by = schedule.deadline + JOIN_GRACE;

    let mut outcome = Outcome::default();
    let mut ack_latency = Latency::default();
    let (mut first_send, mut last_send, mut last_ack) = (None::<Instant>, None, None);
    let mut sent = vec![0; pubs.len()];
    for (task, sent) in pubs.into_iter().zip(&mut sent) {
        let Some(stats) = join(task, join_by, &mut outcome.errors).await else {
            continue;
        };
        *sent = stats.sent;
        outcome.sent += stats.sent;
        outcome.acked += stats.acked;
        outcome.rejected += stats.rejected;
        outcome.unacked += stats.unacked;
        if plan.qos != QoS::AtMostOnce {
            outcome.window = Some(outcome.window.map_or(stats.window, |w| w.min(stats.window)));
        }
        outcome.timed_out |= stats.timed_out;
        outcome.errors.extend(stats.error);
        ack_latency.merge(&stats.ack_latency);
        first_send = earliest(first_send, stats.first_send);
        last_send = last_send.max(stats.last_send);
        last_ack = last_ack.max(stats.last_ack);
    }
    let sent: Arc<[u64]> = sent.into();
    control.send_modify(|c| c.sent = Some(Arc::clone(&sent)));

    let mut latency = Latency::default();
    let mut last_receive = None;
    for (task, (_, from)) in subs.into_iter().zip(&subscriptions) {
        // Counted even if the task failed: what it should have had is lost.
        outcome.expected += expected(&sent, from.clone());
        let Some(stats) = join(task, join_by, &mut outcome.errors).await else {
            continue;
        };
        outcome.received += stats.received;
        outcome.unique += stats.seqs.unique();
        outcome.duplicates += stats.seqs.duplicates();
        outcome.foreign += stats.foreign;
        outcome.timed_out |= stats.timed_out;
        outcome.errors.extend(stats.error);
        latency.merge(&stats.latency);
        last_receive = last_receive.max(stats.last_receive);
    }
    outcome.publish_secs = secs_between(Some(go), last_send);
    outcome.ack_secs = secs_between(first_send, last_ack);
    outcome.deliver_secs = secs_between(Some(go), last_receive);
    outcome.latency = latency.percentiles();
    outcome.ack_latency = ack_latency.percentiles();
    drop(ticker);
    Ok(outcome)
}

/// Messages a subscriber hearing publishers `from` should receive, given
/// what each publisher sent.
pub(crate) fn expected(sent: &[u64], from: Range<u32>) -> u64 {
    let range = from.start as usize..(from.end as usize).min(sent.len());
    sent.get(range).map_or(0, |s| s.iter().sum())
}

/// Publisher `id`'s part of `total` messages over `n` publishers.
fn share(total: u64, n: u32, id: u32) -> u64 {
    total / u64::from(n) + u64::from(u64::from(id) < total % u64::from(n))
}

/// Waits (bounded) until `n` connections reported ready; the first failure.
async fn all_ready(ready: &mut mpsc::Receiver<Result<()>>, n: u32) -> Result<()> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT + Duration::from_secs(1);
    for _ in 0..n {
        match timeout_at(deadline, ready.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => return Err(anyhow!("a connection task ended during set-up")),
            Err(_) => {
                return Err(anyhow!(
                    "connections not ready within {HANDSHAKE_TIMEOUT:?}"
                ));
            }
        }
    }
    Ok(())
}

/// The task's result, or `None` (and an error noted) if it failed or had to
/// be aborted after `by`.
async fn join<T>(mut task: JoinHandle<T>, by: Instant, errors: &mut Vec<String>) -> Option<T> {
    match timeout_at(by, &mut task).await {
        Ok(Ok(stats)) => Some(stats),
        Ok(Err(e)) => {
            errors.push(format!("a connection task failed: {e}"));
            None
        }
        Err(_) => {
            task.abort();
            errors
                .push("a connection task did not stop by the deadline; its counts are lost".into());
            None
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn secs_between(from: Option<Instant>, to: Option<Instant>) -> f64 {
    match (from, to) {
        (Some(from), Some(to)) => to.saturating_duration_since(from).as_secs_f64(),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_shared_without_remainder_lost() {
        let parts: Vec<u64> = (0..4).map(|id| share(10, 4, id)).collect();
        assert_eq!(parts, [3, 3, 2, 2]);
        assert_eq!((0..3).map(|id| share(2, 3, id)).sum::<u64>(), 2);
    }

    #[test]
    fn a_subscriber_expects_what_its_publishers_sent() {
        let sent = [5, 7, 11];
        assert_eq!(expected(&sent, 0..3), 23);
        assert_eq!(expected(&sent, 1..2), 7);
        assert_eq!(expected(&sent, 3..4), 0);
    }
}
