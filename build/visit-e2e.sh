#!/usr/bin/env bash
# The whole visit in a real browser against the virtual lab: `onramp serve`
# (root, fresh data dir, its own lab namespace ovi-<pid>) driven by headless
# Chromium through frontend/e2e/visit.e2e.mjs. Takes ~10 minutes on 2 cores
# (TCG). Skips (exit 0) without root, QEMU, OVMF, swtpm, Chromium or age.
#
#   BIN=build/bin/onramp TALOSSIM=build/bin/talossim build/visit-e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin/onramp}
TALOSSIM=${TALOSSIM:-$(dirname "$BIN")/talossim}
CACHE=${ONRAMP_LAB_CACHE:-$PWD/build/lab-cache}
OUT=${OUT:-build/e2e}

skip() { echo "visit-e2e: SKIP: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (the virtual lab creates a network namespace and taps)"
for c in qemu-system-x86_64 swtpm chromium age age-keygen ip curl node; do
  command -v "$c" >/dev/null || skip "$c not installed"
done
[ -e /usr/share/OVMF/OVMF_CODE_4M.secboot.fd ] || skip "ovmf not installed"
[ -x "$BIN" ] || { echo "visit-e2e: no onramp binary at $BIN (make build)"; exit 1; }
[ -x "$TALOSSIM" ] || { echo "visit-e2e: no talossim at $TALOSSIM (CGO_ENABLED=0 go build -o $TALOSSIM ./lab/sim/cmd/talossim)"; exit 1; }

mkdir -p "$OUT" "$CACHE"
rm -f "$OUT"/visit-*
OUT=$(cd "$OUT" && pwd)
work=$(mktemp -d)
ns="ovi-$$"
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)))
url="http://127.0.0.1:$port"
spid=""
npid=""
cleanup() {
  rc=$?
  if [ -n "$npid" ] && kill -0 "$npid" 2>/dev/null; then
    # The browser run screenshots the page and stops the lab on TERM.
    kill -TERM "$npid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$npid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$npid" 2>/dev/null || true
  fi
  if [ -n "$spid" ] && kill -0 "$spid" 2>/dev/null; then
    # The lab first, through the app (it stops QEMU, swtpm and the netns) ...
    curl -fsS -m 60 -X POST -H 'content-type: application/json' -d '[]' "$url/api/call/Lab.Down" >/dev/null 2>&1 || true
    kill "$spid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$spid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$spid" 2>/dev/null || true
  fi
  # ... then make sure: no namespace of this run outlives it.
  if ip netns list | grep -qw "$ns"; then
    echo "visit-e2e: namespace $ns still there after Lab.Down: removing it"
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns delete "$ns" 2>/dev/null || true
    rc=1
  fi
  if ip netns list | grep -qw "$ns"; then echo "visit-e2e: namespace $ns left behind"; rc=1; fi
  others=$(ip netns list | grep -o '^ovi-[0-9]*' || true)
  [ -z "$others" ] || echo "visit-e2e: note: other ovi namespaces exist (another run?): $others"
  [ "$rc" != 0 ] || echo "visit-e2e: lab down, server stopped, no $ns namespace left"
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
"$BIN" serve --listen "127.0.0.1:$port" --data "$work/data" \
  --lab-netns "$ns" --lab-cache "$CACHE" --lab-simulator "$(realpath "$TALOSSIM")" >"$OUT/visit-serve.log" 2>&1 &
spid=$!
for _ in $(seq 1 100); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$url/healthz" >/dev/null || { echo "visit-e2e: onramp serve did not come up"; cat "$OUT/visit-serve.log"; exit 1; }
echo "visit-e2e: onramp serve on $url, data $work/data, lab netns $ns"
# In the background and waited for, so a TERM/INT to this script runs the
# cleanup at once (bash defers traps while a foreground child runs).
(cd frontend && ONRAMP_URL="$url" ONRAMP_OUT="$OUT" exec node e2e/visit.e2e.mjs) &
npid=$!
wait "$npid"
npid=""
echo "visit-e2e: ok in $(( $(date +%s) - start ))s; screenshots $OUT/visit-*.png, report $OUT/visit-report.html"
