#!/usr/bin/env bash
# Installs what halb's tests and lab need on Debian: the packages listed in
# scripts/debian-packages.txt and the Go modules. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH=/usr/local/go/bin:$PATH
if ! command -v go >/dev/null || ! go version | grep -Eq 'go1\.(2[6-9]|[3-9][0-9])'; then
  echo "halb needs Go 1.26 or newer at /usr/local/go (found: $(go version 2>/dev/null || echo none))" >&2
  exit 1
fi

mapfile -t pkgs < <(grep -Ev '^\s*(#|$)' scripts/debian-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Services some packages start on install are not wanted: the tests start
# their own copies inside network namespaces.
for svc in keepalived nginx haproxy; do
  systemctl is-active --quiet "$svc" 2>/dev/null && systemctl stop "$svc" || true
done
go mod download
# Static analysis, pinned, into .cache/bin (scripts/test.sh runs them from there).
GOBIN="$PWD/.cache/bin" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN="$PWD/.cache/bin" go install github.com/kisielk/errcheck@v1.30.0
