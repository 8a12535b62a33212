#!/usr/bin/env bash
# The main job on the embedded default: `qnas inspect` and `qnas eval` of the shipped
# ResNet-8 trained on Fashion-MNIST, on the built-in Fashion-MNIST subset (the search issue
# turns this into `qnas optimize`). Installs OpenBLAS first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
go build -o .deps/qnas ./cmd/qnas
.deps/qnas inspect testdata/models/resnet8.onnx
.deps/qnas eval testdata/models/resnet8.onnx --data embedded --mean 0.2860 --std 0.3530
