package supernet

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Pruning alone (widths the only choices: coarse steps of cost) still lands in
// [0.98, 1] × budget whatever the logits: 200 random draws at three budgets on ResNet-8,
// where single-step repairs left one derivation in eight short.
func TestDeriveLandsWithWidthsAlone(t *testing.T) {
	s := loadSpace(t, "resnet8_bn.onnx")
	opts := DefaultSearchOptions()
	opts.Prune, opts.WBits, opts.ABits = true, []int{8}, []int{8}
	sn, err := s.NewSupernet(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for trial := 0; trial < 200; trial++ {
		logits := map[string][]float32{}
		for _, n := range sn.ArchParams() {
			l := make([]float32, len(sn.Graph.Consts[n].F))
			for i := range l {
				l[i] = float32(3 * r.NormFloat64())
			}
			logits[n] = l
		}
		for _, ratio := range []float64{0.3, 0.5, 0.7} {
			b, err := NewBudget(sn, BOPs(), ratio, 0)
			if err != nil {
				t.Fatal(err)
			}
			d, err := sn.Derive(BOPs(), logits, b)
			if err != nil {
				t.Fatal(err)
			}
			if c := d.Cost(); c < b.Fill() || c > b.Cost {
				t.Errorf("draw %d, budget %g: derived cost %.4f of the reference, widths %v", trial, ratio, c/b.Reference, d.G)
			}
		}
	}
}

// LossLogits makes Derive spend the budget where the loss needs it: with every layer's
// estimated loss increase falling as 4^−bits (quantization noise power), one layer 1000
// times as sensitive as the others keeps more bits than every layer that costs as much or
// more, and one 1000 times less sensitive fewer than every other, both in [0.98, 1] × budget.
func TestLossLogitsDerive(t *testing.T) {
	s := loadSpace(t, "resnet8_bn.onnx")
	m := BOPs()
	opts := DefaultSearchOptions()
	opts.Granularity = "layer"
	sn, err := s.NewSupernet(opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBudget(sn, m, 0.125, 0)
	if err != nil {
		t.Fatal(err)
	}
	const odd = 3 // a middle layer, /layer2/layer2.0/conv1/Conv
	for _, factor := range []float64{1000, 1e-3} {
		inc := map[string][]float64{}
		noise := func(bits []int, scale float64) []float64 {
			out := make([]float64, len(bits))
			top := bits[len(bits)-1]
			for i, bw := range bits {
				out[i] = scale * (math.Pow(4, -float64(bw)) - math.Pow(4, -float64(top)))
			}
			return out
		}
		for i, lc := range sn.Layers {
			scale := 1.0
			if i == odd {
				scale = factor
			}
			if lc.WLogits != "" {
				inc[lc.WLogits] = noise(lc.WBits, scale)
			}
			if lc.ALogits != "" {
				inc[lc.ALogits] = noise(lc.ABits, scale)
			}
		}
		d, err := sn.Derive(m, LossLogits(inc), b)
		if err != nil {
			t.Fatal(err)
		}
		if c := d.Cost(); c > b.Cost || c < 0.98*b.Cost {
			t.Errorf("factor %g: cost %.4f of the reference for a budget of 0.125", factor, c/b.Reference)
		}
		macs := func(i int) int64 { l := sn.Layers[i].Layer; return l.MACs(l.InC, l.Filters) }
		bits := func(i int) float64 {
			lc := sn.Layers[i]
			return float64(lc.WBits[d.W[i][0]] * lc.ABits[d.A[i]])
		}
		for i := range sn.Layers {
			if i == odd || sn.Layers[i].ALogits == "" || factor > 1 && macs(i) < macs(odd) {
				continue
			}
			if factor > 1 && bits(i) >= bits(odd) || factor < 1 && bits(i) <= bits(odd) {
				t.Errorf("factor %g: %s has w·a = %g bits², the odd layer %s %g", factor, sn.Layers[i].Layer.Name, bits(i), sn.Layers[odd].Layer.Name, bits(odd))
			}
		}
	}
	if l := LossLogits(map[string][]float64{"a": {0.5, 0.1, 0}, "b": {2, 0}}); l["b"][0] != -LossLogitSpread || l["a"][2] != 0 || l["a"][0] != -2.5 {
		t.Errorf("logits %v: want −increase scaled so the largest is −%d", l, LossLogitSpread)
	}
}
