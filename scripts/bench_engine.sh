#!/usr/bin/env bash
# Training speed of qnas's engine against PyTorch 1.13 CPU (Debian python3-torch) on the same
# network, both on 2 threads (or $THREADS): the CIFAR-style ResNet-20 at 1×28×28, batch 128
# (MODEL=resnet20, the default), or torchvision's MobileNetV2 at 3×224×224, batch 32
# (MODEL=mobilenet_v2: bench_torch.py exports its seeded model and `qnas bench` times that file).
# Run by hand on a quiet machine; prints both JSON results and the ratios.
#   [MODEL=…] [BATCH=…] [STEPS=…] scripts/bench_engine.sh [runs] [mode]
#   (default 3 runs each, alternating; medians reported)
# mode: float (a plain training step, the default) or qat (a fake-quantized w4a4 step; see
# scripts/torch/bench_torch.py for the PyTorch side).
# It also compares the fastest single steps of all runs: other load on a shared machine slows
# PyTorch's OpenMP threads (which spin at barriers) far more than qnas, so the ratio of medians
# measures what a user of such a machine gets and the ratio of fastest steps the engines alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/host.sh
runs="${1:-3}"
mode="${2:-float}"
threads="${THREADS:-2}"
net="${MODEL:-resnet20}"
steps="${STEPS:-20}"
go build -o /tmp/qnas-bench ./cmd/qnas
case "$net" in
  resnet20)
    model=testdata/models/resnet20_bn.onnx
    batch="${BATCH:-128}" ;;
  mobilenet_v2)
    model=/tmp/bench_mobilenet_v2.onnx
    /usr/bin/python3 scripts/torch/bench_torch.py --model mobilenet_v2 --export "$model"
    batch="${BATCH:-32}" ;;
  *)
    echo "bench_engine.sh: MODEL must be resnet20 or mobilenet_v2, not $net" >&2
    exit 2 ;;
esac
q=(); t=()
for i in $(seq "$runs"); do
  q+=("$(/tmp/qnas-bench bench "$model" --mode "$mode" --batch "$batch" --threads "$threads" --steps "$steps" --json)")
  t+=("$(/usr/bin/python3 scripts/torch/bench_torch.py --model "$net" --mode "$mode" --threads "$threads" --batch "$batch" --steps "$steps")")
done
printf '%s\n' "${q[@]}" > /tmp/bench_qnas.jsonl
printf '%s\n' "${t[@]}" > /tmp/bench_torch.jsonl
/usr/bin/python3 - <<'PY'
import json, statistics
q = [json.loads(l) for l in open("/tmp/bench_qnas.jsonl")]
t = [json.loads(l) for l in open("/tmp/bench_torch.jsonl")]
med = lambda xs, k: statistics.median(x[k] for x in xs)
for name, xs in (("qnas", q), ("pytorch", t)):
    print(f"{name:8s} images/s {med(xs,'images_per_sec'):8.1f}  step {med(xs,'step_ms'):7.1f} ms  peak RSS {med(xs,'peak_rss_mb'):6.0f} MiB"
          "   (runs: " + ", ".join("%.0f" % x["images_per_sec"] for x in xs) + ")")
best = lambda xs: min(x['best_step_ms'] for x in xs)
print(f"fastest step: qnas {best(q):.1f} ms, pytorch {best(t):.1f} ms")
print(f"mode {q[0]['mode']}: speed ratio qnas/pytorch {med(q,'images_per_sec')/med(t,'images_per_sec'):.2f}  (medians)")
print(f"speed ratio of the fastest steps {best(t)/best(q):.2f}  (the least disturbed by other load)")
print(f"RSS ratio   qnas/pytorch {med(q,'peak_rss_mb')/med(t,'peak_rss_mb'):.2f}  (target <= 0.8)")
PY
