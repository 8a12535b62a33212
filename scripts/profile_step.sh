#!/usr/bin/env bash
# Where a training step's time goes on this host, for comparing CPU families (run by hand on
# a quiet machine): the host line, the step timed per op type on one thread and on two
# (`qnas bench --ops`), and, when perf is installed, the hottest functions of the two-thread
# step. The speed ratios against PyTorch in docs/results.md differ between the AMD and Intel
# hosts these machines come as; this is what to run first on a host of the other family.
#   [MODEL=testdata/models/resnet20_bn.onnx] [MODE=float|qat|search] [BATCH=128] scripts/profile_step.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/host.sh
model="${MODEL:-testdata/models/resnet20_bn.onnx}"
mode="${MODE:-float}"
batch="${BATCH:-128}"
go build -o /tmp/qnas-profile ./cmd/qnas
for t in 1 2; do
  /tmp/qnas-profile bench "$model" --mode "$mode" --batch "$batch" --threads "$t" --steps 20 --ops
done
if command -v perf >/dev/null; then
  perf record -q -o /tmp/qnas-profile.perf -- /tmp/qnas-profile bench "$model" --mode "$mode" --batch "$batch" --threads 2 --steps 40 >/dev/null 2>&1
  echo "hottest functions, two threads (perf record):"
  perf report -i /tmp/qnas-profile.perf --no-children --sort symbol 2>/dev/null | grep -v '^#' | grep '%' | head -25 |
    sed 's/github.com\/qnas\/qnas\///; s/ *- *- *$//'
else
  echo "perf is not installed: no function profile (apt-get install linux-perf)"
fi
