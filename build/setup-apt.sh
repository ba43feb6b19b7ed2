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
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo -E apt-get update -q -o DPkg::Lock::Timeout=300
$sudo -E apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}"
