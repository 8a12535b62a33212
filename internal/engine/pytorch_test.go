package engine_test

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/testenv"
)

type goldenTensor struct {
	Shape  []int     `json:"shape"`
	Values []float64 `json:"values"`
}

type gradGolden struct {
	Input        goldenTensor            `json:"input"`
	Labels       []int32                 `json:"labels"`
	Loss         float64                 `json:"loss"`
	Logits       goldenTensor            `json:"logits"`
	Grads        map[string]goldenTensor `json:"grads"`
	InputGrad    goldenTensor            `json:"input_grad"`
	RunningAfter map[string]goldenTensor `json:"running_after"`
}

// A whole small net (conv, BatchNorm in training mode, ReLU, pooling, Gemm) trained one step
// on a fixed batch gives PyTorch's loss, logits, parameter and input gradients, and running
// statistics (testdata/grad, written by testdata/gen/fixtures.py).
func TestSmallNetMatchesPyTorch(t *testing.T) {
	raw, err := os.ReadFile(testenv.Path("testdata", "grad", "small_net_grad.json"))
	if err != nil {
		t.Fatal(err)
	}
	var gold gradGolden
	if err := json.Unmarshal(raw, &gold); err != nil {
		t.Fatal(err)
	}
	g := loadCanonical(t, testenv.Path("testdata", "grad", "small_net.onnx"), false)
	p, err := engine.Compile(g, gold.Input.Shape[0], engine.Options{InputGrads: true})
	if err != nil {
		t.Fatal(err)
	}
	in := p.Value(g.Inputs[0])
	for i, v := range gold.Input.Values {
		in.Data[i] = float32(v)
	}
	p.Forward(true)
	loss, _ := p.SoftmaxCrossEntropy(g.Outputs[0], gold.Labels)
	p.Backward()
	if math.Abs(loss-gold.Loss) > 1e-5 {
		t.Errorf("loss %.7f, PyTorch %.7f", loss, gold.Loss)
	}
	compare := func(what string, got []float32, want goldenTensor, tol float64) {
		t.Helper()
		if len(got) != len(want.Values) {
			t.Fatalf("%s: %d values, PyTorch %d", what, len(got), len(want.Values))
		}
		d := 0.0
		for i, w := range want.Values {
			d = math.Max(d, math.Abs(float64(got[i])-w))
		}
		if d > tol {
			t.Errorf("%s: max |qnas − PyTorch| = %.3g > %.1g", what, d, tol)
		}
	}
	compare("logits", p.Value(g.Outputs[0]).Data, gold.Logits, 1e-5)
	compare("input gradient", in.Grad, gold.InputGrad, 1e-6)
	if len(gold.Grads) != len(p.Params) {
		t.Errorf("%d parameters, PyTorch %d", len(p.Params), len(gold.Grads))
	}
	for name, want := range gold.Grads {
		v := p.Value(name)
		if v == nil || v.Grad == nil {
			t.Errorf("no gradient for %s", name)
			continue
		}
		compare("d loss/d "+name, v.Grad, want, 1e-6)
	}
	for name, want := range gold.RunningAfter {
		v := p.Value(name)
		if v == nil {
			t.Errorf("no running statistic %s", name)
			continue
		}
		compare(name+" after one step", v.Data, want, 1e-6)
	}
}
