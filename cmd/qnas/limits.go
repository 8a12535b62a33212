package main

import (
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/onnxio"
	"github.com/spf13/pflag"
)

// limitFlags are the resource limits every command that reads a model applies; see
// docs/limits.md. Zero keeps the default.
type limitFlags struct {
	ModelMB         int64
	TensorElements  int64
	TotalTensorMB   int64
	ActivationElems int64
	ConstFoldElems  int64
}

var limits limitFlags

func (l *limitFlags) register(f *pflag.FlagSet) {
	f.Int64Var(&l.ModelMB, "max-model-mb", onnxio.DefaultMaxModelBytes>>20, "refuse model files larger than this (MiB)")
	f.Int64Var(&l.TensorElements, "max-tensor-elements", onnxio.DefaultMaxTensorElements, "refuse constant tensors with more elements")
	f.Int64Var(&l.TotalTensorMB, "max-total-tensor-mb", onnxio.DefaultMaxTotalTensorBytes>>20, "refuse models whose constants add up to more (MiB)")
	f.Int64Var(&l.ActivationElems, "max-activation-elements", graph.DefaultMaxActivationElems, "refuse models with a larger activation per sample")
	f.Int64Var(&l.ConstFoldElems, "max-fold-elements", graph.DefaultMaxConstFoldElems, "leave unfolded a constant node whose output would be larger")
}

// importOptions turns the flags into graph.ImportOptions.
func (l *limitFlags) importOptions() graph.ImportOptions {
	return graph.ImportOptions{
		Limits: onnxio.Limits{MaxModelBytes: l.ModelMB << 20, MaxTensorElements: l.TensorElements,
			MaxTotalTensorBytes: l.TotalTensorMB << 20},
		GraphLimits: graph.Limits{MaxActivationElems: l.ActivationElems, MaxConstFoldElems: l.ConstFoldElems},
	}
}
