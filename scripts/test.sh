#!/usr/bin/env bash
# The test suite: installs what the tests need (scripts/deps.sh), then vets and tests the
# default (OpenBLAS, cgo) build, the packages that run goroutines over shared buffers under
# the race detector, and the pure-Go build. Missing test data fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
export QNAS_REQUIRE_TESTDATA=1
go vet ./...
go test -count=1 -timeout 20m ./...
go test -count=1 -race ./internal/kernels ./internal/engine
# The pure-Go build is about 3× slower: its cmd/qnas package alone took 882 s on a quiet
# 2-core machine (2026-12-05) and 1 989 s beside two training runs (2026-12-07), too close
# to 40 minutes for a timeout that is only there to stop a hang.
CGO_ENABLED=0 go test -count=1 -timeout 55m -tags purego ./...
