package qnas_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/qnas/qnas"
	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/supernet"
)

// Options.Pow2Scales reaches the written model through the public path, on a model exported
// with BatchNorm folded (restored for training, folded again on export), fine-tuned with a
// last epoch that trains what is exported: every scale of the file is a power of two, and
// the report says so. (export's TestPow2ScalesMatchONNXRuntimeExactly checks what that buys.)
func TestPow2ScalesOption(t *testing.T) {
	opts := qnas.DefaultQuantizeOptions()
	opts.Data = qnas.Data{Dir: qnas.EmbeddedData, Mean: []float32{0.286}, Std: []float32{0.353}, LimitTrain: 512, LimitTest: 200}
	opts.Training.Calib = 2
	opts.Epochs = 2
	opts.Pow2Scales = true
	opts.Output.Path = filepath.Join(t.TempDir(), "q.onnx")
	arch := &supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{4}, ABits: 4}}
	rep, err := qnas.Quantize(context.Background(), "testdata/models/resnet8.onnx", arch, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Pow2Scales {
		t.Error("the report does not say pow2_scales")
	}
	m, err := export.Read(opts.Output.Path, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, nd := range m.Graph.Nodes {
		if nd.Op != "DequantizeLinear" {
			continue
		}
		for _, v := range m.Graph.Consts[nd.Input(1)].F {
			if e := math.Log2(float64(v)); e != math.Round(e) {
				t.Fatalf("%s: scale %g is not a power of two", nd.Name, v)
			}
		}
		n++
	}
	if n == 0 {
		t.Fatal("no DequantizeLinear in the written model")
	}
}
