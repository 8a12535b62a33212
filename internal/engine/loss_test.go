package engine

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/qnas/qnas/graph"
)

// The distillation loss is the cross-entropy at alpha 0, and its gradient with respect to
// the logits matches central differences at any weight and temperature.
func TestDistillCrossEntropy(t *testing.T) {
	g := graph.New("loss")
	g.Inputs, g.Outputs = []string{"x"}, []string{"y"}
	g.Shapes["x"] = graph.Shape{graph.Batch, 5}
	g.Nodes = []*graph.Node{{Name: "id", Op: "Relu", Inputs: []string{"x"}, Outputs: []string{"y"}}}
	if err := g.InferShapes(); err != nil {
		t.Fatal(err)
	}
	p, err := Compile(g, 3, Options{InputGrads: true})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	y := p.Value("y")
	labels := []int32{1, 4, 0}
	teacher := make([]float32, 15)
	for i := range teacher {
		teacher[i] = float32(r.NormFloat64() * 2)
	}
	set := func() {
		for i := range y.Data {
			y.Data[i] = float32(r.NormFloat64() * 2)
		}
	}
	set()
	ce, _ := p.SoftmaxCrossEntropy("y", labels)
	if kd, _ := p.DistillCrossEntropy("y", labels, teacher, 3, 0); math.Abs(kd-ce) > 1e-12 {
		t.Errorf("alpha 0: %v, cross-entropy %v", kd, ce)
	}
	for _, c := range []struct{ temp, alpha float64 }{{1, 1}, {4, 0.5}, {2, 0.9}} {
		set()
		p.DistillCrossEntropy("y", labels, teacher, c.temp, c.alpha)
		grad := append([]float32(nil), y.Grad...)
		for i := range y.Data {
			old := y.Data[i]
			const h = 1e-3
			y.Data[i] = old + h
			lp, _ := p.DistillCrossEntropy("y", labels, teacher, c.temp, c.alpha)
			y.Data[i] = old - h
			lm, _ := p.DistillCrossEntropy("y", labels, teacher, c.temp, c.alpha)
			y.Data[i] = old
			if num := (lp - lm) / (2 * h); math.Abs(num-float64(grad[i])) > 1e-3*max(1e-2, math.Abs(num)) {
				t.Errorf("T %g alpha %g: d loss/d y[%d] = %g, finite difference %g", c.temp, c.alpha, i, grad[i], num)
			}
		}
	}
}
