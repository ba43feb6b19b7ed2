#!/usr/bin/env bash
# make soak: every fuzz target in the repository for a fixed budget each
# (FUZZTIME, default 60s; the seed corpus lives in each package's
# testdata/fuzz, and go writes any failing input there), then the long
# form of the reliability suite (ONRAMP_SOAK=1). Needs root for the
# reliability part (it skips without).
#   FUZZTIME=30s build/soak.sh
# SOAK_FUZZ_ONLY=1 stops after the fuzz targets.
# SOAK_KEEP_CORPUS=1 copies the inputs the fuzzer found interesting from
# the Go cache into testdata/fuzz/<Target>/ so later runs start from them.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
fail=0
cache=$($GO env GOCACHE)/fuzz

targets=$($GO test -list '^Fuzz' ./... 2>/dev/null | awk '
	/^Fuzz/ { names[++n] = $1; next }
	/^ok/   { for (i = 1; i <= n; i++) print $2, names[i]; n = 0 }')
if [[ -z "$targets" ]]; then
	echo "soak: no fuzz targets found (go test -list '^Fuzz' ./...)" >&2
	exit 1
fi
echo "soak: fuzz targets ($FUZZTIME each):"
echo "$targets" | sed 's/^/  /'
while read -r pkg name; do
	echo "== $pkg $name"
	dir=$($GO list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$name
	before=$(ls "$dir" 2>/dev/null | wc -l)
	log=$(mktemp)
	if ! $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1 | tee "$log"; then
		# Go 1.26's fuzz coordinator can fail a duration run at its deadline
		# with "context deadline exceeded" and no input (go.dev/issue/75804):
		# that is not a finding. Anything else, or a new input, is.
		after=$(ls "$dir" 2>/dev/null | wc -l)
		if [[ $after == "$before" ]] && grep -q '^    context deadline exceeded$' "$log"; then
			echo "soak: $pkg $name: Go's fuzz deadline race (go.dev/issue/75804), no failing input: not counted" >&2
		else
			echo "soak: $pkg $name FAILED (the failing input is under $dir)" >&2
			fail=1
		fi
	fi
	rm -f "$log"
	if [[ "${SOAK_KEEP_CORPUS:-0}" == 1 && -d "$cache/$pkg/$name" ]]; then
		mkdir -p "$dir" && cp -n "$cache/$pkg/$name"/* "$dir"/ 2>/dev/null || true
	fi
done <<< "$targets"

if [[ "${SOAK_FUZZ_ONLY:-0}" == 1 ]]; then
	exit $fail
fi
echo "== reliability suite, long form"
if ! ONRAMP_SOAK=1 $GO test -race -count=1 -timeout 60m -v ./netboot/reliability/; then
	fail=1
fi
exit $fail
