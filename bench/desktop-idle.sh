#!/usr/bin/env bash
# Idle memory and CPU of the desktop app, with its window open and with only the tray.
#
#   bench/desktop-idle.sh [path/to/chatgowa]     (default: target/release/chatgowa)
#
# Runs the app under a virtual X server with a throw-away HOME, lets it settle, then reads, for the app and its
# WebKit helper processes: PSS and RSS (/proc/<pid>/smaps_rollup) and CPU time used over a 60 s idle minute
# (/proc/<pid>/stat). Needs: xvfb, dbus-x11 (scripts/test installs them). Prints a table; writes
# bench/results/desktop-idle.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath -m "${1:-target/release/chatgowa}")"
settle="${SETTLE_SECONDS:-20}"
window="${IDLE_SECONDS:-60}"
[ -x "$bin" ] || { echo "build it first: cargo build --release --features custom-protocol" >&2; exit 1; }
mkdir -p bench/results
tick=$(getconf CLK_TCK)

# PIDs of the app and every descendant (WebKitWebProcess, WebKitNetworkProcess, …).
tree() {
  local pid=$1
  echo "$pid"
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do tree "$child"; done
}
kib() { awk -v k="$1" '$1 == k":" { print $2 }' /proc/"$2"/smaps_rollup 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' /proc/"$1"/stat 2>/dev/null || echo 0; }

measure() { # label, extra args
  local label=$1; shift
  local home; home=$(mktemp -d)
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  HOME="$home" PORT="$port" CHATGOWA_BIND=127.0.0.1 RUST_LOG=warn \
    xvfb-run -a dbus-run-session -- "$bin" "$@" >/dev/null 2>&1 &
  local wrapper=$!
  local app=""
  for _ in $(seq 100); do
    app=$(pgrep -n -f "^$bin" || true)
    [ -n "$app" ] && curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  sleep "$settle"
  local pids; pids=$(tree "$app")
  local before=0 after=0 pss=0 rss=0 n=0
  for p in $pids; do before=$((before + $(cpu_ticks "$p"))); done
  sleep "$window"
  for p in $pids; do
    after=$((after + $(cpu_ticks "$p")))
    pss=$((pss + $(kib Pss "$p"))); rss=$((rss + $(kib Rss "$p"))); n=$((n + 1))
  done
  local cpu_ms=$(( (after - before) * 1000 / tick ))
  printf '%-22s %4d procs  PSS %6.1f MiB  RSS %6.1f MiB  CPU %5d ms in %ds\n' \
    "$label" "$n" "$(echo "$pss/1024" | bc -l)" "$(echo "$rss/1024" | bc -l)" "$cpu_ms" "$window"
  printf '{"case":"%s","processes":%d,"pss_kib":%d,"rss_kib":%d,"cpu_ms":%d,"seconds":%d}' \
    "$label" "$n" "$pss" "$rss" "$cpu_ms" "$window" >> bench/results/desktop-idle.json.tmp
  kill "$app" 2>/dev/null || true
  wait "$wrapper" 2>/dev/null || true
  rm -rf "$home"
}

rm -f bench/results/desktop-idle.json.tmp
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
measure "window open" && echo "," >> bench/results/desktop-idle.json.tmp
measure "tray only (--minimized)" --minimized
{ echo "["; cat bench/results/desktop-idle.json.tmp; echo "]"; } > bench/results/desktop-idle.json
rm -f bench/results/desktop-idle.json.tmp
