#!/usr/bin/env bash
# The main job on the embedded default: for now, `qnas inspect` on the shipped ResNet-8
# trained on Fashion-MNIST (the search issue turns this into `qnas optimize`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
go run ./cmd/qnas inspect testdata/models/resnet8.onnx "$@"
