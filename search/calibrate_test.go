package search

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/supernet"
)

// The clip of a calibrated quantizer minimizes the quantization error: near the largest
// value for evenly spread values at 8 bits, far inside it when one outlier would waste a
// coarse grid.
func TestBestClip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	even := make([]float32, 4000)
	for i := range even {
		even[i] = r.Float32()
	}
	if c := bestClip(even, 8, false, false); c < 0.95 || c > 1 {
		t.Errorf("uniform [0, 1) at 8 bits: clip %.3f", c)
	}
	gauss := make([]float32, 4000)
	for i := range gauss {
		gauss[i] = float32(r.NormFloat64())
	}
	gauss[7] = 20
	if c := bestClip(gauss, 4, true, false); c > 6 {
		t.Errorf("Gaussian with an outlier at 20, 4 bits signed: clip %.3f", c)
	}
	if c := bestClip([]float32{0, 0, 0}, 4, false, false); c != 1 {
		t.Errorf("all zero: clip %v, want the neutral 1", c)
	}
}

// Calibration sets every activation clip from the data, and post-training quantization at
// w8a8 then keeps the float model's accuracy (within a point on the embedded test images).
func TestCalibrateKeepsEightBitAccuracy(t *testing.T) {
	trainSet, norm := embedded(t, data.Train)
	testSet, _ := embedded(t, data.Test)
	g := loadFixture(t, "resnet8_bn.onnx")
	s, err := supernet.NewSpace(g)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Resolve(&supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{8}, ABits: 8}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := Calibrated(r, trainSet, QuantizeConfig{CalibBatches: 4, Batch: 128, Norm: norm})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, nd := range q.Nodes {
		if nd.Op != supernet.OpQuantAct {
			continue
		}
		n++
		if c := q.Consts[nd.Inputs[1]].F[0]; c == 1 || !(c > 0) {
			t.Errorf("%s: clip %v after calibration", nd.Name, c)
		}
	}
	if n != len(s.Layers) {
		t.Errorf("%d input quantizers for %d layers", n, len(s.Layers))
	}
	fl, err := train.Evaluate(g, testSet, norm, 250, nil)
	if err != nil {
		t.Fatal(err)
	}
	qe, err := train.Evaluate(q, testSet, norm, 250, nil)
	if err != nil {
		t.Fatal(err)
	}
	if qe.Accuracy < fl.Accuracy-0.01 {
		t.Errorf("w8a8 after calibration %.3f, float %.3f", qe.Accuracy, fl.Accuracy)
	}
}

// BatchNorm re-estimation replaces the running statistics with the average of the batch
// statistics over the batches it sees, and changes nothing else.
func TestReestimateBN(t *testing.T) {
	trainSet, norm := embedded(t, data.Train)
	g := loadFixture(t, "resnet8_bn.onnx")
	var bn *graph.Node
	for _, n := range g.Nodes {
		if n.Op == "BatchNormalization" {
			bn = n
			break
		}
	}
	before := g.Clone()
	const batches, batch = 3, 100
	if err := ReestimateBN(g, trainSet, norm, batches, batch, nil); err != nil {
		t.Fatal(err)
	}
	// The batch means of the BatchNorm's input, from a plan that keeps it.
	p, err := engine.Compile(before, batch, engine.Options{Inference: true, Keep: map[string]bool{bn.Inputs[0]: true}})
	if err != nil {
		t.Fatal(err)
	}
	sub := data.Subset(trainSet, batches*batch)
	ch := g.Shapes[bn.Inputs[0]][1]
	want := make([]float64, ch)
	err = forBatches(sub, norm, batches*batch, batch, p.Value(before.Inputs[0]).Data, func(int) {
		p.Forward(false)
		v := p.Value(bn.Inputs[0]).Data
		hw := len(v) / (batch * ch)
		for b := 0; b < batch; b++ {
			for c := 0; c < ch; c++ {
				for _, x := range v[(b*ch+c)*hw : (b*ch+c+1)*hw] {
					want[c] += float64(x) / float64(batches*batch*hw)
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	got := g.Consts[bn.Inputs[3]].F
	for c := range want {
		if math.Abs(float64(got[c])-want[c]) > 1e-4*(1+math.Abs(want[c])) {
			t.Fatalf("channel %d: running mean %v, mean of the batches %v", c, got[c], want[c])
		}
	}
	for name, c := range before.Consts {
		if name == bn.Inputs[3] || name == bn.Inputs[4] {
			continue
		}
		if d := g.Consts[name]; d.DType == graph.Float32 && !equalFloats(d.F, c.F) {
			if isRunningStat(before, name) {
				continue
			}
			t.Errorf("%s changed", name)
		}
	}
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// isRunningStat reports whether a constant is a BatchNormalization's mean or variance.
func isRunningStat(g *graph.Graph, name string) bool {
	for _, n := range g.Nodes {
		if n.Op == "BatchNormalization" && (n.Input(3) == name || n.Input(4) == name) {
			return true
		}
	}
	return false
}
