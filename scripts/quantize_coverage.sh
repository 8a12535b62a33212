#!/usr/bin/env bash
# Post-training 8-bit quantization of the torchvision exports that scripts/import_coverage.sh
# wrote into DIR (run by hand, not in CI; the photo folder needs Debian's python3-pil and
# python3-numpy). For each model: `qnas quantize --wbits 8 --abits 8 --epochs 0` on a small
# folder of photo-like PNGs of mixed sizes (made here: 32 train, 32 test images), then the
# export checked against ONNX Runtime (export's TestExtraExportsMatchONNXRuntime with
# QNAS_EXTRA_EXPORTS), and a Markdown table: layers, MatMul layers and MACs quantized against
# those left float, from quantize's report, and the wall time of the quantize run.
#   scripts/quantize_coverage.sh DIR [MODEL,MODEL,...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$1"
q="$dir/quantized"
mkdir -p "$q"
go build -o "$q/qnas" ./cmd/qnas
if [ ! -d "$dir/photos" ]; then
  /usr/bin/python3 - "$dir/photos" <<'PY'
import os, sys
import numpy as np
from PIL import Image
root, rng = sys.argv[1], np.random.default_rng(19)
for split in ("train", "test"):
    for i in range(32):
        c = i % 10
        w, h = (int(v) for v in rng.integers(200, 330, size=2))
        # A colour gradient per class with noise: photo-like statistics, any size.
        y, x = np.mgrid[0:h, 0:w] / max(w, h)
        base = np.stack([np.sin(3 * x + c), np.cos(2 * y - c), np.sin(x + y + c / 3)], -1)
        img = np.clip(127 + 80 * base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        os.makedirs(f"{root}/{split}/c{c}", exist_ok=True)
        Image.fromarray(img).save(f"{root}/{split}/c{c}/{i}.png")
PY
fi
models=()
if [ -n "${2:-}" ]; then
  IFS=, read -ra models <<< "$2"
else
  for m in "$dir"/*.onnx; do models+=("$(basename "${m%.onnx}")"); done
fi
: > "$q/times.txt"
for m in "${models[@]}"; do
  s=$(date +%s)
  if "$q/qnas" quantize "$dir/$m.onnx" --wbits 8 --abits 8 --epochs 0 --data "$dir/photos" --calib 1 --batch 2 \
      --limit-test 2 --report "$q/$m.report.json" -o "$q/$m.q.onnx" > "$q/$m.log" 2>&1; then
    "$q/qnas" inspect --json "$q/$m.q.onnx" > "$q/$m.q.json"
  fi
  echo "$m $(( $(date +%s) - s ))" >> "$q/times.txt"
done
QNAS_EXTRA_EXPORTS="$q" go test ./export -run 'TestExtraExportsMatchONNXRuntime$' -count=1 -v -timeout 60m \
  > "$q/ort.log" 2>&1 || true
/usr/bin/python3 - "$q" <<'PY'
import json, os, re, sys
q = sys.argv[1]
# The first quantized activations against ONNX Runtime, as the test logs them.
probe = {}
for line in open(os.path.join(q, "ort.log")):
    m = re.search(r"(\S+)\.q\.onnx: quantized activation \d+ \(\S+\): (\d+) of (\d+) elements one step apart, (\d+) more", line)
    if m:
        one, n, more = int(m.group(2)), int(m.group(3)), int(m.group(4))
        probe.setdefault(m.group(1), []).append(more == 0 and one <= 0.001 * n)
print("| model | layers quantized | MatMul layers quantized | MACs quantized | MACs left float | quantize wall time | first quantizers vs ORT |")
print("|---|---|---|---|---|---|---|")
for line in open(os.path.join(q, "times.txt")):
    name, secs = line.split()
    try:
        r = json.load(open(os.path.join(q, name + ".report.json")))
        ops = {l["name"]: l["op"] for l in json.load(open(os.path.join(q, name + ".q.json")))["layers"]}
    except Exception:
        err = open(os.path.join(q, name + ".log")).read().strip().splitlines()[-1].replace("|", "/")
        print(f"| {name} | failed: {err} | | | | | |")
        continue
    quantized = {l["name"] for l in r["layers"] if l["abits"] != 32 and 32 not in l["wbits"]}
    mm = [n for n in ops if ops[n] == "MatMul"]
    total = r["quantized_layers"] + r["float_layers"]
    check = "not run" if name not in probe else ("ok" if all(probe[name]) else "differs")
    print(f"| {name} | {r['quantized_layers']} of {total} | {sum(n in quantized for n in mm)} of {len(mm)} "
          f"| {r['quantized_macs']/1e9:.3f} G | {r['float_macs']/1e6:.2f} M | {float(secs):.0f} s | {check} |")
PY
