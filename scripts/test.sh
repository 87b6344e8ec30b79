#!/usr/bin/env bash
# Runs the whole mqdb test suite on a fresh machine: installs what the tests
# need when it is missing, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers the interop tests drive: command -> Debian package.
declare -A peers=([mosquitto_pub]=mosquitto-clients [mosquitto_sub]=mosquitto-clients [python3]=python3 [pip3]=python3-pip)
missing=()
for cmd in "${!peers[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${peers[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing test peers: ${missing[*]}"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2046
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(printf '%s\n' "${missing[@]}" | sort -u)
fi

# paho-mqtt 2.x (Python), the MQTT-over-WebSocket interop peer.
if ! python3 -c 'import paho.mqtt as m, sys; sys.exit(not m.__version__.startswith("2."))' 2>/dev/null; then
  echo "installing test peer: paho-mqtt (Python)"
  python3 -m pip install --quiet 'paho-mqtt>=2,<3' 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages 'paho-mqtt>=2,<3'
fi

# Node.js and npm, for MQTT.js (the tests run `npm ci` in crates/testkit/tests/mqttjs).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing test peers: nodejs npm"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (Rust 1.85 or newer): install it with rustup" >&2
  exit 1
fi

# A one-shot build gains nothing from incremental caches, which cost
# gigabytes of disk; set CARGO_INCREMENTAL=1 to keep them while iterating.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --locked "$@"
