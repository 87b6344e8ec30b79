//! The workloads of `mqdb bench`: their options, the round each one runs
//! (see [`pubsub`](super::pubsub)) and the figures each one reports. The
//! connection workload is in [`conns`](super::conns), the retained read in
//! [`retained_read`](super::retained_read).

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use mqdb_codec::QoS;

use super::Common;
use super::client::qos;
use super::conns::{self, ConnsArgs};
use super::publisher::Topics;
use super::pubsub::{self, RoundPlan, Subscribers};
use super::report::{Report, group, rate};
use super::retained_read::{self, RetainedReadArgs};

/// Records written by `retained` and `retained-read` unless `--count` says
/// otherwise.
pub(crate) const RETAINED_COUNT: u64 = 50_000;

/// What to measure.
#[derive(Debug, Subcommand)]
pub(crate) enum Workload {
    /// P publishers over T topics (bench/fanin/<t>) -> S subscribers on
    /// bench/fanin/#, publishing as fast as the broker accepts
    Fanin(FaninArgs),
    /// One publisher at a fixed rate -> N subscribers on bench/fanout
    Fanout(FanoutArgs),
    /// One publisher at a fixed rate -> one subscriber on bench/latency
    Latency(LatencyArgs),
    /// N publisher -> subscriber pairs, pair i on <prefix>/pair/<i>: delivery
    /// rate, loss, duplicates and end-to-end latency
    Pairs(PairsArgs),
    /// N retained publishes (QoS 1 by default) to distinct topics
    /// <prefix>/<i>, W in flight: record writes per second
    Retained(RetainedArgs),
    /// Stores N retained messages on <prefix>/<i> (unless --skip-load), then
    /// times one new subscriber on <prefix>/# receiving them all: records
    /// read per second, missing and duplicate topics
    RetainedRead(RetainedReadArgs),
    /// Open N connections (transport handshake + CONNECT/CONNACK) at up to
    /// R per second, hold them, then DISCONNECT all: connections per
    /// second and set-up latency
    Conns(ConnsArgs),
}

/// `mqdb bench fanin`.
#[derive(Debug, Args)]
pub(crate) struct FaninArgs {
    #[command(flatten)]
    common: Common,
    /// Publishing connections
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    publishers: u32,
    /// Topics; publisher p publishes to bench/fanin/<p mod T> [default: one
    /// per publisher]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    topics: Option<u32>,
    /// Subscribing connections, each on bench/fanin/#
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    subscribers: u32,
    /// Messages per second per publisher; 0: as fast as accepted [default:
    /// 0]
    #[arg(long, value_name = "MSGS")]
    rate: Option<f64>,
}

/// `mqdb bench pairs`.
#[derive(Debug, Args)]
pub(crate) struct PairsArgs {
    #[command(flatten)]
    common: Common,
    /// Publisher -> subscriber pairs (two connections each)
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pairs: u32,
    /// Messages per second per publisher; 0: as fast as the window (QoS 1/2)
    /// and the socket allow
    #[arg(long, value_name = "MSGS", default_value_t = 0.0)]
    rate: f64,
    /// Topic prefix: pair i publishes and subscribes on <prefix>/pair/<i>
    #[arg(long, default_value = "bench")]
    prefix: String,
}

/// `mqdb bench fanout`.
#[derive(Debug, Args)]
pub(crate) struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Subscribing connections, all on bench/fanout
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    subscribers: u32,
    /// Messages per second published
    #[arg(long, value_name = "MSGS", default_value_t = 1000.0)]
    rate: f64,
}

/// `mqdb bench latency`.
#[derive(Debug, Args)]
pub(crate) struct LatencyArgs {
    #[command(flatten)]
    common: Common,
    /// Messages per second published
    #[arg(long, value_name = "MSGS", default_value_t = 10_000.0)]
    rate: f64,
}

/// `mqdb bench retained`.
#[derive(Debug, Args)]
pub(crate) struct RetainedArgs {
    #[command(flatten)]
    common: Common,
    /// Topic prefix: record i is <prefix>/<i> (an mqdb table when the schema
    /// has `type <prefix> @table @export`)
    #[arg(long, default_value = "Bench")]
    prefix: String,
}

/// Runs `workload`; its report and whether only JSON is wanted.
pub(crate) async fn run(workload: Workload) -> Result<(Report, bool)> {
    match workload {
        Workload::Fanin(a) => {
            let topics = a.topics.unwrap_or(a.publishers);
            let plan = RoundPlan {
                topics: (0..a.publishers)
                    .map(|p| Topics::Fixed(format!("bench/fanin/{}", p % topics)))
                    .collect(),
                subscribers: Subscribers::Shared {
                    count: a.subscribers,
                    filter: "bench/fanin/#".into(),
                },
                rate: unpaced_if_zero(a.rate.unwrap_or(0.0))?,
                ..round("fanin", &a.common, QoS::AtMostOnce)?
            };
            let extra = format!("{} topics", topics);
            pubsub_report("fanin", &a.common, &plan, &extra).await
        }
        Workload::Fanout(a) => {
            let plan = RoundPlan {
                topics: vec![Topics::Fixed("bench/fanout".into())],
                subscribers: Subscribers::Shared {
                    count: a.subscribers,
                    filter: "bench/fanout".into(),
                },
                rate: Some(check_rate(a.rate)?),
                ..round("fanout", &a.common, QoS::AtMostOnce)?
            };
            pubsub_report("fanout", &a.common, &plan, "1 topic").await
        }
        Workload::Latency(a) => {
            let plan = RoundPlan {
                topics: vec![Topics::Fixed("bench/latency".into())],
                subscribers: Subscribers::Shared {
                    count: 1,
                    filter: "bench/latency".into(),
                },
                rate: Some(check_rate(a.rate)?),
                ..round("latency", &a.common, QoS::AtMostOnce)?
            };
            pubsub_report("latency", &a.common, &plan, "1 topic").await
        }
        Workload::Pairs(a) => {
            let plan = RoundPlan {
                topics: (0..a.pairs)
                    .map(|i| Topics::Fixed(format!("{}/pair/{i}", a.prefix)))
                    .collect(),
                subscribers: Subscribers::Paired,
                rate: unpaced_if_zero(a.rate)?,
                ..round("pairs", &a.common, QoS::AtMostOnce)?
            };
            let extra = format!("pair i on {}/pair/<i>", a.prefix);
            let (mut report, json) = pubsub_report("pairs", &a.common, &plan, &extra).await?;
            report
                .field("pairs", a.pairs)
                .field("prefix", a.prefix.as_str());
            Ok((report, json))
        }
        Workload::Retained(a) => retained(a).await,
        Workload::RetainedRead(a) => retained_read::run(a).await,
        Workload::Conns(a) => conns::run(a).await,
    }
}

/// A round of `workload` with the common options; topics and subscribers
/// still to fill.
pub(crate) fn round(workload: &str, common: &Common, default_qos: QoS) -> Result<RoundPlan> {
    Ok(RoundPlan {
        topics: Vec::new(),
        subscribers: Subscribers::none(),
        qos: common.qos.map_or(default_qos, qos),
        retain: false,
        payload: common.payload(),
        rate: None,
        count: common.count,
        window: common.window,
        duration: common.duration()?,
        progress: common.base.progress().then(|| workload.to_owned()),
    })
}

fn check_rate(rate: f64) -> Result<f64> {
    if !(rate.is_finite() && rate > 0.0) {
        bail!("--rate must be a positive number of messages per second, got {rate}");
    }
    Ok(rate)
}

/// A `--rate` where 0 means unpaced (`None`).
fn unpaced_if_zero(rate: f64) -> Result<Option<f64>> {
    if rate == 0.0 {
        return Ok(None);
    }
    if !(rate.is_finite() && rate > 0.0) {
        bail!("--rate must be 0 (unpaced) or a positive number of messages per second, got {rate}");
    }
    Ok(Some(rate))
}

/// The report's head: what ran against what.
pub(crate) fn header(workload: &str, common: &Common, plan: &RoundPlan, extra: &str) -> Report {
    let mut report = Report::default();
    let publishers = plan.topics.len() as u64;
    report
        .field("workload", workload)
        .field("broker", common.base.broker().as_str())
        .field("transport", common.base.transport_name())
        .field("protocol", u32::from(common.base.protocol))
        .field("qos", plan.qos as u32)
        .field("payload", plan.payload as u64)
        .field("publishers", publishers)
        .field("subscribers", plan.subscriber_count())
        .field("rate", plan.rate)
        .field("window", u32::from(plan.window))
        .field("duration_s", plan.duration.as_secs_f64())
        .field("count", plan.count);
    let pace = plan.rate.map_or("unpaced".to_owned(), |r| {
        format!("{} msg/s each", group(r as u64))
    });
    report.line(format!(
        "{workload}: {publishers} publisher(s) -> {} subscriber(s), {extra}, QoS {}, {} B, \
         MQTT {} over {}, {pace}, window {}, at {}",
        plan.subscriber_count(),
        plan.qos as u8,
        plan.payload,
        common.base.mqtt_version(),
        common.base.transport_name(),
        plan.window,
        common.base.broker(),
    ));
    report
}

async fn pubsub_report(
    workload: &str,
    common: &Common,
    plan: &RoundPlan,
    extra: &str,
) -> Result<(Report, bool)> {
    let mut report = header(workload, common, plan, extra);
    let outcome = pubsub::run(&common.target()?, plan).await?;
    report.outcome(&outcome, true);
    Ok((report, common.base.json))
}

async fn retained(a: RetainedArgs) -> Result<(Report, bool)> {
    let mut common = a.common;
    if common.qos == Some(0) {
        bail!("retained measures acknowledged writes: use --qos 1 or 2");
    }
    let count = *common.count.get_or_insert(RETAINED_COUNT);
    let plan = RoundPlan {
        topics: vec![Topics::Numbered(a.prefix.clone())],
        retain: true,
        ..round("retained", &common, QoS::AtLeastOnce)?
    };
    let mut report = header(
        "retained",
        &common,
        &plan,
        &format!("topics {}/<i>", a.prefix),
    );
    let outcome = pubsub::run(&common.target()?, &plan).await?;
    let per_s = rate(outcome.acked, outcome.ack_secs);
    report
        .field("prefix", a.prefix.as_str())
        .field("records", count)
        .field("ack_s", (outcome.ack_secs * 1000.0).round() / 1000.0)
        .field("records_per_s", (per_s * 10.0).round() / 10.0);
    report.line(format!(
        "  records    {} of {} acknowledged in {:.3} s (first send to last ack) = {} records/s",
        group(outcome.acked),
        group(count),
        outcome.ack_secs,
        group(per_s as u64),
    ));
    report.outcome(&outcome, false);
    Ok((report, common.base.json))
}
