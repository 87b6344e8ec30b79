#!/usr/bin/env bash
# Measures what security and transports cost in mqdb, all in one run on
# loopback (issue 5's figures), medians of ROUNDS runs each:
#   - connections per second over plain TCP and over TLS (full handshakes),
#   - QoS 0 fan-in 4 -> 1 delivered over TCP, TLS, WebSocket and wss,
#   - connections per second with authentication on (user and password,
#     verified-password cache warm after the first login).
# Writes benches/results/transports.md (raw JSON lines beside it).
# Only the processes this script starts are stopped, by PID, on exit.
#
# Settings (environment): ROUNDS (default 3), DURATION (fan-in seconds,
# default 5), CONNS (connections per conns run, default 2000).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-2000}
OUT=${OUT:-benches/results/transports.md}
RAW=${OUT%.md}.jsonl
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "building mqdb (release)"
cargo build --release -p mqdb-server --locked
MQDB=$PWD/target/release/mqdb

WORK=$(mktemp -d)
PID=""
stop() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
  fi
  PID=""
}
trap 'stop; rm -rf "$WORK"' EXIT

# A CA and a server certificate for 127.0.0.1 signed by it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=bench-ca -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj /CN=localhost -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' > "$WORK/ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 2 -extfile "$WORK/ext" -out "$WORK/server.pem" 2>/dev/null

start() { # $1: require_authentication
  rm -rf "$WORK/data"
  cat > "$WORK/mqdb.toml" <<TOML
[storage]
path = "$WORK/data"
[schema]
files = []
[mqtt]
host = "127.0.0.1"
port = 18840
require_authentication = $1
[mqtt.tls]
port = 18841
cert = "$WORK/server.pem"
key = "$WORK/server.key"
[http]
host = "127.0.0.1"
port = 18842
require_authentication = $1
[http.tls]
port = 18843
cert = "$WORK/server.pem"
key = "$WORK/server.key"
TOML
  MQDB_ADMIN_PASSWORD=bench-pw RUST_LOG=warn "$MQDB" serve --config "$WORK/mqdb.toml" 2>"$WORK/mqdb.log" &
  PID=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/18843) 2>/dev/null && return 0
    sleep 0.1
  done
  echo "mqdb did not start:"; cat "$WORK/mqdb.log"; exit 1
}

: > "$RAW"
run() { # name field args...
  local name=$1 field=$2; shift 2
  local line
  line=$("$MQDB" bench "$@" --json 2>"$WORK/bench.err" | tail -n 1) || true
  [ -n "$line" ] || { echo "bench $name failed:"; cat "$WORK/bench.err"; line='{}'; }
  echo "{\"case\":\"$name\",\"result\":$line}" >> "$RAW"
  echo "$line" | sed -n "s/.*\"$field\":\([0-9.]*\).*/\1/p"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A VALUES=()
measure() { # name field args...
  local name=$1 field=$2; shift 2
  local v
  v=$(run "$name" "$field" "$@")
  VALUES[$name]="${VALUES[$name]:-} ${v:-0}"
  echo "  $name: $v"
}

start false
for r in $(seq "$ROUNDS"); do
  echo "round $r (authentication off)"
  measure conns-tcp connects_per_s conns --port 18840 --connections "$CONNS" --hold 1
  measure conns-tls connects_per_s conns --tls --ca "$WORK/ca.pem" --port 18841 --connections "$CONNS" --hold 1
  measure fanin-tcp delivered_per_s fanin --port 18840 --duration "$DURATION"
  measure fanin-tls delivered_per_s fanin --tls --ca "$WORK/ca.pem" --port 18841 --duration "$DURATION"
  measure fanin-ws delivered_per_s fanin --ws --port 18842 --duration "$DURATION"
  measure fanin-wss delivered_per_s fanin --ws --tls --ca "$WORK/ca.pem" --port 18843 --duration "$DURATION"
done
RSS_OFF=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
stop

start true
for r in $(seq "$ROUNDS"); do
  echo "round $r (authentication on)"
  measure conns-auth connects_per_s conns --port 18840 --connections "$CONNS" --hold 1 --username admin --password bench-pw
  measure conns-auth-tls connects_per_s conns --tls --ca "$WORK/ca.pem" --port 18841 --connections "$CONNS" --hold 1 --username admin --password bench-pw
done
stop

row() { # label name unit baseline-name
  local vals med base ratio
  vals=$(echo "${VALUES[$2]}" | xargs)
  med=$(echo "$vals" | tr ' ' '\n' | median)
  if [ -n "${4:-}" ]; then
    base=$(echo "${VALUES[$4]}" | xargs | tr ' ' '\n' | median)
    ratio=$(awk -v a="$med" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  else
    ratio="1.00"
  fi
  printf '| %s | %.0f %s | %s | %s |\n' "$1" "$med" "$3" "$ratio" "$vals"
}

{
  echo "# mqdb transports and security: $(date -u +%Y-%m-%d)"
  echo
  echo "\`bash benches/transports.sh\` (ROUNDS=$ROUNDS, DURATION=${DURATION}s, CONNS=$CONNS), release build,"
  echo "client and broker on the same $(nproc) cores over loopback. Medians of $ROUNDS rounds;"
  echo "ratio = against plain TCP in the same run. TLS: ECDSA P-256, full handshakes (no resumption)."
  echo
  echo "| workload | median | vs TCP | rounds |"
  echo "|---|---|---|---|"
  row "connections/s, TCP, no auth" conns-tcp "conn/s"
  row "connections/s, TLS, no auth" conns-tls "conn/s" conns-tcp
  row "connections/s, TCP, user + password" conns-auth "conn/s" conns-tcp
  row "connections/s, TLS, user + password" conns-auth-tls "conn/s" conns-tcp
  row "QoS 0 fan-in 4->1, TCP" fanin-tcp "msg/s"
  row "QoS 0 fan-in 4->1, TLS" fanin-tls "msg/s" fanin-tcp
  row "QoS 0 fan-in 4->1, WebSocket" fanin-ws "msg/s" fanin-tcp
  row "QoS 0 fan-in 4->1, WebSocket over TLS" fanin-wss "msg/s" fanin-tcp
  echo
  echo "Peak broker RSS during the unauthenticated rounds: $((RSS_OFF / 1024)) MB."
} > "$OUT"
cat "$OUT"
