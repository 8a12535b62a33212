package supernet

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/field"
	"github.com/qnas/qnas/internal/testenv"
)

func loadSpace(t testing.TB, name string) *Space {
	t.Helper()
	g, err := graph.Load(testenv.Path("testdata", "models", name), graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Canonicalize(graph.CanonicalOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := NewSpace(g)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomLogits(sn *Supernet, r *rand.Rand) map[string][]float32 {
	logits := map[string][]float32{}
	for _, name := range sn.ArchParams() {
		v := make([]float32, sn.Graph.Consts[name].Len())
		for i := range v {
			v[i] = float32(r.NormFloat64() * 2)
		}
		logits[name] = v
	}
	return logits
}

// The expected cost's gradient matches central differences, for every cost model, with
// width choices and per-group bits.
func TestExpectedCostGradient(t *testing.T) {
	s := loadSpace(t, "mbv2_bn.onnx")
	opts := DefaultSearchOptions()
	opts.Prune = true
	sn, err := s.NewSupernet(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4, 4))
	for _, c := range []struct{ kind, target string }{{"bops", ""}, {"bops-acc", ""}, {"size", ""}, {"", "npu-int8-int4"}} {
		m, err := NewCostModel(c.kind, c.target)
		if err != nil {
			t.Fatal(err)
		}
		checkCostGradient(t, sn, m, r)
	}
}

// checkCostGradient compares the expected cost's gradient at random logits with central
// differences.
func checkCostGradient(t *testing.T, sn *Supernet, m CostModel, r *rand.Rand) {
	t.Helper()
	logits := randomLogits(sn, r)
	grads := map[string][]float32{}
	for k, v := range logits {
		grads[k] = make([]float32, len(v))
	}
	ref := m.Reference(sn.Space)
	sn.ExpectedCost(m, logits, grads, 1/ref)
	for name, v := range logits {
		for _, i := range []int{0, len(v) - 1, len(v) / 2} {
			old := v[i]
			const h = 1e-2
			v[i] = old + h
			cp := sn.ExpectedCost(m, logits, nil, 0) / ref
			v[i] = old - h
			cm := sn.ExpectedCost(m, logits, nil, 0) / ref
			v[i] = old
			num := (cp - cm) / (2 * h)
			if math.Abs(num-float64(grads[name][i])) > 1e-3*math.Max(1e-2, math.Abs(num)) {
				t.Errorf("%s: d cost/d %s[%d] = %.6g, finite difference %.6g", m, name, i, grads[name][i], num)
			}
		}
	}
}

// Derivation lands in [0.98, 1] × budget whenever the space allows, for bits alone and
// bits with widths, at every granularity, and its cost is what the resolved architecture
// costs.
func TestDeriveFillsBudget(t *testing.T) {
	s := loadSpace(t, "resnet8_bn.onnx")
	m := BOPs()
	ref := m.Reference(s)
	r := rand.New(rand.NewPCG(5, 5))
	for _, prune := range []bool{false, true} {
		for _, gran := range []string{"layer", "group:4", "filter"} {
			opts := DefaultSearchOptions()
			opts.Prune, opts.Granularity = prune, gran
			sn, err := s.NewSupernet(opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, ratio := range []float64{0.08, 0.125, 0.25, 0.5} {
				b, err := NewBudget(sn, m, ratio, 0)
				if err != nil {
					t.Fatal(err)
				}
				budget := b.Cost
				d, err := sn.Derive(m, randomLogits(sn, r), b)
				if err != nil {
					t.Fatalf("prune %v %s %.3f: %v", prune, gran, ratio, err)
				}
				res := d.Resolved()
				c, err := m.Cost(res)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(c-d.Cost()) > 1e-6*c {
					t.Errorf("derivation says %v, the resolved architecture costs %v", d.Cost(), c)
				}
				if c > budget || c < 0.98*budget {
					t.Errorf("prune %v %s: cost %.4f of the reference for a budget of %.4f", prune, gran, c/ref, ratio)
				}
			}
		}
	}
	sn, _ := s.NewSupernet(DefaultSearchOptions())
	var be *BudgetError
	var fe *field.Error
	if _, err := NewBudget(sn, m, 0.01, 0); err == nil {
		t.Error("a budget below the cheapest architecture was accepted")
	} else if !errors.As(err, &be) || be.Min/ref < 0.0625 || !errors.As(err, &fe) || fe.Name != "Budget" {
		t.Errorf("error %v", err)
	}
	for _, c := range []struct{ ratio, cost float64 }{{1.5, 0}, {-0.1, 0}, {math.NaN(), 0}, {0, 2 * ref}, {0, math.Inf(1)}, {0.5, ref / 2}} {
		if _, err := NewBudget(sn, m, c.ratio, c.cost); !errors.As(err, &fe) || fe.Name != "Budget" {
			t.Errorf("ratio %g cost %g: error %v, want one naming Budget", c.ratio, c.cost, err)
		}
	}
	if b, err := NewBudget(sn, m, 0, ref/4); err != nil || math.Abs(b.Ratio()-0.25) > 1e-12 {
		t.Errorf("a cost of a quarter of the reference: %+v, %v", b, err)
	}
}

// With every choice at its argmax the supernet computes what the derived architecture's
// training graph computes. (With widths searched the two differ by design: the supernet's
// weight scales still see the masked input channels, the pruned model's do not.)
func TestSupernetArgmaxIsDerivedArchitecture(t *testing.T) {
	s := loadSpace(t, "resnet8_bn.onnx")
	opts := DefaultSearchOptions()
	opts.Granularity = "filter"
	sn, err := s.NewSupernet(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(6, 6))
	logits := randomLogits(sn, r)
	for k, v := range logits {
		copy(sn.Graph.Consts[k].F, v)
	}
	// The supernet at argmax and the pruned, quantized model of those choices agree.
	res := sn.Argmax(BOPs(), logits).Resolved()
	fixed, err := res.Apply()
	if err != nil {
		t.Fatal(err)
	}
	// Clips: the same value for every option and the fixed quantizers.
	for _, lc := range sn.Layers {
		for i := range sn.Graph.Consts[lc.Clips].F {
			sn.Graph.Consts[lc.Clips].F[i] = 1.5
		}
	}
	for _, n := range fixed.Nodes {
		if n.Op == OpQuantAct {
			fixed.Consts[n.Inputs[1]].F[0] = 1.5
		}
	}
	run := func(g *graph.Graph, argmax bool) []float32 {
		p, err := engine.Compile(g, 4, engine.Options{Inference: true})
		if err != nil {
			t.Fatal(err)
		}
		rr := rand.New(rand.NewPCG(1, 1))
		for i := range p.Value(g.Inputs[0]).Data {
			p.Value(g.Inputs[0]).Data[i] = float32(rr.NormFloat64())
		}
		if argmax {
			p.SetState(&engine.StepState{Argmax: true, Temperature: 1})
		}
		p.Forward(false)
		return p.Value(g.Outputs[0]).Data
	}
	a, b := run(sn.Graph, true), run(fixed, false)
	diff := 0.0
	for i := range a {
		diff = math.Max(diff, math.Abs(float64(a[i]-b[i])))
	}
	if diff > 1e-3 {
		t.Errorf("supernet at argmax and the derived architecture differ by %.3g in the logits", diff)
	}
}

// Under every shipped target profile, on ResNet-20 and MobileNetV2, the derivation lands in
// [0.98, 1] × budget at 0.6 and 0.8 of the profile's reference (and 0.3 where the
// profile's cheapest architecture allows it), from random and from peaked (trained-like)
// logits, moving only over pairs the device runs; the feasibility check (MinCost) and the
// derivation agree. Profiles whose only pair is w8a8 get there by pruning.
func TestTargetsLandOnBudget(t *testing.T) {
	for _, model := range []string{"resnet20_bn.onnx", "mbv2_bn.onnx"} {
		s := loadSpace(t, model)
		for _, name := range ShippedTargets() {
			m, err := NewCostModel("", name)
			if err != nil {
				t.Fatal(err)
			}
			opts, err := DefaultSearchOptions().For(m)
			if err != nil {
				t.Fatal(err)
			}
			sn, err := s.NewSupernet(opts)
			if err != nil {
				t.Fatal(err)
			}
			ref := m.Reference(s)
			if sn.MinCost(m) > 0.6*ref {
				opts.Prune = true // a device of few pairs gets below its full cost by pruning
				if sn, err = s.NewSupernet(opts); err != nil {
					t.Fatal(err)
				}
			}
			minRatio := sn.MinCost(m) / ref
			r := rand.New(rand.NewPCG(7, 7))
			for _, ratio := range []float64{0.3, 0.6, 0.8} {
				for _, peaked := range []bool{false, true} {
					logits := randomLogits(sn, r)
					if peaked {
						for _, v := range logits {
							for i := range v {
								v[i] *= 6
							}
						}
					}
					b, err := NewBudget(sn, m, ratio, 0)
					if ratio < minRatio {
						var be *BudgetError
						if !errors.As(err, &be) {
							t.Errorf("%s %s %.1f: below the cheapest (%.3f): error %v", model, name, ratio, minRatio, err)
						}
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					d, err := sn.Derive(m, logits, b)
					if err != nil {
						t.Fatalf("%s %s %.1f: %v", model, name, ratio, err)
					}
					res := d.Resolved()
					c, err := m.Cost(res) // an error for a pair the device does not run
					if err != nil {
						t.Fatalf("%s %s %.1f: %v", model, name, ratio, err)
					}
					if c > ratio*ref*(1+1e-9) || c < 0.98*ratio*ref {
						t.Errorf("%s %s (prune %v), budget %.1f, peaked %v: cost %.4f of the reference", model, name, opts.Prune, ratio, peaked, c/ref)
					}
				}
			}
		}
	}
}

// The budget projection puts the expected cost on the budget; a budget above every
// reachable cost leaves the logits alone; a budget no tilt reaches is an error that leaves
// them alone too.
func TestProject(t *testing.T) {
	s := loadSpace(t, "resnet8_bn.onnx")
	opts := DefaultSearchOptions()
	opts.Prune = true
	sn, err := s.NewSupernet(opts)
	if err != nil {
		t.Fatal(err)
	}
	m := BOPs()
	ref := m.Reference(s)
	r := rand.New(rand.NewPCG(8, 8))
	for _, ratio := range []float64{0.05, 0.125, 0.25, 0.6, 0.9} {
		logits := randomLogits(sn, r)
		mu, c, err := sn.Project(m, logits, ratio*ref)
		if err != nil {
			t.Fatalf("%.3f: %v", ratio, err)
		}
		if e := sn.ExpectedCost(m, logits, nil, 0); math.Abs(e-ratio*ref) > 1e-5*ref || math.Abs(c-e) > 1e-9*ref {
			t.Errorf("budget %.3f: expected cost %.6f after the projection (μ %.3g, reported %.6f)", ratio, e/ref, mu, c/ref)
		}
	}
	same := func(a, b map[string][]float32) bool {
		for k := range a {
			if !slices.Equal(a[k], b[k]) {
				return false
			}
		}
		return true
	}
	logits := randomLogits(sn, r)
	before := map[string][]float32{}
	for k, v := range logits {
		before[k] = slices.Clone(v)
	}
	if mu, _, err := sn.Project(m, logits, 2*ref); err != nil || mu != 0 || !same(logits, before) {
		t.Errorf("a budget above the dearest architecture: μ %v, error %v, logits changed %v", mu, err, !same(logits, before))
	}
	_, _, err = sn.Project(m, logits, 1e-6*ref)
	if _, ok := err.(*ProjectionError); !ok || !same(logits, before) {
		t.Errorf("an unreachable budget: error %v, logits changed %v", err, !same(logits, before))
	}
}
