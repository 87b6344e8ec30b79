//! `mqdb bench conns`: the cost of connecting. Opens N connections, at up
//! to R new ones per second and at most C attempts in progress, each doing
//! every handshake of the transport (TCP, TLS, WebSocket) and then CONNECT
//! / CONNACK with the given credentials; holds them all open for a while
//! (sending PINGREQ only as the keep-alive requires); then sends DISCONNECT
//! on every one.
//!
//! Reported: connections established and failed (with the first error),
//! set-up latency (start of the TCP connect to CONNACK), its transport part
//! (TCP + TLS + WebSocket handshakes) and its MQTT part (CONNECT written to
//! CONNACK read), each as HDR percentiles; connections per second over the
//! connect phase (first attempt to last attempt finished); connections the
//! broker dropped while they were held.
//!
//! Running out of file descriptors (EMFILE) stops the run: no more
//! attempts, the report so far, and an error that says so. Limits are
//! never raised here.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Error, Result, anyhow, bail};
use clap::Args;
use mqdb_codec::Packet;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

use super::BaseArgs;
use super::client::{Conn, HANDSHAKE_TIMEOUT, KEEP_ALIVE, Target};
use super::latency::Latency;
use super::report::{Report, group, latency_line, rate, round1, round3};

/// How long every held connection may take to send DISCONNECT and close.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);

/// `EMFILE` and `ENFILE` (the same numbers on Linux and macOS): out of file
/// descriptors, for the process or the system.
const OUT_OF_FDS: [i32; 2] = [24, 23];

/// `mqdb bench conns`.
#[derive(Debug, Args)]
pub(crate) struct ConnsArgs {
    #[command(flatten)]
    base: BaseArgs,
    /// Connections to open (each needs a file descriptor: see `ulimit -n`)
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    connections: u32,
    /// New connections per second at most; 0: as fast as they complete
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    rate: f64,
    /// Connection attempts in progress at once
    #[arg(long, value_name = "C", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    concurrency: u32,
    /// Seconds to hold every connection open once all are set up, before
    /// DISCONNECT (PINGREQ is sent only as the 60 s keep-alive requires)
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    hold: f64,
}

/// One connection attempt, as the connection task reports it.
struct Attempt {
    index: u32,
    finished: Instant,
    result: Result<Setup>,
}

/// How long a successful set-up took.
#[derive(Debug, Clone, Copy)]
struct Setup {
    /// Start of the TCP connect to CONNACK read.
    total: Duration,
    /// TCP connect and the transport's handshakes.
    opened: Duration,
    /// CONNECT written to CONNACK read.
    connack: Duration,
}

/// What the connect phase counted.
#[derive(Debug, Default)]
struct ConnectPhase {
    established: u64,
    failed: u64,
    first_error: Option<String>,
    /// Set when an attempt ran out of file descriptors (the run stops).
    out_of_fds: Option<String>,
    total: Latency,
    opened: Latency,
    connack: Latency,
    secs: f64,
}

/// What the hold and disconnect phases counted.
#[derive(Debug, Default)]
struct ClosePhase {
    /// Connections that ended before the release (the broker closed them,
    /// sent DISCONNECT, or a write failed).
    dropped: u64,
    /// Connection tasks that did not finish closing in time (aborted).
    stuck: u64,
    first_error: Option<String>,
    held_secs: f64,
    disconnect_secs: f64,
}

/// Runs the workload; its report and whether only JSON is wanted.
pub(crate) async fn run(args: ConnsArgs) -> Result<(Report, bool)> {
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!(
            "--rate must be 0 (unpaced) or a positive number of connections per second, got {}",
            args.rate
        );
    }
    if !(args.hold.is_finite() && (0.0..=86_400.0).contains(&args.hold)) {
        bail!(
            "--hold must be between 0 and 86400 seconds, got {}",
            args.hold
        );
    }
    let target = args.base.target(true)?;
    let mut report = header(&args);

    let (release_tx, release) = watch::channel(false);
    let stop = Arc::new(AtomicBool::new(false));
    let (results_tx, mut results) = mpsc::unbounded_channel();
    let started = Instant::now();
    let dispatcher = tokio::spawn(dispatch(
        target,
        args.connections,
        args.rate,
        args.concurrency,
        results_tx,
        release,
        stop.clone(),
    ));

    let mut connect = ConnectPhase::default();
    let mut last_finished = started;
    while let Some(attempt) = results.recv().await {
        let Attempt {
            index,
            finished,
            result,
        } = attempt;
        last_finished = last_finished.max(finished);
        match result {
            Ok(setup) => {
                connect.established += 1;
                connect.total.record_ns(nanos(setup.total));
                connect.opened.record_ns(nanos(setup.opened));
                connect.connack.record_ns(nanos(setup.connack));
            }
            Err(e) => {
                connect.failed += 1;
                let text = format!("connection {index}: {e:#}");
                if connect.out_of_fds.is_none() && is_out_of_fds(&e) {
                    stop.store(true, Ordering::Relaxed);
                    connect.out_of_fds = Some(text.clone());
                }
                connect.first_error.get_or_insert(text);
            }
        }
    }
    connect.secs = last_finished.duration_since(started).as_secs_f64();
    let tasks = dispatcher
        .await
        .map_err(|e| anyhow!("the connection dispatcher failed: {e}"))?;

    let hold = if connect.out_of_fds.is_some() {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(args.hold)
    };
    let close = hold_then_close(tasks, hold, release_tx).await;
    finish(&mut report, &args, &connect, &close);
    Ok((report, args.base.json))
}

/// Starts connection `i` at `start + i / rate` (or at once when unpaced)
/// and when fewer than `concurrency` attempts are in progress, until every
/// connection is started or `stop` is set. The connection tasks.
async fn dispatch(
    target: Target,
    connections: u32,
    rate: f64,
    concurrency: u32,
    results: mpsc::UnboundedSender<Attempt>,
    release: watch::Receiver<bool>,
    stop: Arc<AtomicBool>,
) -> Vec<JoinHandle<Option<String>>> {
    let permits = Arc::new(Semaphore::new(
        usize::try_from(concurrency).unwrap_or(usize::MAX),
    ));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(usize::try_from(connections).unwrap_or(0));
    for index in 0..connections {
        if rate > 0.0 {
            sleep_until(start + Duration::from_secs_f64(f64::from(index) / rate)).await;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tasks.push(tokio::spawn(connection(
            index,
            target.clone(),
            permit,
            results.clone(),
            release.clone(),
        )));
    }
    tasks
}

/// One connection: set up (reported on `results`), held until `release`,
/// closed. Why it ended before the release, if it did.
async fn connection(
    index: u32,
    target: Target,
    permit: OwnedSemaphorePermit,
    results: mpsc::UnboundedSender<Attempt>,
    release: watch::Receiver<bool>,
) -> Option<String> {
    let start = Instant::now();
    let result = Conn::connect(&target, &format!("c{index}")).await;
    let finished = Instant::now();
    drop(permit);
    let (conn, result) = match result {
        Ok(conn) => {
            let setup = Setup {
                total: finished.duration_since(start),
                opened: conn.opened_in,
                connack: conn.connack_in,
            };
            (Some(conn), Ok(setup))
        }
        Err(e) => (None, Err(e)),
    };
    let _ = results.send(Attempt {
        index,
        finished,
        result,
    });
    // The coordinator's count ends when every sender is gone.
    drop(results);
    let conn = conn?;
    hold(conn, release)
        .await
        .err()
        .map(|e| format!("connection {index} dropped while held: {e:#}"))
}

/// Keeps `conn` open until `release` (PINGREQ when the keep-alive needs
/// one; PINGRESP read and ignored), then sends DISCONNECT and closes.
async fn hold(mut conn: Conn, mut release: watch::Receiver<bool>) -> Result<()> {
    loop {
        let ping_at = conn.last_write + KEEP_ALIVE / 2;
        tokio::select! {
            // A closed channel (the run is over) releases too. (The guard
            // `wait_for` returns is dropped at once: it is not `Send`.)
            () = async { drop(release.wait_for(|released| *released).await) } => break,
            read = conn.fill() => {
                read?;
                while let Some(packet) = conn.decoded()? {
                    if let Packet::Disconnect(d) = packet {
                        bail!("the broker sent DISCONNECT {:?}", d.reason_code);
                    }
                }
            }
            () = sleep_until(ping_at) => {
                conn.queue(&Packet::PingReq)?;
                timeout(HANDSHAKE_TIMEOUT, conn.flush())
                    .await
                    .map_err(|_| anyhow!("PINGREQ not written within {HANDSHAKE_TIMEOUT:?}"))??;
            }
        }
    }
    conn.disconnect().await;
    Ok(())
}

/// Holds every connection for `hold`, releases them and waits (bounded)
/// until each has closed.
async fn hold_then_close(
    tasks: Vec<JoinHandle<Option<String>>>,
    hold: Duration,
    release: watch::Sender<bool>,
) -> ClosePhase {
    let mut close = ClosePhase::default();
    let held = Instant::now();
    tokio::time::sleep(hold).await;
    let released = Instant::now();
    close.held_secs = released.duration_since(held).as_secs_f64();
    let _ = release.send(true);
    let join_by = released + DISCONNECT_GRACE;
    for mut task in tasks {
        let error = match timeout_at(join_by, &mut task).await {
            Ok(Ok(None)) => continue,
            Ok(Ok(Some(error))) => error,
            Ok(Err(e)) => format!("a connection task failed: {e}"),
            Err(_) => {
                task.abort();
                close.stuck += 1;
                continue;
            }
        };
        close.dropped += 1;
        close.first_error.get_or_insert(error);
    }
    close.disconnect_secs = released.elapsed().as_secs_f64();
    close
}

/// The report's head: what ran against what.
fn header(args: &ConnsArgs) -> Report {
    let mut report = Report::default();
    let base = &args.base;
    report
        .field("workload", "conns")
        .field("broker", base.broker().as_str())
        .field("transport", base.transport_name())
        .field("protocol", u32::from(base.protocol))
        .field("authenticated", base.username.is_some())
        .field("connections", args.connections)
        .field("concurrency", args.concurrency)
        .field("rate", (args.rate > 0.0).then_some(args.rate))
        .field("hold_s", args.hold);
    let pace = if args.rate > 0.0 {
        format!("at most {} conn/s", group(args.rate as u64))
    } else {
        "unpaced".to_owned()
    };
    let user = base
        .username
        .as_deref()
        .map_or(String::new(), |u| format!(" as {u:?}"));
    report.line(format!(
        "conns: {} connection(s){user} over {}, MQTT {}, {pace}, concurrency {}, hold {} s, at {}",
        group(args.connections.into()),
        base.transport_name(),
        base.mqtt_version(),
        args.concurrency,
        args.hold,
        base.broker(),
    ));
    report
}

/// The figures of both phases.
fn finish(report: &mut Report, args: &ConnsArgs, connect: &ConnectPhase, close: &ClosePhase) {
    let attempted = connect.established + connect.failed;
    let per_s = rate(connect.established, connect.secs);
    report
        .field("established", connect.established)
        .field("failed", connect.failed)
        .field(
            "not_attempted",
            u64::from(args.connections).saturating_sub(attempted),
        )
        .field("connect_s", round3(connect.secs))
        .field("connects_per_s", round1(per_s));
    report.line(format!(
        "  connected  {} of {} in {:.3} s = {} conn/s  (failed {}, not attempted {})",
        group(connect.established),
        group(args.connections.into()),
        connect.secs,
        group(per_s as u64),
        group(connect.failed),
        group(u64::from(args.connections).saturating_sub(attempted)),
    ));
    let latencies = [
        (
            "set-up",
            "(TCP connect to CONNACK)",
            &connect.total,
            [
                "connect_p50_us",
                "connect_p99_us",
                "connect_p999_us",
                "connect_max_us",
                "connect_mean_us",
            ],
        ),
        (
            "transport",
            "(TCP connect + TLS + WebSocket handshakes)",
            &connect.opened,
            [
                "handshake_p50_us",
                "handshake_p99_us",
                "handshake_p999_us",
                "handshake_max_us",
                "handshake_mean_us",
            ],
        ),
        (
            "connack",
            "(CONNECT to CONNACK)",
            &connect.connack,
            [
                "connack_p50_us",
                "connack_p99_us",
                "connack_p999_us",
                "connack_max_us",
                "connack_mean_us",
            ],
        ),
    ];
    for (label, what, latency, keys) in latencies {
        let p = latency.percentiles();
        report.percentile_fields(keys, &p);
        report.line(format!("{}  {what}", latency_line(label, &p)));
    }
    let held = connect.established - close.dropped.min(connect.established);
    report
        .field("dropped", close.dropped)
        .field("held_s", round3(close.held_secs))
        .field("disconnect_s", round3(close.disconnect_secs));
    report.line(format!(
        "  held       {} for {:.2} s, dropped {}; all closed in {:.3} s",
        group(held),
        close.held_secs,
        group(close.dropped),
        close.disconnect_secs,
    ));
    let errors = connect.failed + close.dropped + close.stuck;
    let first_error = connect
        .first_error
        .as_deref()
        .or(close.first_error.as_deref());
    report
        .field("errors", errors)
        .field("first_error", first_error);
    if let Some(first) = first_error {
        let more = errors.saturating_sub(1);
        let more = if more > 0 {
            format!(" (and {} more)", group(more))
        } else {
            String::new()
        };
        report.line(format!("  ERROR: {first}{more}"));
    }
    if close.stuck > 0 {
        report.line(format!(
            "  ERROR: {} connection(s) did not close within {DISCONNECT_GRACE:?}",
            group(close.stuck)
        ));
    }
    report.errors += usize::try_from(errors).unwrap_or(usize::MAX);
    if let Some(text) = &connect.out_of_fds {
        report.fatal = Some(format!(
            "out of file descriptors after {} connection(s), so the run stopped: {text}. \
             Each connection needs one: raise the limit (`ulimit -n`, to more than {}) \
             or ask for fewer --connections",
            group(connect.established),
            group(args.connections.into()),
        ));
    }
}

/// Whether `e` comes from running out of file descriptors.
fn is_out_of_fds(e: &Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.raw_os_error().is_some_and(|n| OUT_OF_FDS.contains(&n)))
            || cause.to_string().contains("Too many open files")
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn running_out_of_descriptors_is_recognised_through_context() {
        let emfile = Err::<(), _>(io::Error::from_raw_os_error(24))
            .context("connecting to 127.0.0.1:1883")
            .unwrap_err();
        assert!(is_out_of_fds(&emfile));
        let refused = Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionRefused))
            .context("connecting to 127.0.0.1:1883")
            .unwrap_err();
        assert!(!is_out_of_fds(&refused));
    }
}
