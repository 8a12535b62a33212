package supernet

import (
	"fmt"
	"math"
	"slices"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/kernels"
	"github.com/qnas/qnas/internal/quant"
)

// The ops of a training graph that computes exactly what its export computes (TrainAsExported):
//
//	FrozenBatchNorm(x, γ, β, μ, σ², W, clip) → y = a·x + B̂, a = γ/√(σ²+ε) per channel, with
//	  its shift B = β − a·μ rounded onto the grid of the integer accumulator of the conv
//	  before it (input scale × weight scale of W's filter × |a|), as export folds and rounds
//	  it; attributes epsilon, and wbits, axis, abits, signed of the conv's quantizers. The
//	  statistics stay fixed; γ and β learn with straight-through gradients.
//	QuantBias(B, W, clip) → B̂, a bias on the same grid without a BatchNorm (a Gemm's, or a
//	  conv's whose BatchNorm is folded into W).
const (
	OpFrozenBatchNorm = "FrozenBatchNorm"
	OpQuantBias       = "QuantBias"
)

func init() {
	engine.RegisterOp(&graph.OpDef{
		Op: OpFrozenBatchNorm, Domain: Domain, Internal: true, Doc: "BatchNormalization on fixed statistics with its shift on the integer grid of the conv before it",
		MinInputs: 7, MaxInputs: 7, MinOutputs: 1, MaxOutputs: 1, Weights: []int{1, 2}, State: []int{3, 4},
		Infer: func(c *graph.Ctx) ([]graph.Shape, error) {
			if len(c.In[0]) < 2 {
				return nil, c.Errorf("input of rank %d", len(c.In[0]))
			}
			if _, err := biasGrid(c.Node, c.In[5]); err != nil {
				return nil, err
			}
			ch := c.In[0][1]
			for i := 1; i <= 4; i++ {
				if len(c.In[i]) != 1 || c.In[i][0] != ch {
					return nil, c.Errorf("parameter %q has shape %v for %d channels", c.Node.Inputs[i], c.In[i], ch)
				}
			}
			return []graph.Shape{c.In[0]}, nil
		},
	}, buildFrozenBN)
	engine.RegisterOp(&graph.OpDef{
		Op: OpQuantBias, Domain: Domain, Internal: true, Doc: "a bias on the integer grid of its layer's accumulator",
		MinInputs: 3, MaxInputs: 3, MinOutputs: 1, MaxOutputs: 1, Weights: []int{0},
		Infer: func(c *graph.Ctx) ([]graph.Shape, error) {
			gr, err := biasGrid(c.Node, c.In[1])
			if err != nil {
				return nil, err
			}
			if len(c.In[0]) != 1 || c.In[0][0] != len(gr.wbits) {
				return nil, c.Errorf("bias %q has shape %v for %d filters", c.Node.Inputs[0], c.In[0], len(gr.wbits))
			}
			return []graph.Shape{c.In[0]}, nil
		},
	}, buildQuantBias)
}

// grid is how a layer's bias is rounded: its weight's per-filter bits and filter axis, and
// its input quantizer's bits and signedness.
type grid struct {
	wbits  []int
	axis   int
	abits  int
	signed bool
	pow2   bool
}

func biasGrid(n *graph.Node, w graph.Shape) (grid, error) {
	var g grid
	b, err := n.Ints("wbits", nil)
	if err != nil {
		return g, err
	}
	q := &graph.Node{Name: n.Name, Op: n.Op, Attrs: map[string]*graph.Attr{}}
	q.SetInts("bits", b)
	ax, err := n.Int("axis", 0)
	if err != nil {
		return g, err
	}
	q.SetInt("axis", ax)
	if g.wbits, g.axis, err = weightQuantAttrs(q, w); err != nil {
		return g, err
	}
	ab, err := n.Int("abits", 8)
	if err != nil {
		return g, err
	}
	s, err := n.Int("signed", 0)
	if err != nil {
		return g, err
	}
	a := &graph.Node{Name: n.Name, Op: n.Op, Attrs: map[string]*graph.Attr{}}
	a.SetInt("bits", ab)
	a.SetInt("signed", s)
	g.abits, g.signed, err = actQuantAttrs(a)
	g.pow2 = Pow2(n)
	return g, err
}

// scales writes every filter's weight scales as export computes them from the float
// weight and the BatchNorm factors a folded into it (nil: none): ws the scale the weight is
// quantized with, fs the scale exported (ws·|a|, or with pow2 the power of two ws is
// derived from; 1 for a filter whose factor is 0).
func (g grid) scales(w *engine.Value, a []float64, ws, fs []float32) {
	n := len(g.wbits)
	per := w.Len() / n
	for c, bits := range g.wbits {
		var m float32
		if g.axis == 0 {
			m = quant.MaxAbs(w.Data[c*per : (c+1)*per])
		} else {
			for i := c; i < w.Len(); i += n {
				m = max(m, w.Data[i], -w.Data[i])
			}
		}
		f := 1.0
		if a != nil {
			f = a[c]
		}
		if g.pow2 {
			ws[c], fs[c], _ = quant.Pow2WeightScales(m, bits, f, f)
			continue
		}
		ws[c] = quant.WeightScale(m, bits)
		var ok bool
		if fs[c], ok = quant.FoldedScale(ws[c], f); !ok {
			fs[c] = 1 // export: a zero BatchNorm scale zeroes the filter and keeps scale 1
		}
	}
}

// round puts bias b of a filter of exported weight scale fs on its grid, given the input's
// clip in use: export.quantizeBias's arithmetic, so training and export agree to the bit.
func (g grid) round(b float32, clip, fs float32) float32 {
	bs := quant.BiasScale(quant.ActScale(clip, g.abits, g.signed), fs)
	return float32(quant.QuantizeBias(b, bs)) * bs
}

// clip is the clip in use of the layer's input quantizer of learned clip c.
func (g grid) clip(c float32) float32 { return ClipInUse(c, g.abits, g.signed, g.pow2) }

type frozenBN struct {
	x, gamma, beta, mu, vr, w, clip, y *engine.Value
	dx, dgamma, dbeta, dw, dclip       *engine.GradDst
	eps                                float32
	grid                               grid
	ws, fs                             []float32
	a                                  []float32
	a64                                []float64
	bias                               []float32
	shift                              []float32
	hw, ch                             int
}

func buildFrozenBN(b *engine.Build) (engine.Kernel, error) {
	gr, err := biasGrid(b.Node, b.In[5].Shape)
	if err != nil {
		return nil, err
	}
	eps, err := b.Node.Float("epsilon", 1e-5)
	if err != nil {
		return nil, err
	}
	x := b.In[0]
	ch := x.Shape[1]
	if len(gr.wbits) != ch {
		return nil, b.Errorf("%d filters for %d channels", len(gr.wbits), ch)
	}
	hw := 1
	for _, d := range x.Shape[2:] {
		hw *= d
	}
	return &frozenBN{x: x, gamma: b.In[1], beta: b.In[2], mu: b.In[3], vr: b.In[4], w: b.In[5], clip: b.In[6], y: b.Out[0],
		dx: b.InGrad(0), dgamma: b.InGrad(1), dbeta: b.InGrad(2), dw: b.InGrad(5), dclip: b.InGrad(6),
		eps: eps, grid: gr, ws: make([]float32, ch), fs: make([]float32, ch), a: make([]float32, ch), a64: make([]float64, ch),
		bias: make([]float32, ch), shift: make([]float32, ch), hw: hw, ch: ch}, nil
}

func (k *frozenBN) Forward(bool) {
	clip := k.grid.clip(k.clip.Data[0]) // as QuantAct uses it
	for c := 0; c < k.ch; c++ {
		k.a64[c], k.bias[c] = quant.FoldBN(k.gamma.Data[c], k.beta.Data[c], k.mu.Data[c], k.vr.Data[c], 0, k.eps)
		k.a[c] = float32(k.a64[c])
	}
	k.grid.scales(k.w, k.a64, k.ws, k.fs)
	for c := 0; c < k.ch; c++ {
		k.shift[c] = k.grid.round(k.bias[c], clip, k.fs[c])
	}
	n := k.x.Len() / (k.ch * k.hw)
	kernels.ParFor(n*k.ch, k.hw, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			c := i % k.ch
			a, s := k.a[c], k.shift[c]
			x, y := k.x.Data[i*k.hw:(i+1)*k.hw], k.y.Data[i*k.hw:(i+1)*k.hw]
			for j, v := range x {
				y[j] = a*v + s
			}
		}
	})
}

func (k *frozenBN) Backward() {
	n := k.x.Len() / (k.ch * k.hw)
	// Channels are independent tasks; each channel sums in one order, whatever the threads.
	kernels.ParFor(k.ch, 2*n*k.hw, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			k.backwardChannel(c, n)
		}
	})
	// The weight and the clip only set the grid: no gradient flows to them through it.
	for _, d := range []*engine.GradDst{k.dw, k.dclip} {
		if d != nil {
			clear(d.Buf)
		}
	}
}

// backwardChannel writes the gradients of channel c over the n samples of the batch.
func (k *frozenBN) backwardChannel(c, n int) {
	is := 1 / math.Sqrt(float64(k.vr.Data[c])+float64(k.eps))
	var sd, sdx float64
	for b := 0; b < n; b++ {
		o := (b*k.ch + c) * k.hw
		dy, x := k.y.Grad[o:o+k.hw], k.x.Data[o:o+k.hw]
		for i, g := range dy {
			sd += float64(g)
			sdx += float64(g) * float64(x[i]-k.mu.Data[c])
		}
		if k.dx != nil {
			dx := k.dx.Buf[o : o+k.hw]
			for i, g := range dy {
				dx[i] = g * k.a[c]
			}
		}
	}
	if k.dgamma != nil {
		k.dgamma.Buf[c] = float32(sdx * is)
	}
	if k.dbeta != nil {
		k.dbeta.Buf[c] = float32(sd)
	}
}

type quantBias struct {
	b, w, clip, y *engine.Value
	db, dw, dclip *engine.GradDst
	grid          grid
	ws, fs        []float32
}

func buildQuantBias(b *engine.Build) (engine.Kernel, error) {
	gr, err := biasGrid(b.Node, b.In[1].Shape)
	if err != nil {
		return nil, err
	}
	k := &quantBias{b: b.In[0], w: b.In[1], clip: b.In[2], y: b.Out[0], db: b.InGrad(0), dw: b.InGrad(1), dclip: b.InGrad(2),
		grid: gr, ws: make([]float32, len(gr.wbits)), fs: make([]float32, len(gr.wbits))}
	return k, nil
}

func (k *quantBias) Forward(bool) {
	k.grid.scales(k.w, nil, k.ws, k.fs)
	clip := k.grid.clip(k.clip.Data[0])
	for c := range k.ws {
		k.y.Data[c] = k.grid.round(k.b.Data[c], clip, k.fs[c])
	}
}

func (k *quantBias) Backward() {
	if k.db != nil {
		copy(k.db.Buf, k.y.Grad)
	}
	for _, d := range []*engine.GradDst{k.dw, k.dclip} {
		if d != nil {
			clear(d.Buf)
		}
	}
}

// TrainAsExported returns a copy of a trained graph of a fixed architecture (Resolved.Apply,
// its BatchNorm statistics re-estimated) that computes what its export computes: every
// BatchNormalization after a conv whose weights and input are quantized becomes a
// FrozenBatchNorm, and every other bias of such a layer is read through a QuantBias. A conv
// bias before a FrozenBatchNorm is moved into its statistics and left at zero; frozen names
// those biases, which must not train. Trained with the other BatchNormalizations on their
// running statistics too (train.Config.FrozenBN), the model trained is the model exported
// (docs/method.md, "Training what is exported"); ExportForm turns it back.
func TrainAsExported(g *graph.Graph) (tg *graph.Graph, frozen []string, err error) {
	g = g.Clone()
	producers, consumers := g.Producers(), g.Consumers()
	var out []*graph.Node
	removed := map[*graph.Node]bool{}
	for _, n := range g.Nodes {
		if removed[n] {
			continue
		}
		out = append(out, n)
		if n.Op != "Conv" && n.Op != "Gemm" {
			continue
		}
		qw, qa := producers[n.Input(1)], producers[n.Input(0)]
		if qw == nil || qw.Op != OpQuantWeight || qa == nil || qa.Op != OpQuantAct {
			continue
		}
		gridAttrs, ok, err := layerGrid(qw, qa)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		if cs := consumers[n.Outputs[0]]; n.Op == "Conv" && len(cs) == 1 && cs[0].Op == "BatchNormalization" && !g.IsOutput(n.Outputs[0]) {
			bn := cs[0]
			if len(bn.Outputs) > 1 && slices.ContainsFunc(bn.Outputs[1:], func(s string) bool { return s != "" }) {
				continue
			}
			if Pow2(qw) {
				// Power-of-two scales: the exported sums are exact, and their ties must
				// round as export rounds them, which a·conv(Ŵ) in float does not do. The
				// BatchNorm is folded into the conv's weight and bias, which train on; the
				// bias is then read through a QuantBias like any other (below).
				if err := foldInto(g, n, bn, qw); err != nil {
					return nil, nil, err
				}
				removed[bn] = true
			} else {
				if name := n.Input(2); name != "" {
					// y = a·(conv + b − μ) + β: move b into μ, and the conv writes no bias.
					b, mu := g.Consts[name], g.Consts[bn.Input(3)]
					if b == nil || mu == nil || len(b.F) != len(mu.F) || len(consumers[name]) != 1 {
						return nil, nil, fmt.Errorf("node %q: bias %q does not match BatchNormalization %q", n.Name, name, bn.Name)
					}
					m := mu.Clone()
					for c := range m.F {
						m.F[c] -= b.F[c]
					}
					g.Consts[bn.Inputs[3]] = m
					g.Consts[name] = graph.NewFloat(b.Shape, make([]float32, len(b.F)))
					frozen = append(frozen, name)
				}
				bn.Op, bn.Domain = OpFrozenBatchNorm, Domain
				bn.Inputs = append(bn.Inputs[:5], qw.Inputs[0], qa.Inputs[1])
				bn.Outputs = bn.Outputs[:1]
				delete(bn.Attrs, "momentum")
				delete(bn.Attrs, "training_mode")
				for k, v := range gridAttrs.Attrs {
					bn.Attrs[k] = v
				}
				continue
			}
		}
		if name := n.Input(2); name != "" {
			qb := &graph.Node{Name: n.Name + "/QuantBias", Op: OpQuantBias, Domain: Domain,
				Inputs: []string{name, qw.Inputs[0], qa.Inputs[1]}, Outputs: []string{n.Name + "/bias_quant"}, Attrs: gridAttrs.Attrs}
			n.Inputs[2] = qb.Outputs[0]
			out = slices.Insert(out, len(out)-1, qb)
		}
	}
	return g, frozen, g.Rebuild(out)
}

// foldInto folds BatchNormalization bn into conv n, whose weight quantizer qw reads bn's γ,
// σ² and the factors g that chose its powers of two (graph.FoldBatchNormInto): qw then
// reads the folded weight alone, so that each filter's power is chosen anew, the one
// nearest its folded weight's grid, as export chooses it for a conv without a BatchNorm.
// (Keeping the powers g chose was measured and ends lower: statistics re-estimated after
// the first epochs leave some powers one off the folded weights' range; docs/results.md.)
// bn's constants and the factors that nothing else reads are removed. The caller drops bn
// from the nodes.
func foldInto(g *graph.Graph, n, bn, qw *graph.Node) error {
	if len(qw.Inputs) != 4 {
		return fmt.Errorf("node %q: a power-of-two weight quantizer before BatchNormalization %q without its γ, σ² and factors", qw.Name, bn.Name)
	}
	factors := qw.Inputs[3]
	qw.Inputs = qw.Inputs[:1]
	delete(qw.Attrs, "epsilon")
	if err := g.FoldBatchNormInto(n, bn, qw.Inputs[0]); err != nil {
		return err
	}
	readers := g.Consumers()
	for _, c := range bn.Inputs[1:] {
		if rs := readers[c]; len(rs) == 1 && rs[0] == bn {
			delete(g.Consts, c)
		}
	}
	if len(readers[factors]) == 0 {
		delete(g.Consts, factors)
	}
	return nil
}

// layerGrid returns the attributes of the bias grid of a layer with quantizers qw and qa;
// ok is false when either is float (export then rounds no bias).
func layerGrid(qw, qa *graph.Node) (attrs *graph.Node, ok bool, err error) {
	bits, err := qw.Ints("bits", nil)
	if err != nil {
		return nil, false, err
	}
	abits, _, err := actQuantAttrs(qa)
	if err != nil {
		return nil, false, err
	}
	if abits == quant.Float || slices.Contains(bits, quant.Float) {
		return nil, false, nil
	}
	ax, err := qw.Int("axis", 0)
	if err != nil {
		return nil, false, err
	}
	signed, err := qa.Int("signed", 0)
	if err != nil {
		return nil, false, err
	}
	a := &graph.Node{Attrs: map[string]*graph.Attr{}}
	a.SetInts("wbits", bits)
	a.SetInt("axis", ax)
	a.SetInt("abits", int64(abits))
	a.SetInt("signed", signed)
	if Pow2(qw) != Pow2(qa) {
		return nil, false, fmt.Errorf("layer quantizers %q and %q: one has power-of-two scales, the other not", qw.Name, qa.Name)
	}
	if Pow2(qa) {
		a.SetInt("pow2", 1)
	}
	return a, true, nil
}

// ExportForm undoes TrainAsExported on a trained graph: FrozenBatchNorms become
// BatchNormalizations again and QuantBias nodes are removed, so export.Freeze folds and
// rounds what they computed.
func ExportForm(g *graph.Graph) (*graph.Graph, error) {
	g = g.Clone()
	consumers := g.Consumers()
	remove := map[*graph.Node]bool{}
	for _, n := range g.Nodes {
		switch n.Op {
		case OpFrozenBatchNorm:
			n.Op, n.Domain = "BatchNormalization", ""
			n.Inputs = n.Inputs[:5]
			for _, k := range []string{"wbits", "axis", "abits", "signed", "pow2"} {
				delete(n.Attrs, k)
			}
		case OpQuantBias:
			for _, c := range consumers[n.Outputs[0]] {
				for i, in := range c.Inputs {
					if in == n.Outputs[0] {
						c.Inputs[i] = n.Inputs[0]
					}
				}
			}
			remove[n] = true
		}
	}
	return g, g.Rebuild(slices.DeleteFunc(g.Nodes, func(n *graph.Node) bool { return remove[n] }))
}
