package engine

import (
	"slices"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/kernels"
)

// Deferred links an op whose output one node alone reads to that node, when the reader can
// compute the output itself as it reads its input, through a kernels.InputMap: in a
// training forward the op then does not write its output (one pass over it fewer each way,
// and its memory is never touched). In an inference forward both run as usual. Two kinds of
// op are deferred:
//
//   - a BatchNormalization, fused with a Relu or not, which then computes only its
//     statistics and per-channel map. Its reader is a Conv on a direct path (3×3 stride 1,
//     pointwise, depthwise: kernels.ConvShape.MapsInput), which maps the input as it copies
//     it into its layout (forward, and again for the weight gradient); an Add, fused with a
//     Relu or not (a residual connection), which maps it plane by plane; or an op with
//     graph.OpDef.MapsInput (an InputMapper).
//   - an elementwise op with graph.OpDef.DefersOutput (an OutputDeferrer: the activation
//     quantizer), read by a Conv on a direct path, which applies the op after the map of the
//     op's own input (Deferred.Defer).
//
// An OutputDeferrer whose backward is elementwise too can leave that to the reader as well
// (Deferred.DeferGrad): the Conv then writes the op's input gradient instead of its own
// (kernels.ConvShape.DxMap), and the op's own output gradient is never written.
type Deferred struct {
	src    *Value // what the reader reads through m
	m      kernels.InputMap
	active bool // set by a training forward of the op, cleared by an inference one

	dst    *GradDst        // the op's input gradient, when the reader may apply its backward (DeferGrad)
	grad   kernels.GradMap // that backward
	folded bool            // the reader's backward applied it (TakeFolded)
	up     *Deferred       // the link of the op's own deferred input (Defer's in), when active

	// A training BatchNormalization's: the sums of its backward, which the Conv writing its
	// output gradient records as it writes it (kernels.BNLanes); nil where it cannot.
	bn     *kernels.BNLanes
	bnDone bool // the Conv recorded them this step
}

// Mapped returns the data a reader of the deferred op's output v reads and the map to read
// it through: v itself and nil unless l is active (l may be nil). A kernel reading through a
// map must compute, element by element, what the op would have stored (kernels.InputMap.Apply
// does).
func (l *Deferred) Mapped(v *Value) ([]float32, *kernels.InputMap) {
	if l == nil || !l.active {
		return v.Data, nil
	}
	return l.src.Data, &l.m
}

// Defer is called by the training forward of an OutputDeferrer, which then does not write
// its output: the reader reads the op's input x instead — through the map of in, the op's
// own deferred input, when that is active (in may be nil) — followed by then, the op as an
// elementwise function y = f(x) (x may be y).
func (l *Deferred) Defer(x *Value, in *Deferred, then func(x, y []float32)) {
	l.src, l.m, l.up = x, kernels.InputMap{}, nil
	if in != nil && in.active {
		l.src, l.m, l.up = in.src, in.m, in
	}
	l.m.Then, l.active = then, true
	l.dst, l.folded = nil, false
}

// DeferGrad is called after Defer by an OutputDeferrer whose backward is elementwise: the
// reader may then apply it as it writes its own input gradient (see kernels.GradMap), writing
// the op's input gradient to dst, and report so through TakeFolded, which the op's Backward
// calls first. grad computes one plane's input gradient from the op's input and output
// gradient and returns the plane's share of a parameter's gradient, which it stores in sums
// (one per plane, N·C). dst must be active.
func (l *Deferred) DeferGrad(dst *GradDst, grad func(t, dy, dx []float32) float64, sums []float64) {
	l.dst = dst
	l.grad = kernels.GradMap{Grad: grad, Sums: sums}
}

// TakeFolded reports whether the reader's backward applied the op's backward (DeferGrad)
// since the last call.
func (l *Deferred) TakeFolded() bool {
	f := l.folded
	l.folded = false
	return f
}

// fold returns, when the op deferred into a reader left its backward to it (DeferGrad), the
// map the reader applies and the input gradient it writes through it, and marks the op's
// backward done; ok is false when the reader computes its own input gradient as usual:
// nothing was left, or the gradient is observed (Plan.ObserveGrad of y, the op's output), or
// it is a later contribution to the op's input gradient that cannot be added in place.
func (l *Deferred) fold(p *Plan, y string) (gm *kernels.GradMap, dx []float32, ok bool) {
	if l == nil || !l.active || l.dst == nil || len(p.gradObs[y]) > 0 || !l.dst.Active() {
		return nil, nil, false
	}
	gm = &l.grad
	gm.Add, gm.BN = false, nil
	dx = l.dst.Buf
	if l.dst.target != nil {
		if dx, ok = l.dst.addInto(); !ok {
			return nil, nil, false
		}
		gm.Add = true
	}
	l.folded = true
	return gm, dx, true
}

// bnLanes returns the sums a BatchNormalization wants recorded, when a Conv reading through
// l writes its output gradient: l is the BatchNormalization's own link (folded false: the
// Conv writes its own input gradient), or that of an op deferred to the Conv with the
// BatchNormalization deferred to it, whose backward the Conv applies (folded).
func (l *Deferred) bnLanes(folded bool) *Deferred {
	if l == nil || !l.active {
		return nil
	}
	if folded {
		l = l.up
	}
	if l == nil || !l.active || l.bn == nil {
		return nil
	}
	return l
}

// takeBNDone reports whether a Conv recorded the BatchNormalization's sums since the last
// call.
func (l *Deferred) takeBNDone() bool {
	d := l != nil && l.bnDone
	if l != nil {
		l.bnDone = false
	}
	return d
}

// Store is called by a forward of an OutputDeferrer that writes its output (inference): the
// reader reads it.
func (l *Deferred) Store() { l.active = false }

// InputMapper is the kernel of an op with graph.OpDef.MapsInput: the engine hands it the
// BatchNormalization deferred to it (its input 0), which it reads through l.Mapped.
type InputMapper interface{ MapInput(l *Deferred) }

// OutputDeferrer is the kernel of an op with graph.OpDef.DefersOutput: the engine hands it
// the link to the node computing its output, for its forward to call l.Defer (training) or
// l.Store (inference).
type OutputDeferrer interface{ DeferOutput(l *Deferred) }

// linkDeferredEnabled lets tests compare plans with and without the links.
var linkDeferredEnabled = true

// linkDeferred finds the ops of a training plan whose output one node reads that can compute
// it (see Deferred), recording the reader's step index by the op's. A value the options name
// (Keep, KeepGrads, Observed) or a graph output stays stored.
func (p *Plan) linkDeferred(opts Options) {
	p.deferred = map[int]int{}
	if !linkDeferredEnabled || opts.NoDeferral {
		return
	}
	readers := map[string][]int{}
	for i, s := range p.steps {
		for _, in := range s.node.Inputs {
			readers[in] = append(readers[in], i)
		}
	}
	for i, s := range p.steps {
		n := s.node
		d, _ := graph.LookupNode(n)
		bn := n.Op == "BatchNormalization"
		if !bn && (d == nil || !d.DefersOutput) || len(n.Outputs) != 1 || len(n.Inputs) == 0 {
			continue
		}
		y := n.Outputs[0]
		r := readers[y]
		if len(r) != 1 || p.Graph.IsOutput(y) || opts.Keep[y] || opts.KeepGrads[y] || opts.Observed[y] {
			continue
		}
		if x := p.Values[n.Inputs[0]]; x == nil || len(x.Shape) != 4 {
			continue
		}
		if p.mapsInput(p.steps[r[0]], y, bn) {
			p.deferred[i] = r[0]
		}
	}
}

// mapsInput reports whether step s, which reads y once, can read it through a map: that of a
// BatchNormalization when bn, else that of an OutputDeferrer.
func (p *Plan) mapsInput(s step, y string, bn bool) bool {
	n := s.node
	d, _ := graph.LookupNode(n)
	switch {
	case bn && d != nil && d.MapsInput && len(n.Inputs) > 0 && n.Inputs[0] == y && !slices.Contains(n.Inputs[1:], y):
		return true
	case n.Op == "Conv" && len(n.Inputs) > 0 && n.Inputs[0] == y && !slices.Contains(n.Inputs[1:], y):
		cs, _, err := convShape(p.Graph, n, p.Values[y].Shape)
		return err == nil && cs.MapsInput()
	case bn && n.Op == "Add" && s.reluMax == 0 && len(n.Inputs) == 2 && n.Inputs[0] != n.Inputs[1]:
		a, b, o := p.Values[n.Inputs[0]], p.Values[n.Inputs[1]], p.Values[n.Outputs[0]]
		return a != nil && b != nil && o != nil && slices.Equal(a.Shape, o.Shape) && slices.Equal(b.Shape, o.Shape)
	}
	return false
}

// attachDeferred hands each linked pair's kernels their shared state, and drops the links
// whose kernels turned out not to be the expected ones.
func (p *Plan) attachDeferred() {
	for i, j := range p.deferred {
		if !p.attach(i, j) {
			delete(p.deferred, i)
		}
	}
	p.attachBNLanes()
}

// attachBNLanes gives the BatchNormalizations whose output gradient a Conv writes (deferred
// to the Conv, or to an op deferred to it) the sums that Conv records for their backward
// (kernels.BNLanes). The sums live from the Conv's backward to the BatchNormalization's, and
// one buffer serves all of them: a BatchNormalization gets it only when no other one's Conv
// runs its backward in between.
func (p *Plan) attachBNLanes() {
	if !kernels.BNLanesAvailable() {
		return
	}
	type span struct{ bn, conv int }
	var spans []span
	for i, j := range p.deferred {
		if _, ok := p.steps[i].kernel.(*batchNorm); !ok {
			continue
		}
		if _, ok := p.steps[j].kernel.(*conv); !ok {
			k, ok := p.deferred[j] // an op deferred to a Conv in turn
			if _, isConv := p.steps[k].kernel.(*conv); !ok || !isConv {
				continue
			}
			j = k
		}
		spans = append(spans, span{i, j})
	}
	size := 0
	var chosen []span
	for _, a := range spans {
		alone := true
		for _, b := range spans {
			if b != a && b.conv > a.bn && b.conv < a.conv {
				alone = false
			}
		}
		if alone {
			chosen = append(chosen, a)
			bn := p.steps[a.bn].kernel.(*batchNorm)
			size = max(size, 32*bn.p.N*bn.p.C)
		}
	}
	lanes := make([]float32, size)
	for _, a := range chosen {
		bn := p.steps[a.bn].kernel.(*batchNorm)
		bn.out.bn = &kernels.BNLanes{P: bn.p, Mean: bn.mean, A: bn.out.m.A, B: bn.out.m.B, Lanes: lanes[:32*bn.p.N*bn.p.C]}
	}
}

// attach links the kernels of steps i (the deferred op) and j (its reader), reporting
// whether they are ones that can be.
func (p *Plan) attach(i, j int) bool {
	y := p.steps[i].node.Outputs[0]
	l := &Deferred{}
	switch k := p.steps[i].kernel.(type) {
	case *batchNorm:
		l.src = k.x
		l.m.A, l.m.B = make([]float32, k.p.C), make([]float32, k.p.C)
		if !attachReader(p.steps[j], y, l, true) {
			return false
		}
		k.out = l
	case OutputDeferrer:
		if !attachReader(p.steps[j], y, l, false) {
			return false
		}
		k.DeferOutput(l)
	default:
		return false
	}
	return true
}

// attachReader hands l to the kernel of step s, which reads y; bn says l is a
// BatchNormalization's.
func attachReader(s step, y string, l *Deferred, bn bool) bool {
	switch k := s.kernel.(type) {
	case *conv:
		k.in = l
	case *addRelu, *binary:
		add, _ := k.(*binary)
		if r, ok := k.(*addRelu); ok {
			add = r.add
		}
		if !bn || !add.same || add.op != '+' {
			return false
		}
		if s.node.Inputs[0] == y {
			add.ma = l
		} else {
			add.mb = l
		}
	case InputMapper:
		if !bn {
			return false
		}
		k.MapInput(l)
	default:
		return false
	}
	return true
}

// isDeferred reports whether name is the output of a linked op.
func (p *Plan) isDeferred(name string) bool {
	for i := range p.deferred {
		if p.steps[i].node.Outputs[0] == name {
			return true
		}
	}
	return false
}
