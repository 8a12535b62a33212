#!/usr/bin/env bash
# The main job on the embedded default: `qnas optimize` of the shipped ResNet-20 (trained on
# Fashion-MNIST, 93.78 %) under a quarter of its 8-bit cost, on the built-in Fashion-MNIST
# subset (4 000 training, 1 000 test images), with the defaults — which on so few training
# images find the architecture by the fast mode's estimate instead of the search — then
# derive, fine-tune, export; then the per-layer bits of the result. About two minutes on two
# cores. Installs OpenBLAS first if it
# is missing. Writes into .deps/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
go build -o .deps/qnas ./cmd/qnas
mkdir -p .deps/demo
.deps/qnas optimize testdata/models/resnet20_bn.onnx --budget 0.25 --data embedded \
  --mean 0.2860 --std 0.3530 -o .deps/demo/resnet20_q.onnx
.deps/qnas inspect .deps/demo/resnet20_q.onnx
