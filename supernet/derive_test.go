package supernet

import (
	"math"
	"math/rand/v2"
	"slices"
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
		logits := randomLogits(sn, r)
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

// AtFullWidth derives, from a joint search's logits, the bits-only architecture under the
// same budget: every channel kept, each layer's bits the same as deriving in a space
// without pruning would give, in [0.98, 1] × budget; below every such architecture it
// refuses with a BudgetError.
func TestAtFullWidthDerivesBitsAlone(t *testing.T) {
	s := loadSpace(t, "resnet8_bn.onnx")
	opts := DefaultSearchOptions()
	opts.Prune = true
	sn, err := s.NewSupernet(opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Prune = false
	bitsOnly, err := s.NewSupernet(opts)
	if err != nil {
		t.Fatal(err)
	}
	full := sn.AtFullWidth()
	if len(sn.Groups) == 0 || len(full.Groups) != 0 {
		t.Fatalf("%d groups searched; %d at full width", len(sn.Groups), len(full.Groups))
	}
	r := rand.New(rand.NewPCG(2, 2))
	var logits map[string][]float32
	for trial := 0; trial < 20; trial++ {
		logits = randomLogits(sn, r)
		b, err := NewBudget(sn, BOPs(), 0.2, 0)
		if err != nil {
			t.Fatal(err)
		}
		d, err := full.Derive(BOPs(), logits, b)
		if err != nil {
			t.Fatal(err)
		}
		want, err := bitsOnly.Derive(BOPs(), logits, b)
		if err != nil {
			t.Fatal(err)
		}
		if c := d.Cost(); c < b.Fill() || c > b.Cost {
			t.Errorf("draw %d: cost %.4f of the reference", trial, c/b.Reference)
		}
		got, exp := d.Resolved(), want.Resolved()
		for _, l := range s.Layers {
			if got.Kept(l) != l.Filters {
				t.Errorf("draw %d: %s keeps %d of %d filters", trial, l.Name, got.Kept(l), l.Filters)
			}
			if !slices.Equal(got.Choices[l.Index].WBits, exp.Choices[l.Index].WBits) || got.Choices[l.Index].ABits != exp.Choices[l.Index].ABits {
				t.Errorf("draw %d: %s at w%v a%d, the bits-only space derives w%v a%d", trial, l.Name,
					got.Choices[l.Index].WBits, got.Choices[l.Index].ABits, exp.Choices[l.Index].WBits, exp.Choices[l.Index].ABits)
			}
		}
	}
	b, err := NewBudget(sn, BOPs(), 0.9*full.MinCost(BOPs())/BOPs().Reference(s), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := full.Derive(BOPs(), logits, b); err == nil {
		t.Errorf("derived at full width under %.4f, below its cheapest architecture", b.Ratio())
	} else if _, ok := err.(*BudgetError); !ok {
		t.Errorf("below the cheapest full-width architecture: %v", err)
	}
}

// CoarseLogits gives each unit of a coarser granularity the mean of the logits of the
// filters it covers; input-bit and width logits pass through unchanged; a finer
// granularity is refused.
func TestCoarseLogits(t *testing.T) {
	s := loadSpace(t, "resnet8_bn.onnx")
	opts := DefaultSearchOptions()
	opts.Prune, opts.Granularity = true, "filter"
	fine, err := s.NewSupernet(opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Granularity = "group:4"
	coarse, err := s.NewSupernet(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 3))
	logits := randomLogits(fine, r)
	cl, err := fine.CoarseLogits(logits, coarse)
	if err != nil {
		t.Fatal(err)
	}
	for i, lc := range fine.Layers {
		cc := coarse.Layers[i]
		if lc.ALogits != "" && !slices.Equal(cl[cc.ALogits], logits[lc.ALogits]) {
			t.Errorf("%s: input-bit logits changed", lc.Layer.Name)
		}
		if lc.WLogits == "" {
			continue
		}
		k, per := len(lc.WBits), lc.Units/cc.Units
		got := cl[cc.WLogits]
		if len(got) != cc.Units*k {
			t.Fatalf("%s: %d coarse logits for %d units of %d options", lc.Layer.Name, len(got), cc.Units, k)
		}
		for u := range cc.Units {
			for j := range k {
				var sum float64
				for f := range per {
					sum += float64(logits[lc.WLogits][(u*per+f)*k+j])
				}
				if d := math.Abs(float64(got[u*k+j]) - sum/float64(per)); d > 1e-5 {
					t.Errorf("%s unit %d option %d: %v, the mean of its filters' logits is %v", lc.Layer.Name, u, j, got[u*k+j], sum/float64(per))
				}
			}
		}
	}
	for _, gc := range fine.Groups {
		if !slices.Equal(cl[gc.Logits], logits[gc.Logits]) {
			t.Errorf("%s: width logits changed", gc.Group.Name())
		}
	}
	if _, err := coarse.CoarseLogits(cl, fine); err == nil {
		t.Errorf("mapped group:4 logits onto filters")
	}
}
