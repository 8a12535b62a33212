#!/usr/bin/env bash
# Installs what qnas needs, skipping what is already there. Needs root (or sudo) for apt;
# safe to run again.
#   scripts/deps.sh build   Debian libopenblas-dev (the default BLAS; cgo links it) and the C
#                           toolchain cgo and the race detector need (gcc, libc6-dev)
#   scripts/deps.sh test    the above, plus what the tests use:
#     Debian: libonnx-testdata (ONNX conformance models), dataset-fashion-mnist (full data
#             set), python3-onnx (the ONNX checker)
#     npm:    onnxruntime-node@1.30.0, whose libonnxruntime.so.1 validates our numerics
set -euo pipefail
mode="${1:-test}"
case "$mode" in build|test) ;; *) echo "usage: scripts/deps.sh [build|test]" >&2; exit 2;; esac

apt_pkgs=(gcc libc6-dev libopenblas-dev)
[ "$mode" = test ] && apt_pkgs+=(libonnx-testdata dataset-fashion-mnist python3-onnx)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "deps: installing ${missing[*]}"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "$mode" = build ] && exit 0

# ONNX Runtime for validation. Its postinstall would download binaries; skip it (the package
# already ships the CPU library).
ort_dir="${QNAS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qnas}/onnxruntime-node@1.30.0"
ort_lib="$ort_dir/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1"
if [ ! -f "$ort_lib" ]; then
  echo "deps: installing onnxruntime-node@1.30.0 into $ort_dir"
  mkdir -p "$ort_dir"
  (cd "$ort_dir" && [ -f package.json ] || echo '{"private":true}' > package.json)
  (cd "$ort_dir" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --silent onnxruntime-node@1.30.0 >/dev/null)
fi
[ -f "$ort_lib" ] || { echo "deps: $ort_lib missing after install" >&2; exit 1; }
echo "deps: ok (ONNX Runtime: $ort_lib)"
