package supernet

import (
	"fmt"
	"math"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/kernels"
	"github.com/qnas/qnas/internal/quant"
)

// The search's mixed ops. Each reads logits α (a learnable constant, one row per choice
// unit) and relaxes its choice with Gumbel-softmax weights p = softmax((α + g)/τ), g Gumbel
// noise, resampled for every forward pass (engine.Plan.SetState):
//
//	MixedWeight(W, α[units, K]) → Σ_k p_uk·Q_{b_k}(W_u)   attributes bits (K), axis, units
//	MixedAct(x, α[1, K], clips[K]) → Σ_k p_k·Q_{b_k}(x; clip_k)   attributes bits (K), signed
//	WidthMask(x, α[1, K]) → x·m, m_c = Σ_k p_k·1[rank_c < n_k]   attributes widths (K), order,
//	  axis (of the channels: 1, or the last of a channels-last tensor)
//
// Convolution being bilinear, a conv reading a MixedWeight and a MixedAct computes exactly
// the p⊗q-weighted mixture of every (weight bits, activation bits) pair with one
// convolution. A WidthMask keeps the n_k = max(1, round(w_k·C)) most important channels
// under option k (order lists the channels, most important first), so its output is the
// expected mask over the width choices. Gradients: straight through the quantizers (as
// QuantWeight and QuantAct), PACT for each option's clip, and the relaxation's own for α.
const (
	OpMixedWeight = "MixedWeight"
	OpMixedAct    = "MixedAct"
	OpWidthMask   = "WidthMask"
)

func init() {
	engine.RegisterOp(&graph.OpDef{
		Op: OpMixedWeight, Domain: Domain, Internal: true, Doc: "the search's composite weight Σ_k p_k·Q_{b_k}(W) per choice unit of filters",
		MinInputs: 2, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1, Weights: []int{0, 1},
		Infer: func(c *graph.Ctx) ([]graph.Shape, error) {
			bits, axis, units, err := mixedWeightAttrs(c.Node, c.In[0])
			if err != nil {
				return nil, err
			}
			if a := c.In[1]; len(a) != 2 || a[0] != units || a[1] != len(bits) {
				return nil, c.Errorf("logits %q have shape %v, want [%d %d]", c.Node.Inputs[1], a, units, len(bits))
			}
			_ = axis
			return []graph.Shape{c.In[0]}, nil
		},
	}, buildMixedWeight)
	engine.RegisterOp(&graph.OpDef{
		Op: OpMixedAct, Domain: Domain, Internal: true, Doc: "the search's composite input Σ_k p_k·Q_{b_k}(x), one learned clip per bitwidth",
		MinInputs: 3, MaxInputs: 3, MinOutputs: 1, MaxOutputs: 1, Weights: []int{1, 2},
		MapsInput: true, // a BatchNormalization(+ReLU) before it is applied as each chunk is read
		Infer: func(c *graph.Ctx) ([]graph.Shape, error) {
			bits, err := bitsAttr(c.Node)
			if err != nil {
				return nil, err
			}
			if a := c.In[1]; len(a) != 2 || a[0] != 1 || a[1] != len(bits) {
				return nil, c.Errorf("logits %q have shape %v, want [1 %d]", c.Node.Inputs[1], a, len(bits))
			}
			if cl := c.In[2]; len(cl) != 1 || cl[0] != len(bits) {
				return nil, c.Errorf("clips %q have shape %v, want [%d]", c.Node.Inputs[2], cl, len(bits))
			}
			return []graph.Shape{c.In[0]}, nil
		},
	}, buildMixedAct)
	engine.RegisterOp(&graph.OpDef{
		Op: OpWidthMask, Domain: Domain, Internal: true, Doc: "the search's expected channel mask over width choices, channels ranked by importance",
		MinInputs: 2, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1, Weights: []int{1},
		Infer: func(c *graph.Ctx) ([]graph.Shape, error) {
			x := c.In[0]
			axis, err := maskAxis(c.Node, x)
			if err != nil {
				return nil, err
			}
			widths, _, err := widthAttrs(c.Node, x[axis])
			if err != nil {
				return nil, err
			}
			if a := c.In[1]; len(a) != 2 || a[0] != 1 || a[1] != len(widths) {
				return nil, c.Errorf("logits %q have shape %v, want [1 %d]", c.Node.Inputs[1], a, len(widths))
			}
			return []graph.Shape{x}, nil
		},
	}, buildWidthMask)
}

func bitsAttr(n *graph.Node) ([]int, error) {
	b, err := n.Ints("bits", nil)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: "bits is empty"}
	}
	out := make([]int, len(b))
	for i, v := range b {
		if v < quant.MinBits || v > quant.MaxBits {
			return nil, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("bitwidth %d: want %d..%d", v, quant.MinBits, quant.MaxBits)}
		}
		out[i] = int(v)
	}
	return out, nil
}

func mixedWeightAttrs(n *graph.Node, w graph.Shape) (bits []int, axis, units int, err error) {
	if bits, err = bitsAttr(n); err != nil {
		return
	}
	a, err := n.Int("axis", 0)
	if err != nil {
		return
	}
	u, err := n.Int("units", 1)
	if err != nil {
		return
	}
	if len(w) < 2 || a < 0 || a > 1 || a == 1 && len(w) != 2 {
		return nil, 0, 0, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("axis %d of a weight of shape %v", a, w)}
	}
	axis, units = int(a), int(u)
	if units < 1 || w[axis]%units != 0 {
		return nil, 0, 0, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("%d units do not divide %d filters", units, w[axis])}
	}
	return bits, axis, units, nil
}

// maskAxis returns the channel axis of a WidthMask over an input of shape x.
func maskAxis(n *graph.Node, x graph.Shape) (int, error) {
	a, err := n.Int("axis", 1)
	if err != nil {
		return 0, err
	}
	if a < 1 || int(a) >= len(x) {
		return 0, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("axis %d of an input of shape %v: want a channel axis after the batch", a, x)}
	}
	return int(a), nil
}

func widthAttrs(n *graph.Node, channels int) (keep []int, order []int, err error) {
	w, err := n.Floats("widths", nil)
	if err != nil {
		return nil, nil, err
	}
	o, err := n.Ints("order", nil)
	if err != nil {
		return nil, nil, err
	}
	if len(w) == 0 || len(o) != channels {
		return nil, nil, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("%d widths and %d ranked channels for %d channels", len(w), len(o), channels)}
	}
	for _, f := range w {
		if !(f > 0 && f <= 1) {
			return nil, nil, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("width %g is outside (0, 1]", f)}
		}
		keep = append(keep, KeptChannels(float64(f), channels))
	}
	seen := make([]bool, channels)
	order = make([]int, channels)
	for i, c := range o {
		if c < 0 || int(c) >= channels || seen[c] {
			return nil, nil, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: "order is not a permutation of the channels"}
		}
		seen[c] = true
		order[i] = int(c)
	}
	return keep, order, nil
}

// KeptChannels is the number of channels a width fraction keeps: max(1, round(w·C)).
func KeptChannels(w float64, channels int) int {
	return max(1, int(math.Round(w*float64(channels))))
}

// gumbel is the Gumbel-softmax relaxation of the choices of one logits tensor [units, K],
// sampled once per step (several kernels may share it).
type gumbel struct {
	alpha    *engine.Value
	units, k int
	p        []float32 // the weights the forward pass uses (one-hot when hard or argmax)
	soft     []float32 // the soft sample, through which gradients flow
	tau      float32
	frozen   bool // argmax: no gradient
	drawn    bool
	last     engine.StepState // what the current sample was drawn for
}

func newGumbel(alpha *engine.Value, units, k int) *gumbel {
	g := &gumbel{alpha: alpha, units: units, k: k, p: make([]float32, units*k), soft: make([]float32, units*k), tau: 1}
	for i := range g.p { // before any state: uniform
		g.p[i], g.soft[i] = 1/float32(k), 1/float32(k)
	}
	return g
}

// sample draws the step's weights, once per state: kernels sharing the sampler see one
// sample, and a state that differs in anything (step, temperature, noise, hard, argmax)
// draws anew.
func (g *gumbel) sample(s *engine.StepState) {
	if g.drawn && *s == g.last {
		return
	}
	g.drawn, g.last = true, *s
	g.tau = float32(max(s.Temperature, 1e-3))
	g.frozen = s.Argmax
	a := g.alpha.Data
	logits := make([]float64, g.k)
	for u := 0; u < g.units; u++ {
		row, soft, p := a[u*g.k:(u+1)*g.k], g.soft[u*g.k:(u+1)*g.k], g.p[u*g.k:(u+1)*g.k]
		if s.Argmax {
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			clear(p)
			clear(soft)
			p[best], soft[best] = 1, 1
			continue
		}
		m := math.Inf(-1)
		for j, v := range row {
			l := float64(v)
			if s.Noise != nil {
				l -= math.Log(-math.Log(s.Noise.Float64()*(1-2e-12) + 1e-12))
			}
			logits[j] = l / float64(g.tau)
			m = max(m, logits[j])
		}
		sum := 0.0
		for j := range logits {
			logits[j] = math.Exp(logits[j] - m)
			sum += logits[j]
		}
		best := 0
		for j := range soft {
			soft[j] = float32(logits[j] / sum)
			if soft[j] > soft[best] {
				best = j
			}
		}
		copy(p, soft)
		if s.Hard {
			clear(p)
			p[best] = 1
		}
	}
	if s.Pin.Logits != "" && s.Pin.Logits == g.alpha.Name { // drawn above all the same: the other samplers' noise stays aligned
		for u := 0; u < g.units; u++ {
			p := g.p[u*g.k : (u+1)*g.k]
			clear(p)
			p[min(max(s.Pin.Option, 0), g.k-1)] = 1
		}
	}
}

// Sampled returns the option each unit of the choice with logits constant logits takes in
// the plan's current sample (the most weighted one when the sample is soft), or nil when
// the plan has no such choice.
func Sampled(p *engine.Plan, logits string) []int {
	v, ok := p.SharedValue(samplerKey(logits))
	if !ok {
		return nil
	}
	g := v.(*gumbel)
	out := make([]int, g.units)
	for u := range out {
		row := g.p[u*g.k : (u+1)*g.k]
		for j, w := range row {
			if w > row[out[u]] {
				out[u] = j
			}
		}
	}
	return out
}

// grad turns the gradient with respect to the used weights into that of the logits,
// through the soft sample: dα_j = soft_j·(dp_j − Σ_i soft_i·dp_i)/τ.
func (g *gumbel) grad(dp, dalpha []float32) {
	if g.frozen {
		clear(dalpha)
		return
	}
	for u := 0; u < g.units; u++ {
		soft, d := g.soft[u*g.k:(u+1)*g.k], dp[u*g.k:(u+1)*g.k]
		var dot float64
		for j := range soft {
			dot += float64(soft[j]) * float64(d[j])
		}
		for j := range soft {
			dalpha[u*g.k+j] = float32(float64(soft[j]) * (float64(d[j]) - dot) / float64(g.tau))
		}
	}
}

// samplerKey names the sampler of one logits constant in a plan's shared state.
type samplerKey string

// sharedGumbel returns the plan's sampler of the logits read at input i of the node being
// built: nodes reading the same logits share one sample.
func sharedGumbel(b *engine.Build, i, units, k int) *gumbel {
	return b.Shared(samplerKey(b.Node.Inputs[i]), func() any { return newGumbel(b.In[i], units, k) }).(*gumbel)
}

type mixedWeight struct {
	w, alpha, y *engine.Value
	dw, dalpha  *engine.GradDst
	g           *gumbel
	bits        []int
	axis, units int
	rows, cols  int       // the weight as rows of filters (transposed for axis 1)
	t, q, s     []float32 // the weight as filter rows, one option's quantized rows, scales
	acc         []float32 // the composite (or its gradient), as filter rows
	dp          []float32
	rowBits     [][]int // per option: its bits for every row
}

func buildMixedWeight(b *engine.Build) (engine.Kernel, error) {
	bits, axis, units, err := mixedWeightAttrs(b.Node, b.In[0].Shape)
	if err != nil {
		return nil, err
	}
	w := b.In[0]
	k := &mixedWeight{w: w, alpha: b.In[1], y: b.Out[0], dw: b.InGrad(0), dalpha: b.InGrad(1), bits: bits, axis: axis, units: units,
		g: sharedGumbel(b, 1, units, len(bits))}
	k.rows = w.Shape[axis]
	k.cols = w.Len() / k.rows
	k.t, k.q, k.acc = make([]float32, w.Len()), make([]float32, w.Len()), make([]float32, w.Len())
	k.s, k.dp = make([]float32, k.rows), make([]float32, units*len(bits))
	for _, b := range bits {
		rb := make([]int, k.rows)
		for i := range rb {
			rb[i] = b
		}
		k.rowBits = append(k.rowBits, rb)
	}
	return k, nil
}

func (k *mixedWeight) SetState(s *engine.StepState) { k.g.sample(s) }

// rowsOf copies the weight (or its gradient) into filter rows, transposing for axis 1.
func (k *mixedWeight) rowsOf(src, dst []float32) {
	if k.axis == 0 {
		copy(dst, src)
		return
	}
	transpose(src, dst, k.cols, k.rows)
}

func (k *mixedWeight) Forward(bool) {
	k.rowsOf(k.w.Data, k.t)
	clear(k.acc)
	per := k.rows / k.units * k.cols // elements of one unit
	for j := range k.bits {
		quant.FakeQuantWeights(k.t, k.rowBits[j], k.s, k.q)
		for u := 0; u < k.units; u++ {
			p := k.g.p[u*len(k.bits)+j]
			if p == 0 {
				continue
			}
			a, q := k.acc[u*per:(u+1)*per], k.q[u*per:(u+1)*per]
			for i, v := range q {
				a[i] += p * v
			}
		}
	}
	if k.axis == 0 {
		copy(k.y.Data, k.acc)
	} else {
		transpose(k.acc, k.y.Data, k.rows, k.cols)
	}
}

func (k *mixedWeight) Backward() {
	if k.dw != nil {
		copy(k.dw.Buf, k.y.Grad) // straight through: the weights of a unit sum to 1
	}
	if !k.dalpha.Active() {
		return
	}
	k.rowsOf(k.y.Grad, k.acc)
	k.rowsOf(k.w.Data, k.t)
	per := k.rows / k.units * k.cols
	for j := range k.bits {
		quant.FakeQuantWeights(k.t, k.rowBits[j], k.s, k.q)
		for u := 0; u < k.units; u++ {
			var s float64
			d, q := k.acc[u*per:(u+1)*per], k.q[u*per:(u+1)*per]
			for i, v := range q {
				s += float64(d[i] * v)
			}
			k.dp[u*len(k.bits)+j] = float32(s)
		}
	}
	k.g.grad(k.dp, k.dalpha.Buf)
}

type mixedAct struct {
	x, alpha, clips, y *engine.Value
	dx, dalpha, dclips *engine.GradDst
	g                  *gumbel
	bits               []int
	signed             bool
	params             []quant.MixParam
	chunkClip, chunkW  [][]float64      // per chunk, per option: partial gradient sums
	in                 *engine.Deferred // the BatchNormalization writing x, when deferred to this kernel
}

// MapInput has the kernel read x through the deferred BatchNormalization l (engine.InputMapper).
func (k *mixedAct) MapInput(l *engine.Deferred) { k.in = l }

func buildMixedAct(b *engine.Build) (engine.Kernel, error) {
	bits, err := bitsAttr(b.Node)
	if err != nil {
		return nil, err
	}
	s, err := b.Node.Int("signed", 0)
	if err != nil {
		return nil, err
	}
	k := &mixedAct{x: b.In[0], alpha: b.In[1], clips: b.In[2], y: b.Out[0], dx: b.InGrad(0), dalpha: b.InGrad(1), dclips: b.InGrad(2),
		g: sharedGumbel(b, 1, 1, len(bits)), bits: bits, signed: s != 0, params: make([]quant.MixParam, len(bits))}
	n := (b.In[0].Len() + actChunk - 1) / actChunk
	k.chunkClip, k.chunkW = make([][]float64, n), make([][]float64, n)
	for c := range k.chunkClip {
		k.chunkClip[c], k.chunkW[c] = make([]float64, len(bits)), make([]float64, len(bits))
	}
	return k, nil
}

func (k *mixedAct) SetState(s *engine.StepState) { k.g.sample(s) }

func (k *mixedAct) setParams() {
	for j, b := range k.bits {
		k.params[j] = quant.NewMixParam(max(k.clips.Data[j], 1e-6), b, k.signed, k.g.p[j])
	}
}

func (k *mixedAct) chunks(fn func(c, lo, hi int, x []float32)) {
	actChunks(k.x, k.in, actChunk, actChunk*len(k.bits), fn)
}

func (k *mixedAct) Forward(bool) {
	k.setParams()
	k.chunks(func(_, lo, hi int, x []float32) { quant.MixAct(x, k.y.Data[lo:hi], k.params) })
}

func (k *mixedAct) Backward() {
	k.setParams()
	wantClip, wantW := k.dclips.Active(), k.dalpha.Active()
	k.chunks(func(c, lo, hi int, x []float32) {
		var dx []float32
		if k.dx != nil {
			dx = k.dx.Buf[lo:hi]
		}
		var cs, ws []float64
		if wantClip {
			cs = k.chunkClip[c]
			clear(cs)
		}
		if wantW {
			ws = k.chunkW[c]
			clear(ws)
		}
		quant.MixGrad(x, k.y.Grad[lo:hi], dx, k.params, k.signed, cs, ws)
	})
	sum := func(parts [][]float64) []float32 { // in chunk order: independent of the threads
		tot := make([]float64, len(k.bits))
		for _, p := range parts {
			for j, v := range p {
				tot[j] += v
			}
		}
		out := make([]float32, len(tot))
		for j, v := range tot {
			out[j] = float32(v)
		}
		return out
	}
	if wantClip {
		for j, v := range sum(k.chunkClip) {
			k.dclips.Buf[j] = k.g.p[j] * v
		}
	}
	if wantW {
		k.g.grad(sum(k.chunkW), k.dalpha.Buf)
	}
}

type widthMask struct {
	x, alpha, y *engine.Value
	dx, dalpha  *engine.GradDst
	g           *gumbel
	keep        []int // channels kept by each option
	rank        []int // rank of each channel (0: most important)
	m           []float32
	// The input as runs of inner elements of one channel: run r is channel r % C.
	runs, inner int
	dm          []float64
	dp          []float32
	full        bool // every channel kept (StepState.FullWidth)
}

func buildWidthMask(b *engine.Build) (engine.Kernel, error) {
	x := b.In[0]
	axis, err := maskAxis(b.Node, x.Shape)
	if err != nil {
		return nil, err
	}
	keep, order, err := widthAttrs(b.Node, x.Shape[axis])
	if err != nil {
		return nil, err
	}
	k := &widthMask{x: x, alpha: b.In[1], y: b.Out[0], dx: b.InGrad(0), dalpha: b.InGrad(1), keep: keep,
		g: sharedGumbel(b, 1, 1, len(keep)), rank: make([]int, len(order)), m: make([]float32, len(order)),
		dm: make([]float64, len(order)), dp: make([]float32, len(keep)), inner: 1}
	for r, c := range order {
		k.rank[c] = r
	}
	for _, d := range x.Shape[axis+1:] {
		k.inner *= d
	}
	k.runs = x.Len() / k.inner
	return k, nil
}

func (k *widthMask) SetState(s *engine.StepState) { k.g.sample(s); k.full = s.FullWidth }

// each calls fn over the runs [lo, hi) of the input in parallel, in blocks of whole rows of
// channels when a run is one element (channels last).
func (k *widthMask) each(fn func(lo, hi int)) {
	c := len(k.m)
	if k.inner > 1 {
		kernels.ParFor(k.runs, k.inner, fn)
		return
	}
	kernels.ParFor(k.runs/c, c, func(lo, hi int) { fn(lo*c, hi*c) })
}

func (k *widthMask) Forward(bool) {
	for c := range k.m {
		if k.full {
			k.m[c] = 1
			continue
		}
		var v float32
		for j, n := range k.keep {
			if k.rank[c] < n {
				v += k.g.p[j]
			}
		}
		k.m[c] = v
	}
	c := len(k.m)
	k.each(func(lo, hi int) {
		for r := lo; r < hi; r++ {
			m := k.m[r%c]
			x, y := k.x.Data[r*k.inner:(r+1)*k.inner], k.y.Data[r*k.inner:(r+1)*k.inner]
			for i, v := range x {
				y[i] = v * m
			}
		}
	})
}

func (k *widthMask) Backward() {
	c := len(k.m)
	if k.dx != nil {
		k.each(func(lo, hi int) {
			for r := lo; r < hi; r++ {
				m := k.m[r%c]
				dy, dx := k.y.Grad[r*k.inner:(r+1)*k.inner], k.dx.Buf[r*k.inner:(r+1)*k.inner]
				for i, g := range dy {
					dx[i] = g * m
				}
			}
		})
	}
	if !k.dalpha.Active() {
		return
	}
	clear(k.dm)
	for r := 0; r < k.runs; r++ { // in order: the sums do not depend on threads
		var s float32
		dy, x := k.y.Grad[r*k.inner:(r+1)*k.inner], k.x.Data[r*k.inner:(r+1)*k.inner]
		for i, g := range dy {
			s += g * x[i]
		}
		k.dm[r%c] += float64(s)
	}
	clear(k.dp)
	for ch, d := range k.dm {
		for j, n := range k.keep {
			if k.rank[ch] < n {
				k.dp[j] += float32(d)
			}
		}
	}
	k.g.grad(k.dp, k.dalpha.Buf)
}
