package engine

import (
	"slices"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/kernels"
)

// DeferredBN links a BatchNormalization (fused with a Relu or not) to the one node that
// reads its output when that node can apply the normalization itself: a Conv on a direct
// path (3×3 stride 1, pointwise, depthwise: kernels.ConvShape.MapsInput), which maps the
// input as it copies it into its layout (forward, and again for the weight gradient); an
// Add, fused with a Relu or not (a residual connection), which maps it plane by plane; or
// an op with graph.OpDef.MapsInput (an InputMapper). In a training forward the
// BatchNormalization then only computes its statistics and per-channel map: its output is
// never written and read back (one pass over it fewer each way, and its memory is never
// touched). In an inference forward both run as usual.
type DeferredBN struct {
	src    *Value // the BatchNormalization's input
	aff    kernels.InputAffine
	active bool // set by a training forward of the BatchNormalization, cleared by an inference one
}

// Mapped returns the data a reader of the BatchNormalization's output v reads and the map
// to read it through: v itself and nil unless l is active (l may be nil). A kernel reading
// through a map must compute, element by element, what the BatchNormalization would have
// stored (kernels.InputAffine.Apply does).
func (l *DeferredBN) Mapped(v *Value) ([]float32, *kernels.InputAffine) {
	if l == nil || !l.active {
		return v.Data, nil
	}
	return l.src.Data, &l.aff
}

// InputMapper is the kernel of an op with graph.OpDef.MapsInput: the engine hands it the
// BatchNormalization deferred to it (its input 0), which it reads through l.Mapped.
type InputMapper interface{ MapInput(l *DeferredBN) }

// linkDeferredBNEnabled lets tests compare plans with and without the links.
var linkDeferredBNEnabled = true

// linkDeferredBN finds the BatchNormalizations of a training plan whose output one node
// reads that can map it (see DeferredBN), recording the reader's step index by the
// BatchNormalization's. A value the options name (Keep, KeepGrads, Observed) or a graph
// output stays stored.
func (p *Plan) linkDeferredBN(opts Options) {
	p.deferredBN = map[int]int{}
	if !linkDeferredBNEnabled || opts.StoreBatchNorm {
		return
	}
	readers := map[string][]int{}
	for i, s := range p.steps {
		for _, in := range s.node.Inputs {
			readers[in] = append(readers[in], i)
		}
	}
	for i, s := range p.steps {
		if s.node.Op != "BatchNormalization" || len(s.node.Outputs) != 1 || len(s.node.Inputs) == 0 {
			continue
		}
		y := s.node.Outputs[0]
		r := readers[y]
		if len(r) != 1 || p.Graph.IsOutput(y) || opts.Keep[y] || opts.KeepGrads[y] || opts.Observed[y] {
			continue
		}
		if x := p.Values[s.node.Inputs[0]]; x == nil || len(x.Shape) != 4 {
			continue
		}
		if p.mapsInput(p.steps[r[0]], y) {
			p.deferredBN[i] = r[0]
		}
	}
}

// mapsInput reports whether step s, which reads y once, can read it through a map.
func (p *Plan) mapsInput(s step, y string) bool {
	n := s.node
	d, _ := graph.LookupNode(n)
	switch {
	case d != nil && d.MapsInput && len(n.Inputs) > 0 && n.Inputs[0] == y && !slices.Contains(n.Inputs[1:], y):
		return true
	case n.Op == "Conv" && len(n.Inputs) > 0 && n.Inputs[0] == y && !slices.Contains(n.Inputs[1:], y):
		cs, _, err := convShape(p.Graph, n, p.Values[y].Shape)
		return err == nil && cs.MapsInput()
	case n.Op == "Add" && s.reluMax == 0 && len(n.Inputs) == 2 && n.Inputs[0] != n.Inputs[1]:
		a, b, o := p.Values[n.Inputs[0]], p.Values[n.Inputs[1]], p.Values[n.Outputs[0]]
		return a != nil && b != nil && o != nil && slices.Equal(a.Shape, o.Shape) && slices.Equal(b.Shape, o.Shape)
	}
	return false
}

// attachDeferredBN hands each linked pair's kernels their shared state, and drops the
// links whose kernels turned out not to be the expected ones.
func (p *Plan) attachDeferredBN() {
	for i, j := range p.deferredBN {
		b, ok := p.steps[i].kernel.(*batchNorm)
		if !ok {
			delete(p.deferredBN, i)
			continue
		}
		l := &DeferredBN{src: b.x}
		l.aff.A, l.aff.B = make([]float32, b.p.C), make([]float32, b.p.C)
		y := p.steps[i].node.Outputs[0]
		switch k := p.steps[j].kernel.(type) {
		case *conv:
			k.in = l
		case *addRelu, *binary:
			add, _ := k.(*binary)
			if r, ok := k.(*addRelu); ok {
				add = r.add
			}
			if !add.same || add.op != '+' {
				delete(p.deferredBN, i)
				continue
			}
			if p.steps[j].node.Inputs[0] == y {
				add.ma = l
			} else {
				add.mb = l
			}
		case InputMapper:
			k.MapInput(l)
		default:
			delete(p.deferredBN, i)
			continue
		}
		b.out = l
	}
}

// deferred reports whether name is the output of a linked BatchNormalization.
func (p *Plan) deferred(name string) bool {
	for i := range p.deferredBN {
		if p.steps[i].node.Outputs[0] == name {
			return true
		}
	}
	return false
}
