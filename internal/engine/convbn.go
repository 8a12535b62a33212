package engine

import (
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/kernels"
)

// convBN links a Conv to the BatchNormalization (fused with a Relu or not) that is the
// only reader of its output and runs right after it. In training:
//   - forward, the Conv gathers its output's batch moments while writing it and the
//     BatchNormalization uses them instead of a pass of its own;
//   - backward, when lazy, the BatchNormalization computes only its parameter gradients
//     and the coefficients of its input gradient, and the Conv computes that gradient
//     plane by plane as its backward pass reads it, so it is never stored and read back.
type convBN struct {
	moments   *kernels.Moments
	lazy      bool // the Conv has no bias and a direct path (kernels.ConvShape.Direct)
	grad      *kernels.BNInputGrad
	gradReady bool // set by the BatchNormalization's lazy backward, cleared by the Conv's
}

// linkConvBNEnabled lets tests compare plans with and without the links.
var linkConvBNEnabled = true

// linkConvBN finds the Conv → BatchNormalization pairs of a training plan, before its
// buffers are allocated (a lazy pair keeps the BatchNormalization's output gradient alive
// one step longer; see allocGradients). A Conv output in keepGrads is not lazy: its
// gradient is stored.
func (p *Plan) linkConvBN(keepGrads map[string]bool) {
	readers := map[string]int{}
	for _, s := range p.steps {
		for _, in := range s.node.Inputs {
			readers[in]++
		}
	}
	p.convBN = map[int]*convBN{}
	if !linkConvBNEnabled {
		return
	}
	for i := 0; i+1 < len(p.steps); i++ {
		c, b := p.steps[i].node, p.steps[i+1].node
		if momentRole(c) != graph.MomentSource || momentRole(b) != graph.MomentSink || p.steps[i].relu {
			continue
		}
		y := c.Outputs[0]
		if len(b.Inputs) == 0 || b.Inputs[0] != y || readers[y] != 1 || p.Graph.IsOutput(y) {
			continue
		}
		x := p.Values[c.Inputs[0]]
		s, ci, err := convShape(p.Graph, c, x.Shape)
		if err != nil {
			continue // the Conv's builder reports it
		}
		p.convBN[i] = &convBN{lazy: !ci.HasBias && s.Direct() && p.steps[i+1].backward && !keepGrads[y]}
	}
}

// attachConvBN hands each linked pair's kernels their shared state.
func (p *Plan) attachConvBN() {
	for i, l := range p.convBN {
		c, ok1 := p.steps[i].kernel.(*conv)
		b, ok2 := p.steps[i+1].kernel.(*batchNorm)
		if !ok1 || !ok2 {
			continue
		}
		l.moments = kernels.NewMoments(c.s.N, c.s.OC)
		if l.lazy {
			l.grad = kernels.NewBNInputGrad(c.s.OC)
		}
		c.link, b.link = l, l
	}
}
