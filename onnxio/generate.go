package onnxio

// The ONNX message types in onnxpb are generated from onnx.proto; rebuild them with
// `go generate ./onnxio` (protoc 3.21 and protoc-gen-go v1.36.12 on PATH).
//go:generate protoc --go_out=. --go_opt=module=github.com/qnas/qnas/onnxio onnx.proto
