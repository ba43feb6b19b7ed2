#!/usr/bin/env bash
# End-to-end: (1) `onramp serve` driven by headless Chromium through
# playwright-core; (2) the real desktop binary under Xvfb opens a window.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin/onramp}
OUT=build/e2e
mkdir -p "$OUT"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }

# --- 1. web face in Chromium -------------------------------------------------
port=$(free_port)
"$BIN" serve --listen "127.0.0.1:$port" --data "$work/data" >"$OUT/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { echo "e2e: onramp serve did not come up"; cat "$OUT/serve.log"; exit 1; }
version=$("$BIN" version | head -1 | cut -d' ' -f2)
(cd frontend && ONRAMP_URL="http://127.0.0.1:$port" ONRAMP_EXPECT_DATADIR="$work/data" \
  ONRAMP_EXPECT_VERSION="$version" ONRAMP_SCREENSHOT="$PWD/../$OUT/shell.png" node e2e/shell.e2e.mjs)
echo "e2e: web UI ok, screenshot $OUT/shell.png"

# --- 2. desktop window under Xvfb ------------------------------------------
display=":$((90 + RANDOM % 400))"
Xvfb "$display" -screen 0 1024x600x24 -nolisten tcp >"$OUT/xvfb.log" 2>&1 &
pids+=($!)
sleep 1
DISPLAY=$display "$BIN" --data "$work/desktop" >"$OUT/desktop.log" 2>&1 &
dpid=$!
pids+=($dpid)
found=""
for _ in $(seq 1 150); do
  if DISPLAY=$display xwininfo -root -tree 2>/dev/null | grep -q '"Onramp"'; then found=1; break; fi
  kill -0 "$dpid" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$found" ]; then
  echo "e2e: the desktop window did not appear"; cat "$OUT/desktop.log"; exit 1
fi
DISPLAY=$display xwininfo -root -tree | grep '"Onramp"' | head -1
echo "e2e: desktop window ok"
