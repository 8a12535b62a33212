package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
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
