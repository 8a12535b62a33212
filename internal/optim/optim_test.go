package optim

import (
	"math"
	"testing"
)

// Both optimizers minimize a convex quadratic; SGD's update equals PyTorch's formula on a
// hand-computed step.
func TestOptimizersMinimizeQuadratic(t *testing.T) {
	target := []float32{1, -2, 3}
	for name, mk := range map[string]func(p []Param) Optimizer{
		"sgd":      func(p []Param) Optimizer { return &SGD{Params: p, Momentum: 0.9} },
		"nesterov": func(p []Param) Optimizer { return &SGD{Params: p, Momentum: 0.9, Nesterov: true} },
		"adam":     func(p []Param) Optimizer { return &Adam{Params: p} },
	} {
		x := make([]float32, 3)
		g := make([]float32, 3)
		opt := mk([]Param{{Name: "x", Data: x, Grad: g}})
		lr := 0.05
		if name == "adam" {
			lr = 0.1
		}
		for it := 0; it < 500; it++ {
			for i := range x {
				g[i] = 2 * (x[i] - target[i])
			}
			opt.Step(lr)
		}
		for i := range x {
			if math.Abs(float64(x[i]-target[i])) > 1e-2 {
				t.Errorf("%s: x = %v, want %v", name, x, target)
				break
			}
		}
	}
}

func TestSGDStepByHand(t *testing.T) {
	x, g := []float32{1}, []float32{0.5}
	o := &SGD{Params: []Param{{Name: "w", Data: x, Grad: g}}, Momentum: 0.9, WeightDecay: 0.1}
	o.Step(0.1) // v = 0.5 + 0.1·1 = 0.6; x = 1 − 0.06
	o.Step(0.1) // g' = 0.5 + 0.1·0.94 = 0.594; v = 0.54 + 0.594 = 1.134; x = 0.94 − 0.1134
	if math.Abs(float64(x[0])-0.8266) > 1e-6 {
		t.Errorf("x = %.7f, want 0.8266", x[0])
	}
}

func TestSchedules(t *testing.T) {
	c := Cosine{Base: 0.1}
	if c.LR(0, 100) != 0.1 || math.Abs(c.LR(50, 100)-0.05) > 1e-12 || c.LR(100, 100) != 0 {
		t.Errorf("cosine: %v %v %v", c.LR(0, 100), c.LR(50, 100), c.LR(100, 100))
	}
	s := Step{Base: 1, Gamma: 0.1, Milestones: []float64{0.5, 0.75}}
	if s.LR(10, 100) != 1 || math.Abs(s.LR(60, 100)-0.1) > 1e-12 || math.Abs(s.LR(80, 100)-0.01) > 1e-12 {
		t.Errorf("step: %v %v %v", s.LR(10, 100), s.LR(60, 100), s.LR(80, 100))
	}
}

// With SharedScale, Adam's steps keep the gradients' relative sizes: a parameter with a
// gradient ten times smaller moves ten times less (per-element Adam moves both alike).
func TestAdamSharedScale(t *testing.T) {
	for _, shared := range []bool{false, true} {
		a, b := []float32{0}, []float32{0}
		ga, gb := []float32{1}, []float32{0.1}
		o := &Adam{Params: []Param{{Name: "a", Data: a, Grad: ga}, {Name: "b", Data: b, Grad: gb}}, SharedScale: shared}
		for range 10 {
			o.Step(0.01)
		}
		ratio := float64(b[0] / a[0])
		if shared && (ratio < 0.099 || ratio > 0.101) || !shared && (ratio < 0.99 || ratio > 1.01) {
			t.Errorf("shared %v: moves %v and %v, ratio %.3f", shared, a[0], b[0], ratio)
		}
	}
}
