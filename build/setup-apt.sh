#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are missing.
# Idempotent: with everything present it only queries dpkg.
set -euo pipefail
missing=()
for p in "$@"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
# As root apt-get runs directly; otherwise through sudo, keeping the
# environment (DEBIAN_FRONTEND). An array, so that an empty prefix is no word.
run=()
[ "$(id -u)" = 0 ] || run=(sudo -E)
export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get update -q -o DPkg::Lock::Timeout=300
"${run[@]}" apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}"
