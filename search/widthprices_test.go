package search

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/supernet"
)

// The first architecture step of a search with measured width prices prices every width
// option of every group (on the folded ResNet-8) at exactly the loss change of moving that
// group alone to it on the step's batch and sample, measured here another way: by making
// the option the group's sure draw through its logits. Later steps probe one group each,
// in turn.
func TestMeasuredWidthPrices(t *testing.T) {
	trainSet, norm := embedded(t, data.Train)
	s, err := supernet.NewSpace(loadFixture(t, "resnet8.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	opts := supernet.DefaultSearchOptions()
	opts.Granularity, opts.Prune = "layer", true
	sn, err := s.NewSupernet(opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(sn.Groups) < 2 {
		t.Fatalf("%d prunable groups", len(sn.Groups))
	}
	budget, err := supernet.NewBudget(sn, supernet.BOPs(), 0.5, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultSearchConfig(supernet.BOPs(), budget)
	cfg.Batch, cfg.Norm, cfg.Seed = 32, norm, 3
	if err := Calibrate(sn.Graph, trainSet, norm, 2, 64, nil); err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(sn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tr.prices == nil {
		t.Fatal("a pruning search with MeasureWidths has no width prices")
	}
	l, err := data.NewLoader(trainSet, data.LoaderOptions{BatchSize: cfg.Batch, Norm: norm})
	if err != nil {
		t.Fatal(err)
	}
	y := make([]int32, cfg.Batch)
	l.Next(tr.Input(), y)
	const it, tau = 4, 1.5
	p := tr.Plan
	lossWith := func(name string, option int) float64 { // the group's logits make option the sure draw
		a := tr.logits[name]
		saved := append([]float32(nil), a...)
		a[option] += 1e4
		defer copy(a, saved)
		p.SetStatsMomentum(0)
		defer p.SetStatsMomentum(-1)
		st := engine.StepState{Step: 2*it + 1, Temperature: tau, Noise: rand.New(rand.NewPCG(cfg.Seed, 2*it+1)), Hard: true}
		p.SetState(&st)
		p.Forward(true)
		loss, _ := p.SoftmaxCrossEntropy(sn.Graph.Outputs[0], y)
		return loss
	}
	want := make([][]float64, len(sn.Groups))
	for g, gc := range sn.Groups {
		w := len(gc.Widths) - 1
		lw := lossWith(gc.Logits, w)
		for k := range gc.Widths {
			want[g] = append(want[g], lossWith(gc.Logits, k)-lw)
		}
	}
	if _, _, _, err := tr.ArchStep(y, it, tau); err != nil {
		t.Fatal(err)
	}
	changed := false
	for g := range want {
		for k, d := range want[g] {
			got := tr.prices.Delta[g][k]
			if math.Abs(got-d) > 1e-5*math.Max(1, math.Abs(d)) {
				t.Errorf("group %s, width %g: price %.6g, measured %.6g", sn.Groups[g].Logits, sn.Groups[g].Widths[k], got, d)
			}
			changed = changed || d != 0
		}
	}
	if !changed {
		t.Error("no width option changes the loss: the probe measures nothing")
	}
	before := 0
	for _, c := range tr.prices.Count {
		for _, n := range c {
			before += n
		}
	}
	for step := 1; step <= len(sn.Groups); step++ {
		l.Next(tr.Input(), y)
		if _, _, _, err := tr.ArchStep(y, it+step, tau); err != nil {
			t.Fatal(err)
		}
		after := 0
		for _, c := range tr.prices.Count {
			for _, n := range c {
				after += n
			}
		}
		if after != before+step || tr.prices.Next != step%len(sn.Groups) {
			t.Fatalf("after %d more steps: %d probes (want %d), next group %d", step, after, before+step, tr.prices.Next)
		}
	}
}

// The width logits' gradient from the prices is that of the expected price Σ_k p_k·Δ_k under
// p = softmax(α), over the temperature.
func TestWidthGradsAreTheExpectedPriceGradient(t *testing.T) {
	s, err := supernet.NewSpace(loadFixture(t, "resnet8.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	opts := supernet.DefaultSearchOptions()
	opts.Prune = true
	sn, err := s.NewSupernet(opts)
	if err != nil {
		t.Fatal(err)
	}
	budget, err := supernet.NewBudget(sn, supernet.BOPs(), 0.5, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultSearchConfig(supernet.BOPs(), budget)
	cfg.Batch = 2
	tr, err := NewTrainer(sn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for g, name := range tr.prices.Names {
		for k := range tr.prices.Delta[g] {
			tr.prices.Delta[g][k] = r.Float64()
			tr.logits[name][k] = float32(r.NormFloat64())
		}
	}
	const tau = 0.7
	tr.widthGrads(tau)
	for g, name := range tr.prices.Names {
		a, d := tr.logits[name], tr.prices.Delta[g]
		f := func() float64 {
			m, z, e := math.Inf(-1), 0.0, 0.0
			for _, v := range a {
				m = max(m, float64(v))
			}
			for k, v := range a {
				w := math.Exp(float64(v) - m)
				z += w
				e += w * d[k]
			}
			return e / z / tau
		}
		for k := range a {
			old := a[k]
			a[k] = old + 1e-2
			fp := f()
			a[k] = old - 1e-2
			fm := f()
			a[k] = old
			num := (fp - fm) / 2e-2
			if got := float64(tr.Plan.Value(name).Grad[k]); math.Abs(got-num) > 1e-3 {
				t.Errorf("%s[%d]: gradient %.5g, finite difference %.5g", name, k, got, num)
			}
		}
	}
}
