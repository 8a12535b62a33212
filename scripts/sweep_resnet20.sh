#!/usr/bin/env bash
# The acceptance sweep of issue 18: the ResNet-20 fixture over the budgets 0.0625, 0.125 and
# 0.25 of w8a8 BOPs with the uniform baselines, one seed, on Fashion-MNIST; then its
# pareto.png, bits-0.125.png and a screenshot of index.html rendered by headless Chromium
# are copied into docs/sweep/, and the rows printed for docs/results.md.
#
#   scripts/sweep_resnet20.sh [SWEEPDIR]        (default /tmp/qnas-sweep-r20)
#
# LIMIT_TRAIN=N trains every point on N of the 60 000 training images (default: all);
# JOBS (default 2) points run at once, THREADS (default 2) threads in all. Pruning is on
# (--prune): without it the cheapest architecture of the space costs 0.0632 of w8a8, above
# the lowest budget. The sweep continues where it stopped when run again.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/qnas-sweep-r20}
limit=()
[ -n "${LIMIT_TRAIN:-}" ] && limit=(--limit-train "$LIMIT_TRAIN")
bash scripts/deps.sh build >/dev/null
go build -o /tmp/qnas-sweep-bin ./cmd/qnas
start=$(date +%s)
/tmp/qnas-sweep-bin sweep testdata/models/resnet20_bn.onnx --budgets 0.0625,0.125,0.25 --baselines --prune \
  --data /usr/share/datasets/fashion-mnist --mean 0.2860 --std 0.3530 "${limit[@]}" \
  --jobs "${JOBS:-2}" --threads "${THREADS:-2}" -o "$out"
echo "sweep: $(($(date +%s) - start)) s wall"

mkdir -p docs/sweep
cp "$out/pareto.png" docs/sweep/pareto.png
cp "$out/bits-0.125.png" docs/sweep/bits-0.125.png
# Chromium draws the viewport only: a tall one, then the empty bottom cut off.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,6000 \
  --screenshot="$out/index-full.png" "file://$out/index.html" 2>/dev/null
/usr/bin/python3 - "$out/index-full.png" docs/sweep/index.png <<'EOF'
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
w, h = im.size
px = im.load()
bg = px[w - 1, h - 1]
last = h - 1
while last > 0 and all(px[x, last] == bg for x in range(0, w, 4)):
    last -= 1
im.crop((0, 0, w, min(h, last + 24))).save(sys.argv[2], optimize=True)
print("index.png: %dx%d" % (w, min(h, last + 24)))
EOF
/usr/bin/python3 - "$out/sweep.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("float accuracy %.2f %%; %d of %d points" % (100 * r["float_accuracy"], r["finished"], r["points"]))
print("| model | cost ratio | accuracy % |")
print("|---|---|---|")
for row in r["rows"]:
    name = "mixed %g" % row["budget"] if row["kind"] == "mixed" else "uniform w%da%d" % (row["wbits"], row["abits"])
    print("| %s | %.4f | %.2f |" % (name, row["cost_ratio"], 100 * row["accuracy"]))
for b in r["budgets"]:
    d = b.get("mixed_minus_frontier")
    print("budget %g: mixed %.2f %%, frontier %s, difference %s %s" % (b["budget"], 100 * b["accuracy"],
          "%.2f %%" % (100 * b["frontier_at_budget"]) if d is not None else "-", "%+.2f" % (100 * d) if d is not None else "-", b.get("frontier_note", "")))
EOF
