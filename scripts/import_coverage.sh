#!/usr/bin/env bash
# Import coverage beyond our fixtures (run by hand, not in CI; needs Debian's python3-torch
# and python3-torchvision): exports torchvision's resnet18, mobilenet_v2, mobilenet_v3_small,
# squeezenet1_1, shufflenet_v2_x1_0 and efficientnet_b0 (random weights, 224×224, opset 13)
# into a temporary folder, runs `qnas inspect --json` on each, and prints a Markdown table of
# qnas's MACs against the exporter's forward-hook count and the published figures.
#   scripts/import_coverage.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
go build -o "$out/qnas" ./cmd/qnas
/usr/bin/python3 scripts/torch/torchvision_export.py "$out" >&2
for m in "$out"/*.onnx; do
  "$out/qnas" inspect --json "$m" > "${m%.onnx}.qnas.json"
done
/usr/bin/python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
# Published multiply-accumulates per 224x224 image (torchvision's model documentation,
# "GFLOPS" column, which counts multiply-adds).
published = {"resnet18": 1.81e9, "mobilenet_v2": 0.30e9, "mobilenet_v3_small": 0.06e9,
             "squeezenet1_1": 0.35e9, "shufflenet_v2_x1_0": 0.14e9, "efficientnet_b0": 0.39e9}
summary = json.load(open(os.path.join(out, "summary.json")))
print("| model | imports | layers | qnas MACs | hook MACs | published | qnas params |")
print("|---|---|---|---|---|---|---|")
for m in summary["models"]:
    name = m["model"]
    try:
        q = json.load(open(os.path.join(out, name + ".qnas.json")))
    except Exception as e:
        print(f"| {name} | no: {e} | | | | | |")
        continue
    ok = "yes" if q["macs"] == m["macs"] else "yes (MACs differ)"
    print(f"| {name} | {ok} | {len(q['layers'])} | {q['macs']/1e9:.3f} G | {m['macs']/1e9:.3f} G "
          f"| {published.get(name, 0)/1e9:.2f} G | {q['params']/1e6:.2f} M |")
PY
