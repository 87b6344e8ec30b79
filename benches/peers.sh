#!/usr/bin/env bash
# Runs `mqdb bench` against mqdb and against Debian's mosquitto, side by side
# on loopback, and writes a markdown table of medians to
# benches/results/latest.md (raw JSON lines: benches/results/latest.jsonl).
#
# Each workload runs against both brokers alternately (the order flips every
# round), ROUNDS times; the table shows the median of the rounds, every
# round's value, and the mqdb/mosquitto ratio. Idle and peak RSS of both
# brokers are read from /proc/<pid>/status (VmRSS, VmHWM).
#
# Only the processes this script starts are stopped, by PID, on exit.
#
# Settings (environment): DURATION (seconds per timed run, default 5),
# ROUNDS (default 3), RECORDS (retained writes, default 50000),
# OUT (default benches/results/latest.md).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
RECORDS=${RECORDS:-50000}
OUT=${OUT:-benches/results/latest.md}
RAW=${OUT%.md}.jsonl
MQDB_PORT=18830
MQDB_HTTP_PORT=19930
MOSQUITTO_PORT=18831

# --- peers --------------------------------------------------------------
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing mosquitto"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

echo "building mqdb (release)"
cargo build --release -p mqdb-server --locked
MQDB=$PWD/target/release/mqdb

WORK=$(mktemp -d)
declare -A PID=()
stop_brokers() {
  for name in "${!PID[@]}"; do
    local pid=${PID[$name]}
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap stop_brokers EXIT

# mosquitto with persistence on and otherwise default limits, which matter
# for these workloads: max_queued_messages 1000 and max_inflight_messages 20
# per client (QoS 1/2 beyond them are dropped when a subscriber falls
# behind), set_tcp_nodelay false (Nagle on), autosave_interval 1800 s
# (retained messages reach disk at that interval or at shutdown, not before
# PUBACK).
mkdir -p "$WORK/mosquitto"
chown "$(id -un)" "$WORK/mosquitto"
cat >"$WORK/mosquitto.conf" <<EOF
listener $MOSQUITTO_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $WORK/mosquitto/
user $(id -un)
log_dest stderr
log_type error
log_type warning
EOF

# mqdb with its defaults (durability = "fsync": a retained PUBACK follows a
# durable write) and a `Bench` table for the retained workload.
mkdir -p "$WORK/mqdb"
echo 'type Bench @table @export' >"$WORK/mqdb/schema.graphql"
cat >"$WORK/mqdb/mqdb.toml" <<EOF
[storage]
path = "$WORK/mqdb/data"
[schema]
files = ["$WORK/mqdb/schema.graphql"]
[mqtt]
host = "127.0.0.1"
port = $MQDB_PORT
require_authentication = false
[http]
host = "127.0.0.1"
port = $MQDB_HTTP_PORT
require_authentication = false
EOF

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

"$MOSQUITTO" -c "$WORK/mosquitto.conf" 2>"$WORK/mosquitto.log" &
PID[mosquitto]=$!
RUST_LOG=warn "$MQDB" serve --config "$WORK/mqdb/mqdb.toml" 2>"$WORK/mqdb.log" &
PID[mqdb]=$!
wait_port $MOSQUITTO_PORT
wait_port $MQDB_PORT
declare -A PORT=([mqdb]=$MQDB_PORT [mosquitto]=$MOSQUITTO_PORT)

# kB of VmRSS or VmHWM of a running process.
vm() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }
sleep 1
declare -A IDLE=()
for b in mqdb mosquitto; do IDLE[$b]=$(vm "${PID[$b]}" VmRSS); done

# --- workloads ----------------------------------------------------------
# name|arguments (`--port` and `--json` are added)
WORKLOADS=(
  "fanin-qos0|fanin --qos 0 --publishers 4 --subscribers 1 --duration $DURATION"
  "fanin-qos1|fanin --qos 1 --publishers 4 --subscribers 1 --duration $DURATION"
  "latency-qos1|latency --qos 1 --rate 10000 --duration $DURATION"
  "fanout-qos0|fanout --qos 0 --subscribers 100 --rate 1000 --duration $DURATION"
  "retained-qos1|retained --qos 1 --count $RECORDS --window 100"
)

mkdir -p "$(dirname "$OUT")"
: >"$RAW"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="mqdb mosquitto"; else order="mosquitto mqdb"; fi
  for w in "${WORKLOADS[@]}"; do
    name=${w%%|*}
    args=${w#*|}
    for b in $order; do
      for p in mqdb mosquitto; do
        kill -0 "${PID[$p]}" 2>/dev/null || { echo "$p died; see $WORK/$p.log" >&2; exit 1; }
      done
      echo "round $round/$ROUNDS: $name on $b" >&2
      # Resets VmHWM to the current RSS (Linux >= 4.0), so the peak read
      # after the run is this run's own.
      echo 5 >"/proc/${PID[$b]}/clear_refs" 2>/dev/null || true
      # shellcheck disable=SC2086
      line=$(timeout 300 "$MQDB" bench $args --port "${PORT[$b]}" --json 2>"$WORK/bench.err" | tail -n 1) || true
      if [ -z "$line" ]; then
        echo "  no result: $(tail -n 1 "$WORK/bench.err")" >&2
        line='{}'
      fi
      peak=$(vm "${PID[$b]}" VmHWM)
      echo "$line" |
        sed "s/^{/{\"peer\":\"$b\",\"case\":\"$name\",\"round\":$round,\"rss_peak_kb\":$peak,/; s/,}\$/}/" >>"$RAW"
      sleep 1
    done
  done
done
declare -A PEAK=() FINAL=()
for b in mqdb mosquitto; do
  # The largest of the per-run peaks (VmHWM is reset before each run).
  PEAK[$b]=$(grep -F "\"peer\":\"$b\"," "$RAW" | sed -n 's/.*"rss_peak_kb":\([0-9]*\).*/\1/p' | sort -n | tail -n 1)
  FINAL[$b]=$(vm "${PID[$b]}" VmRSS)
done

# --- table --------------------------------------------------------------
# Values of `field` for (peer, case), one per round, from the flat JSON lines.
values() {
  grep -F "\"peer\":\"$1\",\"case\":\"$2\"," "$RAW" |
    sed -n "s/.*\"$3\":\\([^,}]*\\).*/\\1/p"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
fmt() { awk -v x="$1" 'BEGIN { if (x == "n/a" || x == "null") print "n/a"; else if (x == int(x) || x >= 100) printf "%.0f\n", x; else printf "%.3g\n", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }

# case|field|label|better
ROWS=(
  "fanin-qos0|delivered_per_s|QoS 0 fan-in 4->1, delivered msg/s|higher"
  "fanin-qos0|loss_pct|QoS 0 fan-in 4->1, loss %|lower"
  "fanin-qos0|p99_us|QoS 0 fan-in 4->1, p99 latency us|lower"
  "fanin-qos1|delivered_per_s|QoS 1 fan-in 4->1, delivered msg/s|higher"
  "fanin-qos1|loss_pct|QoS 1 fan-in 4->1, loss %|lower"
  "fanin-qos1|p99_us|QoS 1 fan-in 4->1, p99 latency us|lower"
  "latency-qos1|p50_us|QoS 1 at 10k msg/s, p50 us|lower"
  "latency-qos1|p99_us|QoS 1 at 10k msg/s, p99 us|lower"
  "latency-qos1|p999_us|QoS 1 at 10k msg/s, p99.9 us|lower"
  "latency-qos1|loss|QoS 1 at 10k msg/s, lost messages|lower"
  "fanout-qos0|p50_us|QoS 0 fan-out 1->100 at 1k msg/s, p50 us|lower"
  "fanout-qos0|p99_us|QoS 0 fan-out 1->100 at 1k msg/s, p99 us|lower"
  "fanout-qos0|p999_us|QoS 0 fan-out 1->100 at 1k msg/s, p99.9 us|lower"
  "fanout-qos0|loss|QoS 0 fan-out 1->100 at 1k msg/s, lost messages|lower"
  "retained-qos1|records_per_s|retained QoS 1 writes ($RECORDS, 100 in flight), records/s|higher"
  "retained-qos1|ack_p99_us|retained QoS 1 writes, PUBACK p99 us|lower"
)

{
  echo "# mqdb vs mosquitto: \`benches/peers.sh\`"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); client and brokers share the cores."
  echo "mqdb $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (uncommitted changes)'); $("$MOSQUITTO" -h 2>&1 | head -n 1)."
  echo "Medians of $ROUNDS rounds (every round's value in brackets), ${DURATION} s per timed run, 64-byte payloads, MQTT 3.1.1, loopback."
  echo
  echo "| workload and figure | better | mqdb | mosquitto | mqdb/mosquitto |"
  echo "|---|---|---|---|---|"
  for r in "${ROWS[@]}"; do
    IFS='|' read -r case field label better <<<"$r"
    cells=()
    declare -A MED=()
    for b in mqdb mosquitto; do
      MED[$b]=$(values "$b" "$case" "$field" | median)
      all=$(values "$b" "$case" "$field" | while read -r v; do fmt "$v"; done | paste -sd/ -)
      cells+=("$(fmt "${MED[$b]}") [${all:-n/a}]")
    done
    echo "| $label | $better | ${cells[0]} | ${cells[1]} | $(ratio "${MED[mqdb]}" "${MED[mosquitto]}") |"
  done
  echo
  echo "| broker memory (MB) | mqdb | mosquitto |"
  echo "|---|---|---|"
  echo "| idle RSS, before the runs | $(mb "${IDLE[mqdb]}") | $(mb "${IDLE[mosquitto]}") |"
  for w in "${WORKLOADS[@]}"; do
    case=${w%%|*}
    cells=()
    for b in mqdb mosquitto; do
      med=$(values "$b" "$case" rss_peak_kb | median)
      all=$(values "$b" "$case" rss_peak_kb | while read -r v; do mb "$v"; echo; done | paste -sd/ -)
      cells+=("$( [ "$med" = n/a ] && echo n/a || mb "$med") [$all]")
    done
    echo "| peak RSS during $case | ${cells[0]} | ${cells[1]} |"
  done
  echo "| peak RSS over all runs (VmHWM) | $(mb "${PEAK[mqdb]}") | $(mb "${PEAK[mosquitto]}") |"
  echo "| RSS after the runs | $(mb "${FINAL[mqdb]}") | $(mb "${FINAL[mosquitto]}") |"
  echo
  echo "Connection errors or runs cut by the deadline (see $(basename "$RAW")):"
  problems=$(grep -E '"errors":[1-9]|"timed_out":true|^\{"peer":"[a-z]+","case":"[a-z0-9-]+","round":[0-9]+\}$' "$RAW" |
    sed -n 's/^{"peer":"\([^"]*\)","case":"\([^"]*\)","round":\([0-9]*\).*/- \1 \2 round \3/p' || true)
  echo "${problems:-none}"
  echo
  echo "Commands (each with \`--port <broker port> --json\`):"
  echo
  for w in "${WORKLOADS[@]}"; do echo "- \`mqdb bench ${w#*|}\`"; done
  echo
  echo "Peer settings: mosquitto with \`persistence true\` and its defaults otherwise"
  echo "(max_queued_messages 1000, max_inflight_messages 20, set_tcp_nodelay false,"
  echo "autosave_interval 1800 s: retained messages are not on disk when PUBACK is sent);"
  echo "mqdb with its defaults (durability fsync: PUBACK after a durable write)."
} >"$OUT"
echo "wrote $OUT and $RAW" >&2
cat "$OUT"
