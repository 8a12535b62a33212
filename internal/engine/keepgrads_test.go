package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/kernels"
	"github.com/qnas/qnas/internal/testenv"
)

// convChain is x → (Conv 3×3 → Relu) × n → GlobalAveragePool → Flatten, every conv from
// 4 to 4 channels (the last to 3 classes), with the weights of seed; the values are named
// v0 (the input), v1, … after each Relu.
func convChain(t *testing.T, n, first int, seed uint64) *graph.Graph {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 0))
	g := graph.New("chain")
	g.Opset = 13
	in := fmt.Sprintf("v%d", first)
	g.Inputs = []string{in}
	g.Shapes[in] = graph.Shape{2, 4, 6, 6}
	for i := first; i < n; i++ {
		oc := 4
		if i == n-1 {
			oc = 3
		}
		w := make([]float32, oc*4*9)
		for j := range w {
			w[j] = float32(r.NormFloat64() * 0.3)
		}
		wn, c, y := fmt.Sprintf("w%d", i), fmt.Sprintf("c%d", i), fmt.Sprintf("v%d", i+1)
		g.Consts[wn] = graph.NewFloat([]int{oc, 4, 3, 3}, w)
		g.Nodes = append(g.Nodes,
			&graph.Node{Name: "conv" + c, Op: "Conv", Inputs: []string{fmt.Sprintf("v%d", i), wn}, Outputs: []string{c},
				Attrs: map[string]*graph.Attr{"pads": ints(1, 1, 1, 1)}},
			&graph.Node{Name: "relu" + c, Op: "Relu", Inputs: []string{c}, Outputs: []string{y}})
	}
	last := fmt.Sprintf("v%d", n)
	g.Nodes = append(g.Nodes, &graph.Node{Name: "gap", Op: "GlobalAveragePool", Inputs: []string{last}, Outputs: []string{"pooled"}},
		&graph.Node{Name: "flat", Op: "Flatten", Inputs: []string{"pooled"}, Outputs: []string{"logits"}})
	g.Outputs = []string{"logits"}
	if err := g.InferShapes(); err != nil {
		t.Fatal(err)
	}
	return g
}

// An activation in Options.KeepGrads still holds its gradient after Backward, though the
// layers before it reuse gradient buffers of its size: it equals the input gradient of the
// rest of the network run on that activation alone.
func TestKeepGradsSurviveBackward(t *testing.T) {
	whole := convChain(t, 5, 0, 7)
	rest := convChain(t, 5, 2, 7) // v2 onward, with the same weights
	for i := 2; i < 5; i++ {
		w := fmt.Sprintf("w%d", i)
		copy(rest.Consts[w].F, whole.Consts[w].F)
	}
	labels := []int32{0, 2}
	diff := func(keep map[string]bool) float64 {
		p, err := engine.Compile(whole, 2, engine.Options{KeepGrads: keep})
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(3, 3))
		for i := range p.Value("v0").Data {
			p.Value("v0").Data[i] = float32(r.NormFloat64())
		}
		p.Forward(true)
		p.SoftmaxCrossEntropy("logits", labels)
		p.Backward()
		q, err := engine.Compile(rest, 2, engine.Options{InputGrads: true})
		if err != nil {
			t.Fatal(err)
		}
		copy(q.Value("v2").Data, p.Value("v2").Data)
		q.Forward(true)
		q.SoftmaxCrossEntropy("logits", labels)
		q.Backward()
		worst := 0.0
		for i, v := range q.Value("v2").Grad {
			worst = max(worst, math.Abs(float64(v-p.Value("v2").Grad[i])))
		}
		if slicesZero(q.Value("v2").Grad) {
			t.Fatal("the reference gradient is all zero")
		}
		return worst
	}
	if d := diff(map[string]bool{"v2": true}); d > 1e-6 {
		t.Errorf("kept gradient of v2 differs from the reference by %g", d)
	}
	t.Logf("without KeepGrads: difference %g (the buffer is reused)", diff(nil))
}

func slicesZero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}

// ObserveGrad hands out an activation's gradient as soon as Backward completes it, in
// plans that share gradient memory: on ResNet-20 (BatchNorm kept) every activation's
// observed gradient equals the one a plan that keeps them all holds after Backward. The
// Convs' outputs whose gradients are never stored (their Conv computes them from the
// BatchNormalization's as it reads them) are refused, and a plan that keeps them stores them
// (they are not left zero); graph inputs, graph outputs and unknown names are refused.
func TestObserveGradMatchesKeptGradients(t *testing.T) {
	g := loadCanonical(t, testenv.Path("testdata", "models", "resnet20_bn.onnx"), false)
	const batch = 3
	var names []string
	keep := map[string]bool{}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if !g.IsOutput(o) {
				names = append(names, o)
				keep[o] = true
			}
		}
	}
	run := func(p *engine.Plan) {
		r := rand.New(rand.NewPCG(5, 5))
		for i := range p.Value(g.Inputs[0]).Data {
			p.Value(g.Inputs[0]).Data[i] = float32(r.NormFloat64())
		}
		p.Forward(true)
		p.SoftmaxCrossEntropy(g.Outputs[0], []int32{1, 4, 7})
		p.Backward()
	}
	kept, err := engine.Compile(g, batch, engine.Options{KeepGrads: keep})
	if err != nil {
		t.Fatal(err)
	}
	run(kept)
	p, err := engine.Compile(g, batch, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]float32{}
	observed, lazy := 0, 0
	for _, name := range names {
		if v := p.Value(name); v == nil || v.Grad == nil {
			continue // fused away, or no gradient
		}
		if err := p.ObserveGrad(name, func(g []float32) { seen[name] = slices.Clone(g) }); err != nil {
			if !strings.Contains(err.Error(), "never stored") {
				t.Fatalf("%s: %v", name, err)
			}
			lazy++
			if slicesZero(kept.Value(name).Grad) {
				t.Errorf("%s: kept gradient is all zero", name)
			}
			continue
		}
		observed++
	}
	run(p)
	// The lazy Convs are those on a direct path (none in a build without them).
	direct := kernels.ConvShape{N: batch, C: 16, H: 28, W: 28, OC: 16, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}.Direct()
	if observed < 30 || direct && lazy < 20 {
		t.Fatalf("%d activations observed, %d refused", observed, lazy)
	}
	for name, g := range seen {
		if !slices.Equal(g, kept.Value(name).Grad) {
			t.Errorf("%s: observed gradient differs from the kept one", name)
		}
	}
	if len(seen) != observed {
		t.Errorf("%d of %d observers called", len(seen), observed)
	}
	for _, name := range []string{g.Inputs[0], g.Outputs[0], "no such value"} {
		if err := p.ObserveGrad(name, func([]float32) {}); err == nil {
			t.Errorf("ObserveGrad(%q) accepted", name)
		}
	}
}
