#!/usr/bin/env bash
# The fast mode on ImageNet-size models and a photo folder (run by hand, not in CI; needs
# Debian's python3-torch, python3-torchvision and python3-pil, and Fashion-MNIST in
# /usr/share/datasets/fashion-mnist):
#   1. writes a photo folder of $TRAIN training and $TEST test images of mixed sizes
#      (160–400 px per side, PNG and JPEG, 10 class folders) made from Fashion-MNIST with
#      scripts/fashion_photos.py (seeded, so the same every time);
#   2. exports torchvision's resnet18 and mobilenet_v2 (random weights, opset 13, 1×3×224×224,
#      BatchNorm folded by the exporter) with scripts/torch/torchvision_export.py, the
#      classifier replaced by a linear probe of the training photos (--probe: 10 outputs whose
#      logits depend on the image; a random network's 1 000 logits pick one or two classes
#      for every image, which would make the agreement check below say little);
#   3. runs, under /usr/bin/time -v, per model:
#        qnas optimize MODEL --method sensitivity --ft-epochs 0 --budget 0.25 --batch $BATCH
#          --data PHOTOS --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 -o OUT --report REPORT
#      and prints its wall time, peak RSS and the report's phases;
#   4. quantizes each model to uniform w8a8 as well (qnas quantize --epochs 0) and checks, for
#      both, that ONNX Runtime, at every optimization level (and the QONNX form at "all"),
#      predicts what qnas predicts on the test photos (export's TestExtraExportsMatchONNXRuntime
#      with QNAS_EXTRA_EXPORTS and QNAS_EXTRA_DATA);
#   5. repeats each optimize with --sensitivity-images N for N in $GROWTH (the full run reads
#      all $TRAIN), to show how the time grows with the images the estimate reads.
#   scripts/sensitivity_224.sh [WORKDIR]
# Settings (environment): MODELS (default "resnet18 mobilenet_v2"), TRAIN (2000), TEST (300),
# BATCH (32), THREADS (2), GROWTH ("500 1000"; empty: skip step 5), FLAGS (more optimize
# flags, e.g. "--calib 2" for a quick trial).
# Everything is written under WORKDIR (default: a new temporary folder); exports and photos
# already there are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
models="${MODELS:-resnet18 mobilenet_v2}"
train="${TRAIN:-2000}"
test="${TEST:-300}"
batch="${BATCH:-32}"
threads="${THREADS:-2}"
growth="${GROWTH-500 1000}"
read -r -a flags <<< "${FLAGS:-}"
mkdir -p "$work/out" "$work/runs"
work="$(cd "$work" && pwd)"
photos="$work/photos_${train}_${test}"
mkdir -p "$work/models_${train}"

go build -o "$work/qnas" ./cmd/qnas
if [ ! -d "$photos" ]; then
  /usr/bin/python3 scripts/fashion_photos.py "$photos.tmp" --train "$train" --test "$test" >&2
  mv "$photos.tmp" "$photos"
fi
for m in $models; do
  if [ ! -f "$work/models_${train}/$m.onnx" ]; then
    /usr/bin/python3 scripts/torch/torchvision_export.py "$work/models_${train}" --models "$m" --threads "$threads" \
      --probe "$photos" >&2
  fi
done

# run NAME MODEL OUT [FLAGS...]: one timed optimize; its log, report and time -v output go to
# $work/runs/NAME.*.
run() {
  local name="$1" model="$2" out="$3"
  shift 3
  echo "== $name: qnas optimize $(basename "$model") --method sensitivity --ft-epochs 0 --budget 0.25 --batch $batch --threads $threads ${flags[*]} $*" >&2
  /usr/bin/time -v -o "$work/runs/$name.time" "$work/qnas" optimize "$model" --method sensitivity \
    --ft-epochs 0 --budget 0.25 --batch "$batch" --threads "$threads" --data "$photos" \
    --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 -o "$out" --report "$work/runs/$name.json" "${flags[@]}" "$@" \
    > "$work/runs/$name.log" 2> "$work/runs/$name.err"
  tail -2 "$work/runs/$name.log" >&2
}

for m in $models; do
  run "$m" "$work/models_${train}/$m.onnx" "$work/out/$m.onnx"
  # The same model at uniform w8a8 (post-training), for the agreement check: how much of a
  # disagreement comes from the low bits the budget asks for.
  /usr/bin/time -v -o "$work/runs/${m}_w8a8.time" "$work/qnas" quantize "$work/models_${train}/$m.onnx" \
    --wbits 8 --abits 8 --epochs 0 --batch "$batch" --threads "$threads" --data "$photos" \
    --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 -o "$work/out/${m}_w8a8.onnx" "${flags[@]}" \
    > "$work/runs/${m}_w8a8.log" 2> "$work/runs/${m}_w8a8.err"
  tail -2 "$work/runs/${m}_w8a8.log" >&2
done
QNAS_EXTRA_EXPORTS="$work/out" QNAS_EXTRA_DATA="$photos" \
  go test ./export -run 'TestExtraExportsMatchONNXRuntime$' -count=1 -v -timeout 60m > "$work/ort.log" 2>&1 \
  && ort=passed || ort=FAILED
mkdir -p "$work/growth"
for n in $growth; do
  for m in $models; do
    run "${m}_images$n" "$work/models_${train}/$m.onnx" "$work/growth/${m}_images$n.onnx" --sensitivity-images "$n"
  done
done

/usr/bin/python3 - "$work" "$ort" "$models" "$growth" <<'PY'
import json, os, re, sys
work, ort, models, growth = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()

def run(name):
    t = open(os.path.join(work, "runs", name + ".time")).read()
    h, m, s = (["0"] + re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t).group(1).split(":"))[-3:]
    wall = int(h) * 3600 + int(m) * 60 + float(s)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024 / 1024
    rep = json.load(open(os.path.join(work, "runs", name + ".json")))
    return wall, rss, rep

print("| model | wall | peak RSS | sensitivity images | " + " | ".join(
    ["calibrate", "sensitivity", "derive", "evaluate float", "PTQ (calibrate, BN statistics)",
     "evaluate quantized", "export", "other (load, BN restore)"]) + " | cost ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
names = [(m, m) for m in models] + [(f"{m}_images{n}", m) for n in growth for m in models]
for name, m in names:
    wall, rss, rep = run(name)
    ph = {p["name"]: p["seconds"] for p in rep["phases"]}
    cols = [ph.get(k, 0) for k in ["calibrate", "sensitivity", "derive", "evaluate float",
                                   "fine-tune", "evaluate quantized", "export"]]
    cells = " | ".join(f"{c:.0f} s" for c in cols + [wall - sum(ph.values())])
    print(f"| {m} | {wall:.0f} s | {rss:.2f} GiB | {rep['sensitivity']['images']} | {cells} "
          f"| {rep['cost_ratio']:.4f} |")
print()
print(f"ONNX Runtime agreement ({ort}; {os.path.join(work, 'ort.log')}):")
for line in open(os.path.join(work, "ort.log")):
    if "agreement" in line or "FAIL" in line or "Error" in line:
        print("  " + line.strip())
PY
