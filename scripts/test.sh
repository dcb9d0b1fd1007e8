#!/usr/bin/env bash
# The whole test suite: installs what it needs, then formatting, vet, and
# every test (root-only labs included) with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH=/usr/local/go/bin:$PATH

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "not gofmt-ed:"; echo "$unformatted"; exit 1; fi
echo "== go mod tidy"
go mod tidy -diff
echo "== go vet"
go vet ./...
echo "== go test"
CGO_ENABLED=1 go test -race -timeout 40m -count=1 ./... "$@"
