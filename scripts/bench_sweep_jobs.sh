#!/usr/bin/env bash
# Wall time of a sweep of four short points (resnet8_bn, budgets 0.125 and 0.25, two seeds,
# one search and one fine-tuning epoch on 1 500 embedded images) with --jobs 1 and --jobs 2,
# 2 threads in all, alternating REPS times (default 3). Run it on a quiet machine: under
# other load the scheduler, not the sweep, decides what --jobs buys (docs/cluster.md).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o /tmp/qnas-bench-sweep ./cmd/qnas
work=$(mktemp -d /tmp/qnas-jobs.XXXXXX)
for rep in $(seq "${REPS:-3}"); do
  for j in 2 1; do
    /usr/bin/time -f "rep $rep, --jobs $j: wall %e s, user %U s, sys %S s" -o "$work/time" \
      /tmp/qnas-bench-sweep sweep testdata/models/resnet8_bn.onnx --budgets 0.125,0.25 --seeds 2 \
      --data embedded --mean 0.2860 --std 0.3530 --limit-train 1500 --method search --search-epochs 1 --ft-epochs 1 \
      --threads 2 --jobs "$j" -o "$work/j$j-r$rep" >"$work/j$j-r$rep.out" 2>&1
    echo "$(cat "$work/time"); load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
rm -rf "$work"
