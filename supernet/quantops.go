package supernet

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/kernels"
	"github.com/qnas/qnas/internal/quant"
)

// Domain is the operator set domain of qnas's own ops in graphs it writes.
const Domain = "qnas"

// The fake quantizers of a fixed architecture (quantization-aware training):
//
//	QuantWeight(W [, γ, σ², g]) → Ŵ  attributes bits (one per output channel, or one for
//	QuantWeight(W, g) → Ŵ            all), axis, pow2, epsilon
//	QuantAct(x, clip) → x̂          attributes bits, signed, pow2
//
// Both round with package quant, so their outputs are what the exported QDQ model computes,
// and pass gradients straight through (STE): dW = dŴ; dx = dx̂ inside the clipping range and
// 0 outside, and the clip learns PACT's gradient, the sum of dx̂ over the clipped inputs
// (signed: minus those clipped below −clip).
//
// With pow2 = 1 the exported scales are powers of two (quant.Pow2WeightScales,
// quant.Pow2Clip): the clip in use is the learned one moved to the nearest such grid, and a
// weight that export folds a BatchNormalization into reads that BatchNormalization's γ and
// running σ² (and its epsilon), so that the folded filter's scale is the power of two, and
// g, the factor a = γ/√(σ²+ε) per filter that chooses that power for filters of at most
// quant.Pow2HeldBits bits (quant.Pow2WeightScales; finer filters take a's power): set when
// the architecture is applied, it follows a at every training step and stays put
// otherwise, so re-estimating the statistics moves the grid with a instead of flipping
// filters between powers of two and back. A weight with the BatchNorm already folded into
// it (the last fine-tuning epoch) reads none of them: its power is the one nearest its own
// grid, as export chooses it for a conv without a BatchNorm.
const (
	OpQuantWeight = "QuantWeight"
	OpQuantAct    = "QuantAct"
)

func init() {
	engine.RegisterOp(&graph.OpDef{
		Op: OpQuantWeight, Domain: Domain, Internal: true, Doc: "per-output-channel symmetric fake quantization of a weight, bits per channel",
		MinInputs: 1, MaxInputs: 4, MinOutputs: 1, MaxOutputs: 1, Weights: []int{0}, State: []int{3}, // g; γ at 1 stays BatchNorm's parameter
		Infer: func(c *graph.Ctx) ([]graph.Shape, error) {
			bits, axis, err := weightQuantAttrs(c.Node, c.In[0])
			if err != nil {
				return nil, err
			}
			if err := foldInputs(c.Node, c.In, len(bits), axis); err != nil {
				return nil, err
			}
			return []graph.Shape{c.In[0]}, nil
		},
	}, buildQuantWeight)
	engine.RegisterOp(&graph.OpDef{
		Op: OpQuantAct, Domain: Domain, Internal: true, Doc: "fake quantization of an activation clipped at a learned bound (PACT)",
		MinInputs: 2, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1, Weights: []int{1},
		MapsInput:    true, // a BatchNormalization(+ReLU) before it is applied as each chunk is read
		DefersOutput: true, // and a direct Conv after it can quantize its input as it reads it
		Infer: func(c *graph.Ctx) ([]graph.Shape, error) {
			if _, _, err := actQuantAttrs(c.Node); err != nil {
				return nil, err
			}
			if graph.Shape(c.In[1]).Elems() != 1 {
				return nil, c.Errorf("clip %q has shape %v, want one value", c.Node.Inputs[1], c.In[1])
			}
			return []graph.Shape{c.In[0]}, nil
		},
	}, buildQuantAct)
}

// weightQuantAttrs returns the bits of every output channel (along axis) of a weight of
// shape w.
func weightQuantAttrs(n *graph.Node, w graph.Shape) (bits []int, axis int, err error) {
	a, err := n.Int("axis", 0)
	if err != nil {
		return nil, 0, err
	}
	if len(w) < 2 || a < 0 || int(a) >= 2 {
		return nil, 0, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("axis %d of a weight of shape %v: want 0 or 1 of a weight of rank ≥ 2", a, w)}
	}
	axis = int(a)
	if axis == 1 && len(w) != 2 {
		return nil, 0, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: "axis 1 is for 2-D (Gemm) weights"}
	}
	b, err := n.Ints("bits", nil)
	if err != nil {
		return nil, 0, err
	}
	ch := w[axis]
	switch len(b) {
	case 1:
		bits = make([]int, ch)
		for i := range bits {
			bits[i] = int(b[0])
		}
	case ch:
		bits = make([]int, ch)
		for i, v := range b {
			bits[i] = int(v)
		}
	default:
		return nil, 0, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("bits has %d values for %d channels", len(b), ch)}
	}
	for _, v := range bits {
		if !quant.ValidBits(v) {
			return nil, 0, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("bitwidth %d: want %d..%d or %d (float)", v, quant.MinBits, quant.MaxBits, quant.Float)}
		}
	}
	return bits, axis, nil
}

// foldInputs checks a QuantWeight's optional inputs: none, γ, σ² and g, or g alone, one
// value per filter, which only a pow2 quantizer of a Conv weight (axis 0) reads.
func foldInputs(n *graph.Node, in []graph.Shape, filters, axis int) error {
	if len(in) == 1 {
		return nil
	}
	if len(in) != 4 || axis != 0 || !Pow2(n) {
		return &graph.NodeError{Node: n.Name, Op: n.Op, Msg: "γ, σ² and g inputs are for a pow2 quantizer of a Conv weight (axis 0)"}
	}
	for _, s := range in[1:] {
		if graph.Shape(s).Elems() != int64(filters) {
			return &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("BatchNorm input of shape %v for %d filters", s, filters)}
		}
	}
	return nil
}

// bnFactor returns |a| = |γ|/√(σ²+ε), the magnitude of the factor a BatchNormalization
// multiplies a filter's output by.
func bnFactor(gamma, variance, eps float32) float64 {
	a, _ := quant.FoldBN(gamma, 0, 0, variance, 0, eps)
	return math.Abs(a)
}

// Pow2 reports whether quantizer n (QuantWeight, QuantAct, or a FrozenBatchNorm or
// QuantBias of their grid) has power-of-two scales.
func Pow2(n *graph.Node) bool {
	v, err := n.Int("pow2", 0)
	return err == nil && v != 0
}

// actQuantAttrs returns a QuantAct node's bits and signedness.
func actQuantAttrs(n *graph.Node) (bits int, signed bool, err error) {
	b, err := n.Int("bits", 8)
	if err != nil {
		return 0, false, err
	}
	s, err := n.Int("signed", 0)
	if err != nil {
		return 0, false, err
	}
	if !quant.ValidBits(int(b)) {
		return 0, false, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("bitwidth %d: want %d..%d or %d (float)", b, quant.MinBits, quant.MaxBits, quant.Float)}
	}
	return int(b), s != 0, nil
}

type quantWeight struct {
	w, y   *engine.Value
	dw     *engine.GradDst
	bits   []int
	axis   int
	scales []float32
	t      []float32 // axis 1: the weight transposed to rows of output channels
	pow2   bool
	gamma  *engine.Value // with pow2, the BatchNorm folded into the filters at export (or nil)
	vr     *engine.Value
	g      *engine.Value // the factors that choose the powers of two (with gamma)
	follow bool          // this forward pass sets g to the BatchNorm's factors
	dgamma *engine.GradDst
	dvr    *engine.GradDst
	eps    float32
}

func buildQuantWeight(b *engine.Build) (engine.Kernel, error) {
	bits, axis, err := weightQuantAttrs(b.Node, b.In[0].Shape)
	if err != nil {
		return nil, err
	}
	k := &quantWeight{w: b.In[0], y: b.Out[0], dw: b.InGrad(0), bits: bits, axis: axis, scales: make([]float32, len(bits)),
		pow2: Pow2(b.Node)}
	if axis == 1 {
		k.t = make([]float32, b.In[0].Len())
	}
	if len(b.In) == 4 {
		eps, err := b.Node.Float("epsilon", 1e-5)
		if err != nil {
			return nil, err
		}
		k.gamma, k.vr, k.g, k.eps = b.In[1], b.In[2], b.In[3], eps
		k.dgamma, k.dvr = b.InGrad(1), b.InGrad(2)
	}
	return k, nil
}

func (k *quantWeight) Forward(train bool) {
	k.follow = train && k.dw != nil // training: the powers of two follow the BatchNorm
	if k.axis == 0 {
		k.quantize(k.w.Data, k.y.Data)
		return
	}
	// [in, out] → rows of out channels, quantize, and back.
	rows, cols := k.w.Shape[0], k.w.Shape[1]
	transpose(k.w.Data, k.t, rows, cols)
	k.quantize(k.t, k.t)
	transpose(k.t, k.y.Data, cols, rows)
}

// quantize fake-quantizes the rows of output channels w into out (which may alias w).
func (k *quantWeight) quantize(w, out []float32) {
	if !k.pow2 {
		quant.FakeQuantWeights(w, k.bits, k.scales, out)
		return
	}
	per := len(w) / len(k.bits)
	for c, b := range k.bits {
		if b == quant.Float {
			continue
		}
		a, g := 1.0, 1.0
		if k.gamma != nil {
			a = bnFactor(k.gamma.Data[c], k.vr.Data[c], k.eps)
			if k.follow {
				k.g.Data[c] = float32(a)
			}
			g = float64(k.g.Data[c])
		}
		k.scales[c], _, _ = quant.Pow2WeightScales(quant.MaxAbs(w[c*per:(c+1)*per]), b, a, g)
	}
	quant.QuantizeRows(w, k.bits, k.scales, out)
}

func (k *quantWeight) Backward() {
	if k.dw != nil {
		copy(k.dw.Buf, k.y.Grad)
	}
	// γ and σ² only set the grid (as the constant g does): no gradient flows to them
	// through it.
	for _, d := range []*engine.GradDst{k.dgamma, k.dvr} {
		if d != nil {
			clear(d.Buf)
		}
	}
}

// transpose writes the rows×cols matrix a transposed into t.
func transpose(a, t []float32, rows, cols int) {
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			t[c*rows+r] = a[r*cols+c]
		}
	}
}

type quantAct struct {
	x, clip, y *engine.Value
	dx, dclip  *engine.GradDst
	bits       int
	signed     bool
	partial    []float64 // per chunk: its share of the clip's gradient
	pow2       bool
	in         *engine.Deferred                  // the BatchNormalization writing x, when deferred to this kernel
	out        *engine.Deferred                  // the Conv reading y, when this kernel is deferred to it
	grid       quant.ActGrid                     // the grid of the last forward
	gridClip   float32                           // and its clip
	then       func(x, y []float32)              // grid.Apply, bound once
	planeGrad  func(t, dy, dx []float32) float64 // gradPlane, bound once
	sums       []float64                         // 4-D x: per plane (n·C + c), its share of the clip's gradient
}

// MapInput has the kernel read x through the deferred BatchNormalization l (engine.InputMapper).
func (k *quantAct) MapInput(l *engine.Deferred) { k.in = l }

// DeferOutput has a training forward leave y to the Conv reading it (engine.OutputDeferrer),
// which applies the grid of the last forward.
// Its backward goes along when the Conv can apply it (engine.Deferred.DeferGrad).
func (k *quantAct) DeferOutput(l *engine.Deferred) {
	k.out, k.then, k.planeGrad = l, k.grid.Apply, k.gradPlane
}

// gradPlane is the backward on one plane of x: the input gradient of the grid of the last
// forward, and the plane's share of the clip's gradient.
func (k *quantAct) gradPlane(t, dy, dx []float32) float64 {
	return quant.ActGrad(t, dy, dx, k.gridClip, k.signed)
}

// actChunk is the number of elements one task of a QuantAct kernel handles; fixed, so the
// clip's gradient sums in the same order whatever the thread count.
const actChunk = 1 << 14

func buildQuantAct(b *engine.Build) (engine.Kernel, error) {
	bits, signed, err := actQuantAttrs(b.Node)
	if err != nil {
		return nil, err
	}
	n := (b.In[0].Len() + actChunk - 1) / actChunk
	k := &quantAct{x: b.In[0], clip: b.In[1], y: b.Out[0], dx: b.InGrad(0), dclip: b.InGrad(1), bits: bits, signed: signed,
		partial: make([]float64, n), pow2: Pow2(b.Node)}
	if sh := k.x.Shape; len(sh) == 4 {
		k.sums = make([]float64, sh[0]*sh[1])
	}
	return k, nil
}

// chunks runs fn over the kernel's chunks [lo, hi) of the activation in parallel (actChunks).
func (k *quantAct) chunks(fn func(c, lo, hi int, x []float32)) {
	actChunks(k.x, k.in, actChunk, actChunk, fn)
}

// chunkBufs holds the workers' buffers of mapped chunks (actChunks), reused across steps.
var chunkBufs sync.Pool

// actChunks runs fn over the chunks c, elements [lo, hi) = [c·size, (c+1)·size) (the last
// shorter), of activation x in parallel (cost per chunk), handing it the chunk's input: x's
// elements, or, when a deferred BatchNormalization in writes x, their map (computed into a
// buffer of the worker's). A size of H·W makes the chunks the planes n·C + c.
func actChunks(xv *engine.Value, in *engine.Deferred, size, cost int, fn func(c, lo, hi int, x []float32)) {
	n := xv.Len()
	src, m := in.Mapped(xv)
	sh := xv.Shape
	kernels.ParFor((n+size-1)/size, cost, func(c0, c1 int) {
		var tmp []float32
		if m != nil {
			b, _ := chunkBufs.Get().(*[]float32)
			if b == nil || cap(*b) < size {
				b = new([]float32)
				*b = make([]float32, size)
			}
			defer chunkBufs.Put(b)
			tmp = (*b)[:size]
		}
		for c := c0; c < c1; c++ {
			lo, hi := c*size, min((c+1)*size, n)
			x := src[lo:hi]
			if m != nil {
				m.Apply(x, lo, sh[1], n/(sh[0]*sh[1]), tmp[:hi-lo])
				x = tmp[:hi-lo]
			}
			fn(c, lo, hi, x)
		}
	})
}

func (k *quantAct) Forward(train bool) {
	clip := k.clipValue()
	k.grid, k.gridClip = quant.NewActGrid(clip, k.bits, k.signed), clip
	if k.out != nil {
		if train {
			k.out.Defer(k.x, k.in, k.then)
			if k.dx.Active() && k.bits != quant.Float && k.sums != nil {
				k.out.DeferGrad(k.dx, k.planeGrad, k.sums)
			}
			return
		}
		k.out.Store()
	}
	k.chunks(func(_, lo, hi int, x []float32) { k.grid.Apply(x, k.y.Data[lo:hi]) })
}

// clipValue is the clip in use (ClipInUse).
func (k *quantAct) clipValue() float32 { return ClipInUse(k.clip.Data[0], k.bits, k.signed, k.pow2) }

// ClipInUse is the clip a QuantAct of learned clip c uses: a learned bound can be pushed to
// or below zero by a bad step, which would make the grid empty, so it is kept at a small
// positive value; with pow2 it is moved to the grid of the nearest power-of-two scale.
func ClipInUse(c float32, bits int, signed, pow2 bool) float32 {
	c = max(c, 1e-6)
	if pow2 {
		c = quant.Pow2Clip(c, bits, signed)
	}
	return c
}

func (k *quantAct) Backward() {
	if k.bits == quant.Float {
		if k.dx != nil {
			copy(k.dx.Buf, k.y.Grad)
		}
		if k.dclip != nil {
			k.dclip.Buf[0] = 0
		}
		return
	}
	clip := k.clipValue()
	var dx []float32
	if k.dx != nil {
		dx = k.dx.Buf
	}
	partial := k.partial
	switch {
	case k.out != nil && k.out.TakeFolded():
		// The Conv reading y wrote dx and the planes' sums.
		partial = k.sums
		foldedBackwards.Add(1)
	case k.sums != nil:
		// Plane by plane, as the Conv does when it applies this backward, so the clip's
		// gradient has the same bits either way.
		partial = k.sums
		sh := k.x.Shape
		actChunks(k.x, k.in, sh[2]*sh[3], sh[2]*sh[3], func(p, lo, hi int, x []float32) {
			var d []float32
			if dx != nil {
				d = dx[lo:hi]
			}
			k.sums[p] = quant.ActGrad(x, k.y.Grad[lo:hi], d, clip, k.signed)
		})
	default:
		k.chunks(func(c, a, b int, x []float32) {
			var d []float32
			if dx != nil {
				d = dx[a:b]
			}
			k.partial[c] = quant.ActGrad(x, k.y.Grad[a:b], d, clip, k.signed)
		})
	}
	if k.dclip != nil {
		dc := 0.0
		for _, p := range partial {
			dc += p
		}
		k.dclip.Buf[0] = float32(dc)
	}
}

// foldedBackwards counts the QuantAct backward passes a Conv applied (tests read it).
var foldedBackwards atomic.Int64
