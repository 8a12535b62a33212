#!/usr/bin/env bash
# Folded against BatchNorm-kept exports of the shipped fixtures, under the same command and
# seed: `qnas quantize --wbits 4 --abits 4 --epochs N` and `qnas optimize --budget 0.25`
# with the defaults. Prints one table row per (model, command): kept and folded accuracy
# with the post-training accuracy in parentheses, per seed, and with several seeds their
# means and the standard deviation of the per-seed differences.
# Data: embedded by default, or DATA=/usr/share/datasets/fashion-mnist.
#   scripts/folded_vs_kept.sh [MODELS] [EPOCHS]      MODELS: resnet8,mbv2,resnet20 (default)
# Settings (environment): SEEDS (default "0"), COMMANDS (default "quantize optimize"),
# JOBS (runs at once, default 1; each gets THREADS threads, default 2/JOBS), OUT (reports).
set -euo pipefail
cd "$(dirname "$0")/.."
models="${1:-resnet8,mbv2,resnet20}"
epochs="${2:-6}"
data="${DATA:-embedded}"
seeds="${SEEDS:-0}"
commands="${COMMANDS:-quantize optimize}"
jobs="${JOBS:-1}"
threads="${THREADS:-$(( jobs > 1 ? 1 : 2 ))}"
out="${OUT:-.deps/folded}"
mkdir -p "$out"
go build -o .deps/qnas ./cmd/qnas

# run FORM CMD SEED: one run, skipped when its report exists.
run() {
  local form="$1" cmd="$2" seed="$3" rep="$out/$1.$2.$3.json" args
  [ -f "$rep" ] && return 0
  if [ "$cmd" = quantize ]; then
    args=(quantize "testdata/models/$form.onnx" --wbits 4 --abits 4 --epochs "$epochs")
  else
    args=(optimize "testdata/models/$form.onnx" --budget 0.25)
  fi
  .deps/qnas "${args[@]}" --data "$data" --mean 0.2860 --std 0.3530 --seed "$seed" --threads "$threads" \
    -o "$out/$form.$cmd.$seed.onnx" --report "$rep.tmp" 2>"$out/$form.$cmd.$seed.log" >/dev/null
  mv "$rep.tmp" "$rep"
}
export -f run
export out epochs data threads
for m in ${models//,/ }; do
  for cmd in $commands; do
    for s in $seeds; do
      printf '%s %s %s\n' "${m}_bn" "$cmd" "$s" "$m" "$cmd" "$s"
    done
  done
done | xargs -P "$jobs" -L 1 bash -c 'run "$@"' _

/usr/bin/env python3 - "$out" "$models" "$commands" "$seeds" <<'PY'
import json, statistics, sys
out, models, commands, seeds = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(), sys.argv[4].split()
def acc(form, cmd, s):
    r = json.load(open(f"{out}/{form}.{cmd}.{s}.json"))
    return 100 * r["accuracy"], 100 * r["ptq_accuracy"]
print("| model | command | seed | kept (post-training) | folded (post-training) | folded − kept |")
print("|---|---|---|---|---|---|")
for m in models:
    for cmd in commands:
        ks, fs = [], []
        for s in seeds:
            (k, kp), (f, fp) = acc(m + "_bn", cmd, s), acc(m, cmd, s)
            ks.append(k); fs.append(f)
            print(f"| {m} | {cmd} | {s} | {k:.2f} ({kp:.2f}) | {f:.2f} ({fp:.2f}) | {f - k:+.2f} |")
        if len(seeds) > 1:
            d = [f - k for f, k in zip(fs, ks)]
            print(f"| {m} | {cmd} | mean of {len(seeds)} | {statistics.mean(ks):.2f} | {statistics.mean(fs):.2f} | "
                  f"{statistics.mean(d):+.2f} ± {statistics.stdev(d):.2f} |")
PY
