package engine_test

import (
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
)

// An op defined outside the engine, as the supernet defines its quantizers: one
// registration (shape rule, weights and kernel), nothing edited in graph or engine.
// TestScaleShift computes y = x·s + 1 with a learnable scalar s.
func init() {
	engine.RegisterOp(&graph.OpDef{
		Op: "TestScaleShift", Domain: "test", Doc: "y = x·s + 1 (test op defined outside the engine)",
		MinInputs: 2, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1, Weights: []int{1},
		Infer: func(c *graph.Ctx) ([]graph.Shape, error) { return []graph.Shape{c.In[0]}, nil },
	}, func(b *engine.Build) (engine.Kernel, error) {
		return &scaleShift{x: b.In[0], s: b.In[1], y: b.Out[0], dx: b.InGrad(0), ds: b.InGrad(1)}, nil
	})
}

type scaleShift struct {
	x, s, y *engine.Value
	dx, ds  *engine.GradDst
}

func (k *scaleShift) Forward(bool) {
	for i, v := range k.x.Data {
		k.y.Data[i] = v*k.s.Data[0] + 1
	}
}

func (k *scaleShift) Backward() {
	var ds float32
	for i, g := range k.y.Grad {
		if k.dx != nil {
			k.dx.Buf[i] = g * k.s.Data[0]
		}
		ds += g * k.x.Data[i]
	}
	if k.ds != nil {
		k.ds.Buf[0] = ds
	}
}
