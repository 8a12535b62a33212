package supernet

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/quant"
)

// mixedCase is a one-node graph of a mixed op with input x and constants.
func mixedCase(t *testing.T, op string, x graph.Shape, consts map[string]*graph.Tensor, inputs []string, attrs func(n *graph.Node)) *graph.Graph {
	t.Helper()
	n := &graph.Node{Name: "m", Op: op, Domain: Domain, Inputs: append([]string{"x"}, inputs...), Outputs: []string{"y"}}
	attrs(n)
	return oneNode(t, n, x, consts)
}

// checkLogitGradients compares the gradient of L = Σ R·y with respect to the logits (the
// relaxation is smooth in them: no noise, a fixed temperature) with central differences.
func checkLogitGradients(t *testing.T, g *graph.Graph, logits string, batch int) {
	t.Helper()
	p, err := engine.Compile(g, batch, engine.Options{InputGrads: true})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 9))
	for i := range p.Value("x").Data {
		p.Value("x").Data[i] = float32(r.NormFloat64())
	}
	a := p.Value(logits).Data
	for i := range a {
		a[i] = float32(r.NormFloat64())
	}
	R := make([]float32, p.Value("y").Len())
	for i := range R {
		R[i] = float32(r.NormFloat64())
	}
	state := &engine.StepState{Temperature: 1.7}
	loss := func() float64 {
		state.Step++
		p.SetState(state)
		p.Forward(true)
		s := 0.0
		for i, v := range p.Value("y").Data {
			s += float64(v) * float64(R[i])
		}
		return s
	}
	loss()
	copy(p.Value("y").Grad, R)
	p.Backward()
	analytic := append([]float32{}, p.Value(logits).Grad...)
	const h = 1e-3
	for i := range a {
		old := a[i]
		a[i] = old + h
		lp := loss()
		a[i] = old - h
		lm := loss()
		a[i] = old
		num := (lp - lm) / (2 * h)
		if math.Abs(num-float64(analytic[i])) > 1e-2*math.Max(1, math.Abs(num)) {
			t.Errorf("d/d%s[%d]: backward %.5g, finite difference %.5g", logits, i, analytic[i], num)
		}
	}
}

func TestMixedWeightLogitGradient(t *testing.T) {
	w := make([]float32, 8*3*3*3)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	// The weight is the op's "input": it reaches the graph through an Add of a zero input.
	g := graph.New("t")
	g.Opset = 13
	g.Consts["w"] = graph.NewFloat([]int{8, 3, 3, 3}, w)
	g.Consts["a"] = graph.NewFloat([]int{4, 3}, make([]float32, 12))
	g.Inputs = []string{"x"}
	g.Shapes["x"] = graph.Shape{8, 3, 3, 3}
	n := &graph.Node{Name: "m", Op: OpMixedWeight, Domain: Domain, Inputs: []string{"w", "a"}, Outputs: []string{"wq"}}
	n.SetInts("bits", []int64{2, 4, 8})
	n.SetInt("units", 4)
	g.Nodes = []*graph.Node{n, {Name: "add", Op: "Add", Inputs: []string{"wq", "x"}, Outputs: []string{"y"}}}
	g.Outputs = []string{"y"}
	if err := g.InferShapes(); err != nil {
		t.Fatal(err)
	}
	checkLogitGradients(t, g, "a", 1)
}

func TestMixedActLogitGradient(t *testing.T) {
	for _, signed := range []int64{0, 1} {
		g := mixedCase(t, OpMixedAct, graph.Shape{graph.Batch, 3, 20, 20},
			map[string]*graph.Tensor{"a": graph.NewFloat([]int{1, 4}, make([]float32, 4)), "c": graph.NewFloat([]int{4}, []float32{0.8, 1, 1.3, 1.6})},
			[]string{"a", "c"}, func(n *graph.Node) { n.SetInts("bits", []int64{2, 3, 4, 8}); n.SetInt("signed", signed) })
		checkLogitGradients(t, g, "a", 5)
	}
}

func TestWidthMaskLogitGradient(t *testing.T) {
	for _, c := range []struct {
		x    graph.Shape
		axis int64
	}{{graph.Shape{graph.Batch, 6, 4, 4}, 1}, {graph.Shape{graph.Batch, 4, 5, 6}, 3}, {graph.Shape{graph.Batch, 6}, 1}} {
		g := mixedCase(t, OpWidthMask, c.x,
			map[string]*graph.Tensor{"a": graph.NewFloat([]int{1, 3}, make([]float32, 3))},
			[]string{"a"}, func(n *graph.Node) {
				n.SetFloats("widths", []float32{0.34, 0.67, 1})
				n.SetInts("order", []int64{3, 0, 5, 1, 2, 4})
				n.SetInt("axis", c.axis)
			})
		checkLogitGradients(t, g, "a", 3)
	}
}

// With one option at probability one, the mixed ops are the fixed ones: MixedAct is
// QuantAct, MixedWeight is QuantWeight, WidthMask zeroes exactly the unkept channels.
func TestMixedOpsAtArgmax(t *testing.T) {
	x := graph.Shape{graph.Batch, 4, 6, 6}
	g := mixedCase(t, OpMixedAct, x,
		map[string]*graph.Tensor{"a": graph.NewFloat([]int{1, 3}, []float32{0, 3, 1}), "c": graph.NewFloat([]int{3}, []float32{0.7, 1.1, 1.9})},
		[]string{"a", "c"}, func(n *graph.Node) { n.SetInts("bits", []int64{2, 4, 8}) })
	p, err := engine.Compile(g, 2, engine.Options{Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(2, 2))
	xs := p.Value("x").Data
	for i := range xs {
		xs[i] = float32(math.Abs(r.NormFloat64()))
	}
	p.SetState(&engine.StepState{Argmax: true, Temperature: 1})
	p.Forward(false)
	want := make([]float32, len(xs))
	quant.FakeQuantAct(xs, want, 1.1, 4, false)
	for i, v := range p.Value("y").Data {
		if v != want[i] {
			t.Fatalf("argmax MixedAct y[%d] = %v, QuantAct %v", i, v, want[i])
		}
	}
	g = mixedCase(t, OpWidthMask, x, map[string]*graph.Tensor{"a": graph.NewFloat([]int{1, 2}, []float32{2, 0})},
		[]string{"a"}, func(n *graph.Node) { n.SetFloats("widths", []float32{0.5, 1}); n.SetInts("order", []int64{2, 0, 3, 1}) })
	p, err = engine.Compile(g, 2, engine.Options{Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Value("x").Data {
		p.Value("x").Data[i] = 1
	}
	p.SetState(&engine.StepState{Argmax: true, Temperature: 1})
	p.Forward(false)
	y := p.Value("y").Data
	for c, kept := range []bool{true, false, true, false} { // channels 2 and 0 are the top half
		if got := y[c*36]; (got == 1) != kept {
			t.Errorf("channel %d: mask %v, kept %v", c, got, kept)
		}
	}
	// Channels last (a MatMul layer's output over N×H×W×C): the same channels, on axis 3.
	g = mixedCase(t, OpWidthMask, graph.Shape{graph.Batch, 6, 6, 4}, map[string]*graph.Tensor{"a": graph.NewFloat([]int{1, 2}, []float32{2, 0})},
		[]string{"a"}, func(n *graph.Node) {
			n.SetFloats("widths", []float32{0.5, 1})
			n.SetInts("order", []int64{2, 0, 3, 1})
			n.SetInt("axis", 3)
		})
	if p, err = engine.Compile(g, 2, engine.Options{Inference: true}); err != nil {
		t.Fatal(err)
	}
	for i := range p.Value("x").Data {
		p.Value("x").Data[i] = 1
	}
	p.SetState(&engine.StepState{Argmax: true, Temperature: 1})
	p.Forward(false)
	for i, got := range p.Value("y").Data {
		if kept := i%4 == 0 || i%4 == 2; (got == 1) != kept {
			t.Fatalf("element %d (channel %d): mask %v, kept %v", i, i%4, got, kept)
		}
	}
}

// The Gumbel sampler draws one sample per step state: the same seed and step give the same
// sample in any plan, and a state that changes only its temperature within a step is
// sampled anew (no stale cached sample).
func TestGumbelSampleIsTheStepState(t *testing.T) {
	g := mixedCase(t, OpWidthMask, graph.Shape{graph.Batch, 6, 4, 4},
		map[string]*graph.Tensor{"a": graph.NewFloat([]int{1, 3}, []float32{0.3, -0.2, 0.5})},
		[]string{"a"}, func(n *graph.Node) {
			n.SetFloats("widths", []float32{0.34, 0.67, 1})
			n.SetInts("order", []int64{3, 0, 5, 1, 2, 4})
		})
	state := &engine.StepState{} // one state, changed in place, as a trainer does
	run := func(p *engine.Plan, step uint64, tau float64) []float32 {
		*state = engine.StepState{Step: step, Temperature: tau, Noise: rand.New(rand.NewPCG(11, step))}
		p.SetState(state)
		p.Forward(true)
		return append([]float32(nil), p.Value("y").Data...)
	}
	plan := func() *engine.Plan {
		p, err := engine.Compile(g, 2, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range p.Value("x").Data {
			p.Value("x").Data[i] = 1
		}
		return p
	}
	p1, p2 := plan(), plan()
	a, b := run(p1, 5, 2), run(p2, 5, 2)
	if !slices.Equal(a, b) {
		t.Error("two plans sampled step 5 of one seed differently")
	}
	hot := run(p1, 5, 0.05)
	if want := run(plan(), 5, 0.05); !slices.Equal(hot, want) || slices.Equal(hot, a) {
		t.Error("a new temperature within a step returned the sample drawn at the old one")
	}
	if c := run(p1, 6, 2); slices.Equal(a, c) {
		t.Error("steps 5 and 6 gave the same sample")
	}
}

// A full-width state keeps every channel whatever the widths' sample, and draws the same
// sample as the state without it, so only the masks change.
func TestFullWidthKeepsEveryChannel(t *testing.T) {
	g := mixedCase(t, OpWidthMask, graph.Shape{graph.Batch, 6, 2, 2},
		map[string]*graph.Tensor{"a": graph.NewFloat([]int{1, 3}, []float32{5, 0, -5})}, // the narrowest is the likely draw
		[]string{"a"}, func(n *graph.Node) {
			n.SetFloats("widths", []float32{0.34, 0.67, 1})
			n.SetInts("order", []int64{3, 0, 5, 1, 2, 4})
		})
	p, err := engine.Compile(g, 2, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	x := p.Value("x").Data
	for i := range x {
		x[i] = float32(i + 1)
	}
	run := func(full bool) ([]float32, []int) {
		p.SetState(&engine.StepState{Step: 1, Temperature: 1, Noise: rand.New(rand.NewPCG(1, 1)), Hard: true, FullWidth: full})
		p.Forward(true)
		return append([]float32(nil), p.Value("y").Data...), Sampled(p, "a")
	}
	narrow, s1 := run(false)
	wide, s2 := run(true)
	if !slices.Equal(wide, x) {
		t.Errorf("full width: %v, want the input %v", wide, x)
	}
	if slices.Equal(narrow, x) || !slices.Equal(s1, s2) {
		t.Errorf("the sample: %v without full width (output %v), %v with", s1, narrow, s2)
	}
}
