#!/usr/bin/env bash
# Import coverage beyond our fixtures (run by hand, not in CI; needs Debian's python3-torch
# and python3-torchvision): exports torchvision's ImageNet CNNs (random weights, perturbed so
# every layer shows in the logits; 224×224, 299×299 for inception_v3, 384×384 for
# efficientnet_v2_s; opset 13, ConvNeXt also at 17) into a folder, runs `qnas inspect --json`
# on each, runs the engine and ONNX Runtime on the same random batch (internal/engine's
# TestFixturesMatchONNXRuntime with QNAS_EXTRA_MODELS), and prints a Markdown table: the
# exported ops, qnas's MACs against the exporter's forward-hook count and the published
# figures, and the largest logit difference relative to the largest logit.
#   scripts/import_coverage.sh [OUTDIR] [MODEL,MODEL@OPSET,...]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
models=()
[ -n "${2:-}" ] && models=(--models "$2")
go build -o "$out/qnas" ./cmd/qnas
/usr/bin/python3 scripts/torch/torchvision_export.py "$out" "${models[@]}" >&2 || true
for m in "$out"/*.onnx; do
  "$out/qnas" inspect --json "$m" > "${m%.onnx}.qnas.json" 2> "${m%.onnx}.qnas.err" || true
done
QNAS_EXTRA_MODELS="$out" go test ./internal/engine -run 'TestFixturesMatchONNXRuntime$' -count=1 -v \
  > "$out/ort.log" 2>&1 || true
/usr/bin/python3 - "$out" <<'PY'
import json, os, re, sys
out = sys.argv[1]
# Published multiply-accumulates per image (torchvision's model documentation, "GFLOPS"
# column, which counts multiply-adds).
published = {"resnet18": 1.81, "mobilenet_v2": 0.30, "mobilenet_v3_small": 0.06,
             "squeezenet1_1": 0.35, "shufflenet_v2_x1_0": 0.14, "efficientnet_b0": 0.39,
             "convnext_tiny": 4.46, "regnet_x_400mf": 0.41, "regnet_y_400mf": 0.40,
             "mnasnet1_0": 0.31, "mobilenet_v3_large": 0.22, "resnet50": 4.09,
             "resnext50_32x4d": 4.23, "wide_resnet50_2": 11.40, "densenet121": 2.83,
             "googlenet": 1.50, "inception_v3": 5.71, "efficientnet_v2_s": 8.37,
             "alexnet": 0.71, "vgg11_bn": 7.61}
rel = {}
for line in open(os.path.join(out, "ort.log")):
    m = re.search(r"(\S+)\.onnx \(fold BN false\): max \|qnas − ORT\| relative to the largest logit (\S+)", line)
    if m:
        rel[m.group(1)] = float(m.group(2))
summary = json.load(open(os.path.join(out, "summary.json")))
print("| model | opset | exported ops | layers | qnas MACs | hook MACs | published | qnas params | logits vs ORT |")
print("|---|---|---|---|---|---|---|---|---|")
for m in summary["models"]:
    name = m["model"]
    if not m["ok"]:
        print(f"| {name} | {m['opset']} | export failed: {m['error'].splitlines()[0]} | | | | | | |")
        continue
    ops = ", ".join(k for k in m["ops"] if k not in ("Constant", "Identity"))
    try:
        q = json.load(open(os.path.join(out, name + ".qnas.json")))
    except Exception:
        err = open(os.path.join(out, name + ".qnas.err")).read().strip().replace("|", "/")
        print(f"| {name} | {m['opset']} | {ops} | not imported: {err} | | | | | |")
        continue
    macs = f"{q['macs']/1e9:.3f} G" + ("" if q["macs"] == m["macs"] else " (differs)")
    r = f"{rel[name]:.1e}" if name in rel else "not run"
    print(f"| {name} | {m['opset']} | {ops} | {len(q['layers'])} | {macs} | {m['macs']/1e9:.3f} G "
          f"| {published.get(m['torchvision'], 0):.2f} G | {q['params']/1e6:.2f} M | {r} |")
PY
