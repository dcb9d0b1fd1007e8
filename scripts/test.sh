#!/usr/bin/env bash
# The whole test suite: installs what it needs, then formatting, vet,
# static analysis, a bounded run of every fuzz target, and every test
# (root-only labs included) with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH=/usr/local/go/bin:$PWD/.cache/bin:$PATH

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "not gofmt-ed:"; echo "$unformatted"; exit 1; fi
echo "== go mod tidy"
go mod tidy -diff
echo "== go vet"
go vet ./...
echo "== staticcheck"
staticcheck ./...
echo "== errcheck"
errcheck -ignoretests -exclude .errcheck-excludes ./...
fuzztime=${FUZZTIME:-10s}
echo "== fuzz (each target for $fuzztime)"
# `go test -list` prints a package's targets, then its "ok" line.
go test -list '^Fuzz' ./... | awk '/^Fuzz/ { t[n++] = $1 } /^ok/ { for (i = 0; i < n; i++) print $2, t[i]; n = 0 }' |
  while read -r pkg target; do
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" </dev/null
  done
echo "== go test"
CGO_ENABLED=1 go test -race -timeout 40m -count=1 ./... "$@"
