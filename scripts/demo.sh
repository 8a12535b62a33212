#!/usr/bin/env bash
# The main job on the embedded default: the shipped ResNet-8 trained on Fashion-MNIST,
# quantized to 4-bit weights and activations (one epoch of quantization-aware fine-tuning on
# the built-in Fashion-MNIST subset), evaluated and inspected (the search issue turns this into
# `qnas optimize`). Installs OpenBLAS first if it is missing. Writes into .deps/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
go build -o .deps/qnas ./cmd/qnas
mkdir -p .deps/demo
.deps/qnas quantize testdata/models/resnet8_bn.onnx --wbits 4 --abits 4 --epochs 1 --data embedded \
  --mean 0.2860 --std 0.3530 -o .deps/demo/resnet8_w4a4.onnx
.deps/qnas eval .deps/demo/resnet8_w4a4.onnx --data embedded
.deps/qnas inspect .deps/demo/resnet8_w4a4.onnx
