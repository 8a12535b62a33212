package qnas

import (
	"fmt"
	"math"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/testenv"
	"github.com/qnas/qnas/supernet"
)

// The baselines of a budget: the dearest uniform w=a model within it, the dearest uniform
// model of any pair within it, and the cheapest uniform w=a model above it (w4a4 for 0.25,
// whose 8-bit network input puts it just above).
func TestUniformBaselines(t *testing.T) {
	g, err := graph.Load(testenv.Path("testdata", "models", "resnet20_bn.onnx"), graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Canonicalize(graph.CanonicalOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := supernet.NewSpace(g)
	if err != nil {
		t.Fatal(err)
	}
	cm := supernet.BOPs()
	sn, err := s.NewSupernet(supernet.DefaultSearchOptions())
	if err != nil {
		t.Fatal(err)
	}
	for budget, want := range map[float64]string{
		0.25:  "w3a3 0.1415, w2a8 0.2500, w4a4 0.2509",
		0.125: "w2a2 0.0632, w3a2 0.0948, w3a3 0.1415",
	} {
		b, err := Budget{Ratio: budget}.Resolve(sn, cm)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for i, b := range UniformBaselines(s, cm, b, supernet.DefaultSearchOptions()) {
			if i > 0 {
				got += ", "
			}
			got += fmt.Sprintf("w%da%d %.4f", b.WBits, b.ABits, b.CostRatio)
		}
		if got != want {
			t.Errorf("budget %.3f: baselines %s, want %s", budget, got, want)
		}
	}
}

// Each seed's searched model is compared with the frontier of that seed's own baselines at
// the budget: linear in cost between the uniform models around it, the cheapest below the
// frontier's range, the dearest on the frontier above it; the summary is the mean and
// sample std over the seeds, with the note when the budget lies outside a frontier.
func TestCompareWithFrontier(t *testing.T) {
	bl := func(seed uint64, w, a int, cost, acc float64) Baseline {
		return Baseline{WBits: w, ABits: a, CostRatio: cost, Accuracy: acc, Seed: seed}
	}
	baselines := []Baseline{
		bl(1, 2, 2, 0.0632, 0.876), bl(1, 3, 2, 0.0948, 0.926), bl(1, 3, 3, 0.1415, 0.935),
		bl(2, 2, 2, 0.0632, 0.870), bl(2, 3, 2, 0.0948, 0.930), bl(2, 3, 3, 0.1415, 0.931),
		bl(3, 2, 2, 0.0632, 0.5), // another run's seed: not part of this comparison
	}
	// A baseline whose fine-tuning diverged has no accuracy: were it a vertex, it would
	// lift seed 1's frontier at 0.125.
	diverged := bl(1, 4, 2, 0.1, 0.99)
	diverged.Diverged = "epoch 1 step 9: the training loss became NaN: the run diverged at learning rate 0.01"
	baselines = append(baselines, diverged)
	show := func(p *float64) string {
		if p == nil {
			return "none"
		}
		return fmt.Sprint(*p)
	}
	seeds := func() []SeedResult { return []SeedResult{{Seed: 1, Accuracy: 0.936}, {Seed: 2, Accuracy: 0.934}} }
	meanStd := func(a, b float64) [2]float64 { return [2]float64{(a + b) / 2, math.Abs(a-b) / math.Sqrt2} }
	near := func(a, b [2]float64) bool { return math.Abs(a[0]-b[0]) < 1e-12 && math.Abs(a[1]-b[1]) < 1e-12 }
	check := func(name string, budget float64, f1, f2 float64, note string) {
		t.Helper()
		sr, sum := seeds(), &SeedSummary{}
		compareWithFrontier(budget, sr, baselines, sum)
		for i, f := range []float64{f1, f2} {
			if sr[i].FrontierAtBudget == nil || math.Abs(*sr[i].FrontierAtBudget-f) > 1e-12 || math.Abs(*sr[i].MixedMinusFrontier-(sr[i].Accuracy-f)) > 1e-12 {
				t.Errorf("%s: seed %d: frontier %s, mixed − frontier %s; want %v", name, sr[i].Seed, show(sr[i].FrontierAtBudget), show(sr[i].MixedMinusFrontier), f)
			}
		}
		if sum.FrontierAtBudget == nil || !near(*sum.FrontierAtBudget, meanStd(f1, f2)) || !near(*sum.MixedMinusFrontier, meanStd(0.936-f1, 0.934-f2)) {
			t.Errorf("%s: summary frontier %v, mixed − frontier %v; want %v, %v", name, sum.FrontierAtBudget, sum.MixedMinusFrontier, meanStd(f1, f2), meanStd(0.936-f1, 0.934-f2))
		}
		if sum.FrontierNote != note {
			t.Errorf("%s: note %q, want %q", name, sum.FrontierNote, note)
		}
	}
	between := func(acc0, acc1 float64) float64 { return acc0 + (0.125-0.0948)/(0.1415-0.0948)*(acc1-acc0) }
	check("inside", 0.125, between(0.926, 0.935), between(0.930, 0.931), "")
	check("below", 0.05, 0.876, 0.870, "below the cheapest uniform model (w2a2 at 0.0632): compared with it")
	check("above", 0.2, 0.935, 0.931, "above the dearest uniform model on the frontier (w3a3 at 0.1415): compared with it")

	// A dearest model that loses to a cheaper one is off its seed's frontier: above the
	// frontier's range for that seed only, which the note says.
	baselines = append(baselines, bl(1, 4, 4, 0.2509, 0.945), bl(2, 4, 4, 0.2509, 0.929))
	check("above one seed's frontier", 0.2, 0.935+(0.2-0.1415)/(0.2509-0.1415)*(0.945-0.935), 0.931,
		"seed 2: above the dearest uniform model on the frontier (w3a3 at 0.1415): compared with it")

	// A later seed whose fine-tuning diverged has no accuracy: it gets no frontier and is
	// not in the summary, though its seed has a baseline.
	sr, sum := append(seeds(), SeedResult{Seed: 3, Diverged: "fine-tuning lowered the test accuracy"}), &SeedSummary{}
	compareWithFrontier(0.05, sr, baselines, sum)
	if sr[2].FrontierAtBudget != nil || sr[2].MixedMinusFrontier != nil || sum.MixedMinusFrontier == nil ||
		!near(*sum.MixedMinusFrontier, meanStd(0.936-0.876, 0.934-0.870)) {
		t.Errorf("a diverged seed: its frontier %s, summary mixed − frontier %v", show(sr[2].FrontierAtBudget), sum.MixedMinusFrontier)
	}

	// Without baselines there is nothing to compare with.
	sr, sum = seeds(), &SeedSummary{}
	compareWithFrontier(0.125, sr, nil, sum)
	if sum.FrontierAtBudget != nil || sum.MixedMinusFrontier != nil || sr[0].FrontierAtBudget != nil {
		t.Errorf("no baselines: %+v %+v", sum, sr[0])
	}
}
