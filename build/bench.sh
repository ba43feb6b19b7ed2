#!/usr/bin/env bash
# make bench: Onramp against Kea (perfdhcp), tftpd-hpa and nginx, all inside
# network namespaces the benchmark creates and removes (names obb*, or
# -netns-prefix).
# Table on stdout, JSON in build/bench/latest.json. Needs root.
#   build/bench.sh [-quick] [-only dhcp,tftp,http,rack] [-onramp PATH] [-reps N] [-netns-prefix obb]
# Without -onramp it uses build/bin/onramp when present, else builds one.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
args=("$@")
if [[ " ${args[*]} " != *" -onramp "* && -x build/bin/onramp ]]; then
	args+=(-onramp build/bin/onramp)
fi
mkdir -p build/bench
$GO build -o build/bench/bench ./netboot/benchmark/cmd/bench
if [[ $EUID -ne 0 ]]; then
	exec sudo build/bench/bench "${args[@]}"
fi
exec build/bench/bench "${args[@]}"
