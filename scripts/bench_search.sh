#!/usr/bin/env bash
# Speed of the search against qnas's own QAT step and against a PyTorch 1.13 CPU search
# built the same way (composite weights and inputs, one convolution per layer; see
# scripts/torch/bench_torch.py --mode search), on CIFAR-style ResNet-20 at 1×28×28, batch 128,
# 2 threads (or $THREADS). Run by hand on a quiet machine.
#   scripts/bench_search.sh [runs]   (default 3 runs of each, alternating; medians reported)
# A search iteration is a weight step on one batch plus an architecture step on another;
# images_per_sec = batch / time of one iteration (one step for QAT).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/host.sh
runs="${1:-3}"
threads="${THREADS:-2}"
go build -o /tmp/qnas-bench ./cmd/qnas
model=testdata/models/resnet20_bn.onnx
s=(); q=(); t=()
for i in $(seq "$runs"); do
  s+=("$(/tmp/qnas-bench bench "$model" --mode search --batch 128 --threads "$threads" --steps 10 --json)")
  q+=("$(/tmp/qnas-bench bench "$model" --mode qat --batch 128 --threads "$threads" --steps 20 --json)")
  t+=("$(/usr/bin/python3 scripts/torch/bench_torch.py --mode search --threads "$threads" --batch 128 --steps 6 --warmup 2)")
done
printf '%s\n' "${s[@]}" > /tmp/bench_search_qnas.jsonl
printf '%s\n' "${q[@]}" > /tmp/bench_qat_qnas.jsonl
printf '%s\n' "${t[@]}" > /tmp/bench_search_torch.jsonl
/usr/bin/python3 - <<'PY'
import json, statistics
load = lambda p: [json.loads(l) for l in open(p)]
s, q, t = load("/tmp/bench_search_qnas.jsonl"), load("/tmp/bench_qat_qnas.jsonl"), load("/tmp/bench_search_torch.jsonl")
med = lambda xs, k: statistics.median(x[k] for x in xs)
for name, xs in (("qnas search", s), ("qnas qat", q), ("pytorch search", t)):
    print(f"{name:15s} images/s {med(xs,'images_per_sec'):7.1f}  step {med(xs,'step_ms'):7.1f} ms  best {min(x['best_step_ms'] for x in xs):7.1f} ms  peak RSS {med(xs,'peak_rss_mb'):5.0f} MiB"
          "   (runs: " + ", ".join("%.0f" % x["images_per_sec"] for x in xs) + ")")
print(f"search iteration / QAT step      {med(s,'step_ms')/med(q,'step_ms'):.2f}  (target <= 3)")
print(f"qnas / PyTorch search img/s      {med(s,'images_per_sec')/med(t,'images_per_sec'):.2f}  (target >= 3; fastest iterations: {min(x['best_step_ms'] for x in t)/min(x['best_step_ms'] for x in s):.2f})")
print(f"peak RSS qnas / PyTorch search   {med(s,'peak_rss_mb')/med(t,'peak_rss_mb'):.2f}  (target <= 0.8)")
PY
