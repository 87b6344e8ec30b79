//! The result of a run, twice: a human summary and one JSON line for
//! scripts (always the last line printed). Fields are flat (no nesting) so
//! any tool, down to `jq` or `grep`, can read them.
//!
//! The JSON is written by hand: every value is a number, a boolean, null or
//! a short string, which does not justify a serializer dependency here.

use std::fmt::Write as _;
use std::io::Write as _;

use super::latency::Percentiles;
use super::pubsub::Outcome;

/// One JSON value of the final line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(u64),
    Num(f64),
    Text(String),
    Bool(bool),
    Null,
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Num(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A run's figures, in the order they are reported.
#[derive(Debug, Default)]
pub(crate) struct Report {
    fields: Vec<(&'static str, Value)>,
    lines: Vec<String>,
    /// Connection failures during the run; the command fails if any.
    pub(crate) errors: usize,
    /// Why the run stopped early, if it did: the command fails with it
    /// after printing the report.
    pub(crate) fatal: Option<String>,
}

impl Report {
    /// Adds `key` to the JSON line.
    pub(crate) fn field(&mut self, key: &'static str, value: impl Into<Value>) -> &mut Self {
        self.fields.push((key, value.into()));
        self
    }

    /// Adds a line to the human summary.
    pub(crate) fn line(&mut self, line: impl Into<String>) -> &mut Self {
        self.lines.push(line.into());
        self
    }

    /// The figures every workload shares: what was published, what arrived,
    /// what was lost or duplicated, latency and errors.
    pub(crate) fn outcome(&mut self, o: &Outcome, subscribers: bool) -> &mut Self {
        let sent_rate = rate(o.sent, o.publish_secs);
        self.field("sent", o.sent)
            .field("acked", o.acked)
            .field("rejected", o.rejected)
            .field("unacked", o.unacked)
            .field("window_used", o.window)
            .field("publish_s", round3(o.publish_secs))
            .field("sent_per_s", round1(sent_rate));
        let window = o
            .window
            .map_or(String::new(), |w| format!(", window used {w}"));
        self.line(format!(
            "  published  {} in {:.2} s = {} msg/s  (acked {}, rejected {}, unacked {}{window})",
            group(o.sent),
            o.publish_secs,
            group(sent_rate as u64),
            group(o.acked),
            group(o.rejected),
            group(o.unacked),
        ));
        if subscribers {
            let delivered_rate = rate(o.received, o.deliver_secs);
            let loss_pct = if o.expected == 0 {
                0.0
            } else {
                100.0 * o.loss() as f64 / o.expected as f64
            };
            self.field("expected", o.expected)
                .field("received", o.received)
                .field("delivered", o.unique)
                .field("loss", o.loss())
                .field("loss_pct", round3(loss_pct))
                .field("duplicates", o.duplicates)
                .field("foreign", o.foreign)
                .field("deliver_s", round3(o.deliver_secs))
                .field("delivered_per_s", round1(delivered_rate));
            self.percentiles(false, &o.latency);
            self.line(format!(
                "  delivered  {} in {:.2} s = {} msg/s  (expected {})",
                group(o.received),
                o.deliver_secs,
                group(delivered_rate as u64),
                group(o.expected),
            ));
            self.line(format!(
                "  loss       {} ({loss_pct:.3} %)  duplicates {}  foreign {}",
                group(o.loss()),
                group(o.duplicates),
                group(o.foreign),
            ));
            self.line(latency_line("latency", &o.latency));
        }
        if o.acked + o.rejected > 0 {
            self.percentiles(true, &o.ack_latency);
            self.line(latency_line("ack time", &o.ack_latency));
        }
        self.field("timed_out", o.timed_out)
            .field("errors", o.errors.len() as u64)
            .field("first_error", o.errors.first().map(String::as_str));
        if o.timed_out {
            self.line("  WARNING: the deadline passed before the run finished; counts are partial");
        }
        for e in &o.errors {
            self.line(format!("  ERROR: {e}"));
        }
        self.errors += o.errors.len();
        self
    }

    /// p50, p99, p99.9, max and mean in microseconds: of delivery, or of
    /// acknowledgement (`ack_` keys).
    fn percentiles(&mut self, ack: bool, p: &Percentiles) {
        let keys = if ack {
            [
                "ack_p50_us",
                "ack_p99_us",
                "ack_p999_us",
                "ack_max_us",
                "ack_mean_us",
            ]
        } else {
            ["p50_us", "p99_us", "p999_us", "max_us", "mean_us"]
        };
        self.percentile_fields(keys, p);
    }

    /// p50, p99, p99.9, max and mean of `p` under the given keys.
    pub(crate) fn percentile_fields(&mut self, keys: [&'static str; 5], p: &Percentiles) {
        let [p50, p99, p999, max, mean] = keys;
        self.field(p50, p.p50)
            .field(p99, p.p99)
            .field(p999, p.p999)
            .field(max, p.max)
            .field(mean, round1(p.mean));
    }

    /// The JSON line.
    pub(crate) fn json(&self) -> String {
        let mut out = String::from("{");
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{key}\":");
            match value {
                Value::Int(v) => {
                    let _ = write!(out, "{v}");
                }
                Value::Num(v) if v.is_finite() => {
                    let _ = write!(out, "{v}");
                }
                Value::Num(_) | Value::Null => out.push_str("null"),
                Value::Bool(v) => {
                    let _ = write!(out, "{v}");
                }
                Value::Text(s) => push_json_string(&mut out, s),
            }
        }
        out.push('}');
        out
    }

    /// Prints the summary (unless `json_only`) and then the JSON line.
    pub(crate) fn print(&self, json_only: bool) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        let mut text = String::new();
        if !json_only {
            for line in &self.lines {
                text.push_str(line);
                text.push('\n');
            }
        }
        text.push_str(&self.json());
        text.push('\n');
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            // `mqdb bench ... | head` closing the pipe early is not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }
}

/// One line of the summary for a latency distribution.
pub(crate) fn latency_line(label: &str, p: &Percentiles) -> String {
    format!(
        "  {label:<10} p50 {} us  p99 {} us  p99.9 {} us  max {} us  (n = {})",
        group(p.p50),
        group(p.p99),
        group(p.p999),
        group(p.max),
        group(p.count),
    )
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `n` per `secs`; 0 for an empty interval.
pub(crate) fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

pub(crate) fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `1234567` as `1,234,567`.
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_is_flat_and_escaped() {
        let mut report = Report::default();
        report
            .field("workload", "fanin")
            .field("sent", 3u64)
            .field("rate", 1.5)
            .field("nan", f64::NAN)
            .field("none", None::<u64>)
            .field("ok", true)
            .field("error", "a \"quoted\"\nline");
        assert_eq!(
            report.json(),
            r#"{"workload":"fanin","sent":3,"rate":1.5,"nan":null,"none":null,"ok":true,"error":"a \"quoted\"\u000aline"}"#
        );
    }

    #[test]
    fn latency_fields_have_their_own_names() {
        let mut report = Report::default();
        let p = Percentiles {
            count: 1,
            p50: 1,
            p99: 2,
            p999: 3,
            max: 4,
            mean: 1.0,
        };
        report.percentiles(false, &p);
        report.percentiles(true, &p);
        let keys: Vec<&str> = report.fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "p50_us",
                "p99_us",
                "p999_us",
                "max_us",
                "mean_us",
                "ack_p50_us",
                "ack_p99_us",
                "ack_p999_us",
                "ack_max_us",
                "ack_mean_us"
            ]
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
