//! `mqdb bench retained-read`: how fast a broker hands the retained
//! messages it stores to one new subscriber.
//!
//! Phase 1 (the load, skipped with `--skip-load`) is the `retained`
//! workload: N retained QoS 1 messages to the distinct topics `<prefix>/<i>`
//! with a window in flight, every PUBACK awaited. Phase 2 opens a fresh
//! connection, subscribes to `<prefix>/#` and times from the SUBSCRIBE
//! written to the last of the N messages read, acknowledging QoS 1/2 as
//! they arrive (messages may come before the SUBACK: MQTT-3.8.4 allows it,
//! and they count). Each topic index seen is recorded, so missing records
//! (N minus the distinct indices) and duplicates are exact counts; topics
//! under the prefix that are not one of the N are counted as foreign.
//!
//! The prefix is new on every run unless given, so reruns never read each
//! other's records; `--skip-load` reads what an earlier run left under a
//! given prefix.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use mqdb_codec::{Packet, PubAck, PubComp, PubRec, QoS, TopicFilter};
use tokio::time::{Instant, sleep_until, timeout_at};

use super::Common;
use super::client::{Conn, KEEP_ALIVE, check_suback, qos};
use super::latency::SeqTracker;
use super::progress::{Counters, Ticker};
use super::publisher::Topics;
use super::pubsub::{self, RoundPlan};
use super::report::{Report, group, rate, round1, round3};
use super::workloads::{RETAINED_COUNT, round};

/// `mqdb bench retained-read`.
#[derive(Debug, Args)]
pub(crate) struct RetainedReadArgs {
    #[command(flatten)]
    common: Common,
    /// Topic prefix: record i is <prefix>/<i>, read back through
    /// <prefix>/#. On mqdb either a table the schema exports (`type Bench
    /// @table @export` with --prefix Bench: the records are rows) or free
    /// topics (plain retained messages) [default: bench/<pid>-<unix ms>,
    /// new on every run]
    #[arg(long)]
    prefix: Option<String>,
    /// Publish nothing: read the --count records that an earlier run
    /// stored under --prefix, which must then be given
    #[arg(long, requires = "prefix")]
    skip_load: bool,
}

/// What the read phase does.
#[derive(Debug, Clone)]
struct ReadPlan {
    /// `<prefix>/#`.
    filter: String,
    prefix: String,
    count: u32,
    qos: QoS,
    /// How long the read may take, from the SUBSCRIBE.
    timeout: Duration,
}

/// What the read phase counted.
#[derive(Debug, Default)]
struct ReadStats {
    /// Messages on one of the N topics, duplicates included.
    received: u64,
    /// The topic indices seen.
    seen: SeqTracker,
    /// Messages on other topics under the prefix.
    foreign: u64,
    /// From the SUBSCRIBE written to the first message read.
    first: Option<Duration>,
    /// From the SUBSCRIBE written to the last new record read.
    last: Option<Duration>,
    timed_out: bool,
    error: Option<String>,
}

/// Runs the workload; its report and whether only JSON is wanted.
pub(crate) async fn run(args: RetainedReadArgs) -> Result<(Report, bool)> {
    let mut common = args.common;
    let count = *common.count.get_or_insert(RETAINED_COUNT);
    let count = match u32::try_from(count) {
        Ok(n) if n > 0 => n,
        _ => bail!("--count must be between 1 and {}, got {count}", u32::MAX),
    };
    let prefix = args.prefix.unwrap_or_else(default_prefix);
    let filter = format!("{prefix}/#");
    TopicFilter::new(filter.clone())
        .with_context(|| format!("--prefix {prefix:?} gives no valid filter {filter:?}"))?;
    let plan = ReadPlan {
        filter,
        prefix,
        count,
        qos: common.qos.map_or(QoS::AtLeastOnce, qos),
        timeout: common.duration()?,
    };
    let target = common.target()?;
    let mut report = header(&common, &plan, args.skip_load);
    let mut errors = Vec::new();
    let mut timed_out = false;

    if args.skip_load {
        report
            .field("loaded", None::<u64>)
            .field("load_s", None::<f64>)
            .field("load_per_s", None::<f64>);
        report.line("  loaded     skipped (--skip-load): reading what is stored");
    } else {
        let load = RoundPlan {
            topics: vec![Topics::Numbered(plan.prefix.clone())],
            retain: true,
            qos: QoS::AtLeastOnce,
            ..round("retained-read: load", &common, QoS::AtLeastOnce)?
        };
        let outcome = pubsub::run(&target, &load).await?;
        let per_s = rate(outcome.acked, outcome.ack_secs);
        report
            .field("loaded", outcome.acked)
            .field("load_rejected", outcome.rejected)
            .field("load_s", round3(outcome.ack_secs))
            .field("load_per_s", round1(per_s));
        report.line(format!(
            "  loaded     {} of {} acknowledged in {:.3} s = {} records/s  (rejected {}, unacked {})",
            group(outcome.acked),
            group(count.into()),
            outcome.ack_secs,
            group(per_s as u64),
            group(outcome.rejected),
            group(outcome.unacked),
        ));
        timed_out |= outcome.timed_out;
        errors.extend(outcome.errors);
        if outcome.acked < u64::from(count) {
            report.fatal = Some(format!(
                "the load stored only {} of {count} retained messages; nothing was read",
                outcome.acked
            ));
            finish(&mut report, timed_out, &errors);
            return Ok((report, common.base.json));
        }
    }

    let counters = std::sync::Arc::new(Counters::default());
    let ticker = Ticker::start(common.base.progress(), "retained-read: read", &counters);
    let mut conn = Conn::connect(&target, "reader")
        .await
        .context("the reading subscriber")?;
    let mut stats = ReadStats::default();
    match read(&mut conn, &plan, &mut stats, &counters).await {
        Ok(()) => conn.disconnect().await,
        Err(e) => stats.error = Some(format!("reader: {e:#}")),
    }
    drop(ticker);
    read_figures(&mut report, &plan, &stats);
    timed_out |= stats.timed_out;
    errors.extend(stats.error);
    finish(&mut report, timed_out, &errors);
    Ok((report, common.base.json))
}

/// `bench/<pid>-<milliseconds since 1970>`: new on every run.
fn default_prefix() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("bench/{}-{ms}", std::process::id())
}

fn header(common: &Common, plan: &ReadPlan, skip_load: bool) -> Report {
    let mut report = Report::default();
    report
        .field("workload", "retained-read")
        .field("broker", common.base.broker().as_str())
        .field("transport", common.base.transport_name())
        .field("protocol", u32::from(common.base.protocol))
        .field("qos", plan.qos as u32)
        .field("payload", common.payload)
        .field("prefix", plan.prefix.as_str())
        .field("count", plan.count)
        .field("window", u32::from(common.window))
        .field("duration_s", plan.timeout.as_secs_f64())
        .field("skip_load", skip_load);
    let load = if skip_load {
        "already stored".to_owned()
    } else {
        format!(
            "stored at QoS 1 with {} in flight, {} B",
            common.window, common.payload
        )
    };
    report.line(format!(
        "retained-read: {} retained messages on {}/<i> ({load}) -> 1 new subscriber on {}, \
         QoS {}, MQTT {} over {}, at {}",
        group(plan.count.into()),
        plan.prefix,
        plan.filter,
        plan.qos as u8,
        common.base.mqtt_version(),
        common.base.transport_name(),
        common.base.broker(),
    ));
    report
}

/// The read phase's fields and lines.
fn read_figures(report: &mut Report, plan: &ReadPlan, stats: &ReadStats) {
    let distinct = stats.seen.unique();
    let missing = u64::from(plan.count).saturating_sub(distinct);
    let read_secs = stats.last.map_or(0.0, |d| d.as_secs_f64());
    let per_s = rate(distinct, read_secs);
    let first_ms = stats.first.map(|d| round3(d.as_secs_f64() * 1000.0));
    report
        .field("received", stats.received)
        .field("delivered", distinct)
        .field("missing", missing)
        .field("loss", missing)
        .field("duplicates", stats.seen.duplicates())
        .field("foreign", stats.foreign)
        .field("first_message_ms", first_ms)
        .field("read_s", round3(read_secs))
        .field("records_per_s", round1(per_s));
    let first = first_ms.map_or("none".to_owned(), |ms| format!("{ms:.3} ms"));
    report.line(format!(
        "  read       {} of {} in {read_secs:.3} s (SUBSCRIBE to last record) = {} records/s, \
         first after {first}",
        group(distinct),
        group(plan.count.into()),
        group(per_s as u64),
    ));
    report.line(format!(
        "  missing    {}  duplicates {}  foreign {}",
        group(missing),
        group(stats.seen.duplicates()),
        group(stats.foreign),
    ));
}

/// The fields and lines both phases share: time-outs and errors.
fn finish(report: &mut Report, timed_out: bool, errors: &[String]) {
    report
        .field("timed_out", timed_out)
        .field("errors", errors.len() as u64)
        .field("first_error", errors.first().map(String::as_str));
    if timed_out {
        report.line("  WARNING: the deadline passed before the run finished; counts are partial");
    }
    for e in errors {
        report.line(format!("  ERROR: {e}"));
    }
    report.errors += errors.len();
}

/// Subscribes and reads until all `plan.count` records arrived or the
/// time-out.
async fn read(
    conn: &mut Conn,
    plan: &ReadPlan,
    stats: &mut ReadStats,
    counters: &Counters,
) -> Result<()> {
    conn.queue_subscribe(&plan.filter, plan.qos)?;
    let subscribed = Instant::now();
    let deadline = subscribed + plan.timeout;
    let mut flushed = timeout_at(deadline, conn.flush()).await;
    let start = Instant::now();
    loop {
        match flushed {
            Ok(written) => written?,
            Err(_) => {
                stats.timed_out = true;
                return Ok(());
            }
        }
        if stats.seen.unique() >= u64::from(plan.count) {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            stats.timed_out = true;
            return Ok(());
        }
        let ping_at = conn.last_write + KEEP_ALIVE / 2;
        tokio::select! {
            read = conn.fill() => {
                read?;
                let at = start.elapsed();
                let before = (stats.received, stats.seen.unique());
                take_messages(conn, plan, stats)?;
                counters.received(stats.received - before.0);
                if stats.received > before.0 {
                    stats.first.get_or_insert(at);
                }
                if stats.seen.unique() > before.1 {
                    stats.last = Some(at);
                }
            }
            () = sleep_until(deadline.min(ping_at)) => {
                if Instant::now() >= ping_at {
                    conn.queue(&Packet::PingReq)?;
                }
            }
        }
        // Acknowledgements and pings, bounded like every other wait.
        flushed = timeout_at(deadline, conn.flush()).await;
    }
}

/// Counts every message read so far and queues its acknowledgement.
fn take_messages(conn: &mut Conn, plan: &ReadPlan, stats: &mut ReadStats) -> Result<()> {
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
                match index(publish.topic.as_str(), &plan.prefix, plan.count) {
                    Some(i) => {
                        stats.received += 1;
                        stats.seen.insert(0, i);
                    }
                    None => stats.foreign += 1,
                }
            }
            Packet::PubRel(rel) => conn.queue(&Packet::PubComp(PubComp::new(rel.packet_id)))?,
            Packet::SubAck(ack) => check_suback(&ack, &plan.filter)?,
            Packet::Disconnect(d) => bail!("the broker sent DISCONNECT {:?}", d.reason_code),
            _ => {}
        }
    }
    Ok(())
}

/// `i` if `topic` is `<prefix>/<i>` with `i < count` written in canonical
/// decimal (no sign, no leading zero), so that every topic has one index.
fn index(topic: &str, prefix: &str, count: u32) -> Option<u32> {
    let digits = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    let i: u32 = digits.parse().ok().filter(|_| canonical)?;
    (i < count).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_indices_below_the_count_are_records() {
        assert_eq!(index("bench/1-2/0", "bench/1-2", 10), Some(0));
        assert_eq!(index("bench/1-2/9", "bench/1-2", 10), Some(9));
        assert_eq!(index("bench/1-2/10", "bench/1-2", 10), None);
        assert_eq!(index("bench/1-2/07", "bench/1-2", 10), None);
        assert_eq!(index("bench/1-2/+7", "bench/1-2", 10), None);
        assert_eq!(index("bench/1-2/", "bench/1-2", 10), None);
        assert_eq!(index("bench/1-2/3/x", "bench/1-2", 10), None);
        assert_eq!(index("bench/1-23/3", "bench/1-2", 10), None);
        assert_eq!(index("Bench/42", "Bench", 50_000), Some(42));
    }

    #[test]
    fn default_prefixes_are_valid_and_differ_between_runs() {
        let a = default_prefix();
        assert!(a.starts_with("bench/"), "{a}");
        assert!(TopicFilter::new(format!("{a}/#")).is_ok());
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(a, default_prefix());
    }
}
