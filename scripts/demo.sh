#!/usr/bin/env bash
# halb's main job, shown on one machine: installs what it needs, builds
# halb, and runs `halb lab demo` — two halb load balancers in front of a
# web farm (nginx, vsftpd), all in network namespaces, under steady client
# traffic, through a backend crash and a load balancer's death — then
# prints the summary table and removes the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH=/usr/local/go/bin:$PATH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== building halb"
go build -o "$work/halb" ./cmd/halb
"$work/halb" version
"$work/halb" validate examples/*.yaml && echo "examples/*.yaml: valid"
echo "== halb lab demo"
"$work/halb" lab demo --dir "$work/lab" "$@"
