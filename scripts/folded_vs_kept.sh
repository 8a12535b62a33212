#!/usr/bin/env bash
# Folded against BatchNorm-kept exports of the shipped fixtures, under the same command and
# seed: `qnas quantize --wbits 4 --abits 4 --epochs N` and `qnas optimize --budget 0.25`
# with the defaults. Prints one table row per (model, command): kept and folded accuracy,
# and post-training accuracy. Data: embedded by default, or DATA=/usr/share/datasets/fashion-mnist.
#   scripts/folded_vs_kept.sh [MODELS] [EPOCHS]      MODELS: resnet8,mbv2,resnet20 (default)
set -euo pipefail
cd "$(dirname "$0")/.."
models="${1:-resnet8,mbv2,resnet20}"
epochs="${2:-6}"
data="${DATA:-embedded}"
seed="${SEED:-0}"
out="${OUT:-.deps/folded}"
mkdir -p "$out"
go build -o .deps/qnas ./cmd/qnas
acc() { /usr/bin/env python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('%.2f %.2f' % (100*r['accuracy'], 100*r['ptq_accuracy']))" "$1"; }
echo "| model | command | kept (ptq) | folded (ptq) | folded − kept |"
echo "|---|---|---|---|---|"
for m in ${models//,/ }; do
  for cmd in quantize optimize; do
    row=()
    for form in "${m}_bn" "$m"; do
      rep="$out/$form.$cmd.json"
      if [ ! -f "$rep" ]; then
        if [ "$cmd" = quantize ]; then
          args=(quantize "testdata/models/$form.onnx" --wbits 4 --abits 4 --epochs "$epochs")
        else
          args=(optimize "testdata/models/$form.onnx" --budget 0.25)
        fi
        .deps/qnas "${args[@]}" --data "$data" --mean 0.2860 --std 0.3530 --seed "$seed" \
          -o "$out/$form.$cmd.onnx" --report "$rep" 2>"$out/$form.$cmd.log" >/dev/null
      fi
      row+=("$(acc "$rep")")
    done
    read -r k kp <<<"${row[0]}"; read -r f fp <<<"${row[1]}"
    printf "| %s | %s | %s (%s) | %s (%s) | %+.2f |\n" "$m" "$cmd" "$k" "$kp" "$f" "$fp" "$(echo "$f - $k" | bc -l)"
  done
done
