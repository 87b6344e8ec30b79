#!/usr/bin/env bash
# Runs `mqdb bench` against mqdb, Debian's mosquitto and rumqttd, side by side
# on loopback (issue 7), and writes a markdown table of medians to
# benches/results/latest.md (raw JSON lines: benches/results/latest.jsonl,
# latency plot: benches/results/latency.svg, drawn by benches/plot.py).
#
# Each workload runs against the three brokers one after the other, the order
# rotating every round (mqdb first, then mosquitto first, then rumqttd
# first, ...), ROUNDS times; the table shows the median of the rounds, every
# round's value, and the mqdb/mosquitto and mqdb/rumqttd ratios.
#
# Memory, from /proc/<pid>/status: idle RSS (VmRSS after start, before any
# load), each run's peak (VmHWM, reset through /proc/<pid>/clear_refs before
# the run), the RSS with the 10,000 connections of the `conns` run all held
# (sampled once the broker holds that many descriptors) against the RSS just
# before it, giving KiB per idle connection, and the peak over everything.
# Then, if the open-file limit allows it, 50,000 idle connections against
# mqdb alone (the loopback ephemeral port range is widened for that run if
# it is too narrow, and restored).
#
# Only the processes this script starts are stopped, by PID, on exit (also
# on failure or interrupt); the port range is restored on exit too.
#
# Settings (environment): DURATION (seconds per timed run, default 5),
# ROUNDS (default 3), RECORDS (retained writes and reads, default 50000),
# CONNS (connections of the `conns` run, default 10000), BIG_CONNS (the
# mqdb-only idle-connections run, default 50000; 0 skips it),
# OUT (default benches/results/latest.md), RUMQTTD_VERSION (default 0.20.0).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
RECORDS=${RECORDS:-50000}
CONNS=${CONNS:-10000}
BIG_CONNS=${BIG_CONNS:-50000}
OUT=${OUT:-benches/results/latest.md}
RAW=${OUT%.md}.jsonl
SVG=$(dirname "$OUT")/latency.svg
RUMQTTD_VERSION=${RUMQTTD_VERSION:-0.20.0}
RUMQTTD_CONF=$PWD/benches/rumqttd.toml
MQDB_PORT=18830
MQDB_HTTP_PORT=19930
MOSQUITTO_PORT=18831
# The 3.1.1 listener of benches/rumqttd.toml (its [v4.1] `listen`).
RUMQTTD_PORT=$(sed -n 's/^listen = "127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$RUMQTTD_CONF" | head -n 1)
BROKERS=(mqdb mosquitto rumqttd)
START=$(date +%s)

# Every connection needs a descriptor in the client and one in the broker
# (both inherit this limit): take the hard limit.
HARD_FDS=$(ulimit -Hn)
[ "$HARD_FDS" = unlimited ] && HARD_FDS=1048576
ulimit -n "$HARD_FDS"
if [ "$(ulimit -n)" -lt $((CONNS + 200)) ]; then
  echo "warning: open-file limit $(ulimit -n) is too low for CONNS=$CONNS" >&2
fi

# --- peers --------------------------------------------------------------
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "installing mosquitto"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

echo "building mqdb (release)"
cargo build --release -p mqdb-server --locked
MQDB=$PWD/target/release/mqdb

RUMQTTD=$(command -v rumqttd || echo "$HOME/.cargo/bin/rumqttd")
if [ ! -x "$RUMQTTD" ]; then
  echo "installing rumqttd $RUMQTTD_VERSION (cargo install; several minutes)"
  # rumqttd 0.20.0's lock file pins metrics 0.22.1, which recent compilers
  # reject (E0521 in metrics::recorder); without --locked cargo takes the
  # fixed 0.22.x.
  cargo install rumqttd --version "$RUMQTTD_VERSION" --locked ||
    cargo install rumqttd --version "$RUMQTTD_VERSION"
  RUMQTTD=$HOME/.cargo/bin/rumqttd
fi

# Whether this mqdb has the retained-read workload (added separately).
HAVE_RR=false
"$MQDB" bench retained-read --help >/dev/null 2>&1 && HAVE_RR=true

WORK=$(mktemp -d)
declare -A PID=()
BENCH_PID=""
OLD_RANGE=""
RANGE_FILE=/proc/sys/net/ipv4/ip_local_port_range
stop_pid() {
  local pid=$1
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  return 0
}
cleanup() {
  stop_pid "$BENCH_PID"
  for name in "${!PID[@]}"; do stop_pid "${PID[$name]}"; done
  if [ -n "$OLD_RANGE" ]; then
    echo "$OLD_RANGE" >"$RANGE_FILE" 2>/dev/null || echo "could not restore $RANGE_FILE to $OLD_RANGE" >&2
    OLD_RANGE=""
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

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
# durable write), authentication off, and a `Bench` table for the retained
# workloads.
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

declare -A PORT=([mqdb]=$MQDB_PORT [mosquitto]=$MOSQUITTO_PORT [rumqttd]=$RUMQTTD_PORT)
start_broker() {
  local b=$1
  case $b in
    mqdb) RUST_LOG=warn "$MQDB" serve --config "$WORK/mqdb/mqdb.toml" 2>>"$WORK/mqdb.log" & ;;
    mosquitto) "$MOSQUITTO" -c "$WORK/mosquitto.conf" 2>>"$WORK/mosquitto.log" & ;;
    rumqttd) "$RUMQTTD" --config "$RUMQTTD_CONF" -q >>"$WORK/rumqttd.log" 2>&1 & ;;
  esac
  PID[$b]=$!
  wait_port "${PORT[$b]}" || { echo "$b did not start:" >&2; tail -n 20 "$WORK/$b.log" >&2; exit 1; }
}
for b in "${BROKERS[@]}"; do start_broker "$b"; done

# kB of VmRSS or VmHWM of a running process (empty once it has exited).
vm() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
mb() { awk -v kb="$1" 'BEGIN { if (kb == "" || kb == "n/a") print "n/a"; else printf "%.1f", kb / 1024 }'; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
sleep 1
declare -A IDLE=()
for b in "${BROKERS[@]}"; do IDLE[$b]=$(vm "${PID[$b]}" VmRSS); done

# A broker that exited is noted and started again, so the other runs go on.
EVENTS=()
declare -A LAST=()
ensure_alive() {
  local b=$1 st=0
  kill -0 "${PID[$b]}" 2>/dev/null && return 0
  wait "${PID[$b]}" 2>/dev/null || st=$?
  local why
  why=$(tail -n 3 "$WORK/$b.log" 2>/dev/null | tr '\n' ' ' | cut -c1-300)
  echo "$b exited (status $st) after ${LAST[$b]:-start}: $why; restarting it" >&2
  EVENTS+=("$b exited (status $st) after ${LAST[$b]:-start} and was restarted; its log: \`${why:-empty}\`")
  start_broker "$b"
}

# Runs one workload against broker $1 (case $2, round $3, then the `mqdb
# bench` arguments) and appends its JSON line, prefixed with who/what/when
# and memory figures, to $RAW. For `conns`, the RSS is also read once the
# broker holds every connection (its descriptor count has grown by at least
# 99% of them): rss_held_kb and kib_per_conn = (held - before) / established.
run_one() {
  local b=$1 name=$2 round=$3; shift 3
  local pid=${PID[$b]} before held=null fds0 want line st=0 extra=""
  before=$(vm "$pid" VmRSS)
  # Resets VmHWM to the current RSS (Linux >= 4.0), so the peak read after
  # the run is this run's own.
  echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
  fds0=$(fds "$pid")
  timeout 300 "$MQDB" bench "$@" --port "${PORT[$b]}" --json >"$WORK/bench.out" 2>"$WORK/bench.err" &
  BENCH_PID=$!
  if [ "$1" = conns ]; then
    want=$(awk -v n="$CONNS_NOW" 'BEGIN { printf "%d", n * 0.99 }')
    while kill -0 "$BENCH_PID" 2>/dev/null; do
      if [ $(($(fds "$pid") - fds0)) -ge "$want" ]; then
        sleep 0.5
        held=$(vm "$pid" VmRSS)
        break
      fi
      sleep 0.2
    done
  fi
  wait "$BENCH_PID" || st=$?
  BENCH_PID=""
  line=$(tail -n 1 "$WORK/bench.out")
  case $line in
    '{'*'}') ;;
    *)
      echo "  no result (exit $st): $(tail -n 1 "$WORK/bench.err")" >&2
      line='{"no_result":true}'
      ;;
  esac
  local peak
  peak=$(vm "$pid" VmHWM)
  if [ "$1" = conns ]; then
    local est
    est=$(echo "$line" | sed -n 's/.*"established":\([0-9]*\).*/\1/p')
    extra="\"rss_held_kb\":${held:-null},\"kib_per_conn\":$(awk -v h="${held:-null}" -v b="$before" -v n="${est:-0}" \
      'BEGIN { if (h == "null" || n == 0) print "null"; else printf "%.2f", (h - b) / n }'),"
  fi
  echo "$line" |
    sed "s/^{/{\"peer\":\"$b\",\"case\":\"$name\",\"round\":$round,\"exit\":$st,\"rss_before_kb\":${before:-null},\"rss_peak_kb\":${peak:-null},$extra/; s/,}\$/}/" >>"$RAW"
}

# --- workloads ----------------------------------------------------------
# name|arguments (`--port` and `--json` are added). `conns` comes first so
# that in round 1 every broker holds its connections from idle.
WORKLOADS=(
  "conns|conns --connections $CONNS"
  "fanin-qos0|fanin --qos 0 --publishers 4 --subscribers 1 --duration $DURATION"
  "fanin-qos1|fanin --qos 1 --publishers 4 --subscribers 1 --duration $DURATION"
  "latency-qos1|latency --qos 1 --rate 10000 --duration $DURATION"
  "fanout-qos0|fanout --qos 0 --subscribers 100 --rate 1000 --duration $DURATION"
  "retained-qos1|retained --qos 1 --count $RECORDS --window 100"
  "retained-read|retained-read --count $RECORDS"
)

mkdir -p "$(dirname "$OUT")"
: >"$RAW"
CONNS_NOW=$CONNS
for round in $(seq "$ROUNDS"); do
  k=$(((round - 1) % ${#BROKERS[@]}))
  order=("${BROKERS[@]:k}" "${BROKERS[@]:0:k}")
  for w in "${WORKLOADS[@]}"; do
    name=${w%%|*}
    args=${w#*|}
    if [ "$name" = retained-read ] && ! $HAVE_RR; then continue; fi
    for b in "${order[@]}"; do
      ensure_alive "$b"
      echo "round $round/$ROUNDS: $name on $b" >&2
      # shellcheck disable=SC2086
      run_one "$b" "$name" "$round" $args
      LAST[$b]="$name round $round"
      sleep 1
    done
  done
done
for b in "${BROKERS[@]}"; do ensure_alive "$b"; done

# --- 50,000 idle connections, mqdb only ---------------------------------
BIG_NOTE=""
if [ "$BIG_CONNS" -le 0 ]; then
  BIG_NOTE="not run (BIG_CONNS=0)"
elif [ "$(ulimit -n)" -lt $((BIG_CONNS + 200)) ]; then
  BIG_NOTE="not attempted: the open-file limit is $(ulimit -n) (hard limit $(ulimit -Hn); raising it needs CAP_SYS_RESOURCE, which this environment does not grant), and the client and mqdb each need one descriptor per connection"
else
  read -r lo hi <"$RANGE_FILE"
  if [ $((hi - lo + 1)) -lt $((BIG_CONNS + 1000)) ]; then
    # All connections go to one address and port, so each needs its own
    # source port. The wider range is only in force during this run (ports
    # below it are ordinary listening ports of other programs).
    if echo "1024 65535" >"$RANGE_FILE" 2>/dev/null; then
      OLD_RANGE="$lo $hi"
    else
      BIG_NOTE="not attempted: net.ipv4.ip_local_port_range is $lo-$hi ($((hi - lo + 1)) source ports to one address and port) and cannot be widened here"
    fi
  fi
  if [ -z "$BIG_NOTE" ]; then
    echo "idle connections: $BIG_CONNS against mqdb" >&2
    CONNS_NOW=$BIG_CONNS
    ensure_alive mqdb
    run_one mqdb conns-big 1 conns --connections "$BIG_CONNS" --hold 5
    if [ -n "$OLD_RANGE" ]; then
      echo "$OLD_RANGE" >"$RANGE_FILE"
      OLD_RANGE=""
    fi
    ensure_alive mqdb
  fi
fi

declare -A PEAK=() FINAL=()
for b in "${BROKERS[@]}"; do
  # The largest of the per-run peaks (VmHWM is reset before each run).
  PEAK[$b]=$(grep -F "\"peer\":\"$b\"," "$RAW" | sed -n 's/.*"rss_peak_kb":\([0-9]*\).*/\1/p' | sort -n | tail -n 1)
  FINAL[$b]=$(vm "${PID[$b]}" VmRSS)
done

# --- table --------------------------------------------------------------
# Values of `field` for (peer, case), one per round, from the flat JSON lines.
values() {
  grep -F "\"peer\":\"$1\",\"case\":\"$2\"," "$RAW" |
    sed -n "s/.*\"$3\":\\([^,}]*\\).*/\\1/p" | grep -v '^null$' || true
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
fmt() { awk -v x="$1" 'BEGIN { if (x == "n/a" || x == "null" || x == "") print "n/a"; else if (x == int(x) || x >= 100 || x <= -100) printf "%.0f\n", x; else printf "%.3g\n", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
# Round 1's value of field $2 of the `conns` case for broker $1, then every
# round's, through formatter $3.
first() {
  local v all
  v=$(grep -F "\"peer\":\"$1\",\"case\":\"conns\",\"round\":1," "$RAW" |
    sed -n "s/.*\"$2\":\\([^,}]*\\).*/\\1/p" | head -n 1)
  all=$(values "$1" conns "$2" | while read -r x; do "$3" "$x"; echo; done | sed '/^$/d' | paste -sd/ -)
  if [ -z "$v" ] || [ "$v" = null ]; then echo "n/a${all:+ [$all]}"; else echo "$("$3" "$v") [$all]"; fi
}
# "median [round/round/...]" of field $3 of case $2 for broker $1, through
# formatter $4 (fmt or mb).
cell() {
  local med all
  med=$(values "$1" "$2" "$3" | median)
  all=$(values "$1" "$2" "$3" | while read -r v; do "$4" "$v"; echo; done | sed '/^$/d' | paste -sd/ -)
  if [ "$med" = n/a ]; then echo "n/a"; else echo "$("$4" "$med") [$all]"; fi
}

# case|field|label|better[|guard]: with a guard field (e.g. `missing`), a
# ratio is only given when the guard's median is 0 for both brokers (a rate
# over an incomplete read compares nothing).
ROWS=(
  "conns|connects_per_s|$CONNS connections (64 at a time), connects/s|higher"
  "conns|connect_p99_us|$CONNS connections, set-up p99 us (TCP connect to CONNACK)|lower"
  "fanin-qos0|delivered_per_s|QoS 0 fan-in 4->1, delivered msg/s|higher"
  "fanin-qos0|loss_pct|QoS 0 fan-in 4->1, loss %|lower"
  "fanin-qos0|p99_us|QoS 0 fan-in 4->1, p99 latency us|lower"
  "fanin-qos1|delivered_per_s|QoS 1 fan-in 4->1 (overload), delivered msg/s|higher"
  "fanin-qos1|loss_pct|QoS 1 fan-in 4->1 (overload), loss %|lower"
  "fanin-qos1|p99_us|QoS 1 fan-in 4->1 (overload), p99 latency us|lower"
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
  "retained-read|records_per_s|retained read ($RECORDS on subscribe), records/s|higher|missing"
  "retained-read|read_s|retained read, seconds to receive them all|lower|missing"
  "retained-read|missing|retained read, missing records|lower"
)

# The plot (the table links it).
PLOT_NOTE=""
if python3 benches/plot.py "$RAW" "$SVG" 2>"$WORK/plot.err"; then
  PLOT_NOTE="![latency percentiles]($(basename "$SVG"))"
else
  PLOT_NOTE="(the latency plot failed: $(tail -n 1 "$WORK/plot.err"))"
fi

ELAPSED=$(($(date +%s) - START))
{
  echo "# mqdb vs mosquitto vs rumqttd: \`benches/peers.sh\`"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), shared by the load generator and the three brokers (all running at once, only one loaded at a time)."
  echo "mqdb $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (uncommitted changes)'); $("$MOSQUITTO" -h 2>&1 | head -n 1); $("$RUMQTTD" --version 2>&1 | head -n 1)."
  echo "Command: \`DURATION=$DURATION ROUNDS=$ROUNDS RECORDS=$RECORDS CONNS=$CONNS BIG_CONNS=$BIG_CONNS bash benches/peers.sh\` ($((ELAPSED / 60)) min $((ELAPSED % 60)) s)."
  echo "Medians of $ROUNDS rounds (every round's value in brackets, in round order), ${DURATION} s per timed run, 64-byte payloads, MQTT 3.1.1, loopback."
  echo "The broker order rotates every round (round 1: mqdb, mosquitto, rumqttd; round 2: mosquitto, rumqttd, mqdb; ...)."
  echo
  echo "| workload and figure | better | mqdb | mosquitto | rumqttd | mqdb/mosquitto | mqdb/rumqttd |"
  echo "|---|---|---|---|---|---|---|"
  for r in "${ROWS[@]}"; do
    IFS='|' read -r case field label better guard <<<"$r"
    if [ "$case" = retained-read ] && ! $HAVE_RR; then
      echo "| $label | $better | n/a | n/a | n/a | n/a | n/a |"
      continue
    fi
    declare -A MED=()
    cells=()
    for b in "${BROKERS[@]}"; do
      MED[$b]=$(values "$b" "$case" "$field" | median)
      cells+=("$(cell "$b" "$case" "$field" fmt)")
    done
    ratios=()
    for peer in mosquitto rumqttd; do
      if [ -n "$guard" ] && { [ "$(values mqdb "$case" "$guard" | median)" != 0 ] ||
        [ "$(values "$peer" "$case" "$guard" | median)" != 0 ]; }; then
        ratios+=("n/a (incomplete)")
      else
        ratios+=("$(ratio "${MED[mqdb]}" "${MED[$peer]}")")
      fi
    done
    echo "| $label | $better | ${cells[0]} | ${cells[1]} | ${cells[2]} | ${ratios[0]} | ${ratios[1]} |"
  done
  if ! $HAVE_RR; then
    echo
    echo "The retained-read rows read n/a: this mqdb binary has no \`mqdb bench retained-read\` yet."
  fi
  echo
  echo "Reading the table:"
  echo
  echo "- Connections: rumqttd accepts one connection at a time and sleeps after each"
  echo "  (\`next_connection_delay_ms\`, 0 here; the sleep still lasts until the next tick of"
  echo "  tokio's millisecond timer), which keeps it under 1,000 connections/s."
  echo "- Retained read: with these settings a new QoS 1 subscriber gets at most"
  echo "  max_inflight_messages + max_queued_messages = 20 + 1000 retained messages from"
  echo "  mosquitto, and at most max_inflight_count = 100 from rumqttd (its router reads"
  echo "  every matching retained message and drops what does not fit the free in-flight"
  echo "  slots); the rest count as missing, the reader gives up once nothing more arrives"
  echo "  (timed out), and records/s and seconds cover only what arrived."
  echo "- QoS 1 fan-in: the publishers are unpaced, so the broker is overloaded; mosquitto"
  echo "  drops what exceeds the subscriber's queue (loss), while a broker that keeps every"
  echo "  message shows it as latency (and, for rumqttd, as the memory of its in-memory log)."
  echo
  echo "$PLOT_NOTE"
  echo
  echo "| broker memory | mqdb | mosquitto | rumqttd |"
  echo "|---|---|---|---|"
  echo "| idle RSS after start, before any load (MB) | $(mb "${IDLE[mqdb]}") | $(mb "${IDLE[mosquitto]}") | $(mb "${IDLE[rumqttd]}") |"
  echo "| RSS before the $CONNS-connection run (MB), round 1 [every round] | $(first mqdb rss_before_kb mb) | $(first mosquitto rss_before_kb mb) | $(first rumqttd rss_before_kb mb) |"
  echo "| RSS with $CONNS idle connections held (MB), round 1 [every round] | $(first mqdb rss_held_kb mb) | $(first mosquitto rss_held_kb mb) | $(first rumqttd rss_held_kb mb) |"
  echo "| KiB per idle connection, (held - before) / $CONNS, round 1 [every round] | $(first mqdb kib_per_conn fmt) | $(first mosquitto kib_per_conn fmt) | $(first rumqttd kib_per_conn fmt) |"
  for w in "${WORKLOADS[@]}"; do
    case=${w%%|*}
    if [ "$case" = retained-read ] && ! $HAVE_RR; then continue; fi
    echo "| peak RSS during $case (MB) | $(cell mqdb "$case" rss_peak_kb mb) | $(cell mosquitto "$case" rss_peak_kb mb) | $(cell rumqttd "$case" rss_peak_kb mb) |"
  done
  echo "| peak RSS over all runs (VmHWM, MB) | $(mb "${PEAK[mqdb]}") | $(mb "${PEAK[mosquitto]}") | $(mb "${PEAK[rumqttd]}") |"
  echo "| RSS after all runs (MB) | $(mb "${FINAL[mqdb]}") | $(mb "${FINAL[mosquitto]}") | $(mb "${FINAL[rumqttd]}") |"
  echo
  echo "Memory per connection is taken from round 1, where each broker goes from idle to"
  echo "$CONNS held connections; later rounds start after the other workloads, when the"
  echo "broker may reuse memory it already holds (their values are in brackets)."
  echo
  if [ -n "$BIG_NOTE" ]; then
    echo "$BIG_CONNS idle connections against mqdb: $BIG_NOTE."
  else
    big=$(grep -F '"case":"conns-big"' "$RAW" | tail -n 1)
    f() { echo "$big" | sed -n "s/.*\"$1\":\\([^,}]*\\).*/\\1/p"; }
    echo "$BIG_CONNS idle connections against mqdb alone: $(f established) established ($(f failed) failed) at $(fmt "$(f connects_per_s)") connects/s;"
    echo "RSS $(mb "$(f rss_before_kb)") MB before, $(mb "$(f rss_held_kb)") MB with them held, $(fmt "$(f kib_per_conn)") KiB per connection; peak $(mb "$(f rss_peak_kb)") MB."
  fi
  echo
  echo "Problems: runs with connection errors, without a result, or cut by the deadline (see $(basename "$RAW")), and brokers that exited:"
  echo
  problems=$(grep -E '"errors":[1-9]|"timed_out":true|"no_result":true|"exit":[1-9]' "$RAW" |
    sed -n 's/^{"peer":"\([^"]*\)","case":"\([^"]*\)","round":\([0-9]*\),"exit":\([0-9]*\).*/- \1 \2 round \3 (exit \4)/p' || true)
  if [ -n "$problems" ]; then
    echo "$problems" | while read -r p; do
      peer=$(echo "$p" | cut -d' ' -f2); case=$(echo "$p" | cut -d' ' -f3); round=$(echo "$p" | cut -d' ' -f5)
      l=$(grep -F "{\"peer\":\"$peer\",\"case\":\"$case\",\"round\":$round," "$RAW" | head -n 1)
      err=$(echo "$l" | sed -n 's/.*"first_error":"\(.*\)".*/\1/p' | cut -c1-160)
      to=$(echo "$l" | grep -q '"timed_out":true' && echo ", timed out" || true)
      echo "$p$to${err:+: $err}"
    done
  fi
  for e in "${EVENTS[@]}"; do echo "- $e"; done
  [ -n "$problems" ] || [ ${#EVENTS[@]} -gt 0 ] || echo "none"
  echo
  echo "Commands (each with \`--port <broker port> --json\`):"
  echo
  for w in "${WORKLOADS[@]}"; do echo "- \`mqdb bench ${w#*|}\`"; done
  echo
  echo "Peer settings: mosquitto with \`persistence true\` and its defaults otherwise"
  echo "(max_queued_messages 1000, max_inflight_messages 20, set_tcp_nodelay false,"
  echo "autosave_interval 1800 s: retained messages are not on disk when PUBACK is sent);"
  echo "rumqttd with \`benches/rumqttd.toml\` (no persistence at all: retained messages"
  echo "live in memory; max_inflight_count 100, per-topic in-memory log bounded at"
  echo "10 x 100 MiB as in its example config, no delay between accepts, max_connections 20000);"
  echo "mqdb with its defaults (durability fsync: PUBACK after a durable write), authentication off."
} >"$OUT"
echo "wrote $OUT, $RAW and $SVG in $((ELAPSED / 60)) min $((ELAPSED % 60)) s" >&2
cat "$OUT"
