package engine

import (
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/quant"
)

// qdq runs QuantizeLinear and DequantizeLinear, per tensor or per axis, with the rounding of
// package quant. Integer values travel as float32 (every 8-bit and 4-bit integer is exact).
// They run in inference plans, and in training plans only where no gradient flows through
// them (a quantized weight read as a constant): qnas trains the fake-quantized float form
// of a model, never its QDQ export.
type qdq struct {
	quantize     bool
	p            graph.QDQParams
	lo, hi       float32 // the integer type's range
	outer, inner int     // per axis: len(x) = outer·len(scale)·inner
	x, y         *Value
}

func init() {
	build := func(b *Build) (Kernel, error) {
		p, err := b.Graph.QDQ(b.Node)
		if err != nil {
			return nil, err
		}
		if b.In[0].Grad != nil {
			return nil, b.Errorf("%s runs in inference only; qnas fine-tunes quantized models in their fake-quantized float form", b.Node.Op)
		}
		k := &qdq{quantize: b.Node.Op == "QuantizeLinear", p: p, x: b.In[0], y: b.Out[0], outer: 1, inner: b.In[0].Len()}
		lo, hi := p.Type.Range()
		k.lo, k.hi = float32(lo), float32(hi)
		if p.Axis >= 0 {
			s := b.In[0].Shape
			k.outer, k.inner = prod(s[:p.Axis]), prod(s[p.Axis+1:])
		}
		return k, nil
	}
	Register("QuantizeLinear", build)
	Register("DequantizeLinear", build)
}

func (k *qdq) Forward(bool) {
	x, y := k.x.Data, k.y.Data
	n := len(k.p.Scale)
	for o := 0; o < k.outer; o++ {
		for c := 0; c < n; c++ {
			s, z := k.p.Scale[c], float32(k.p.Zero[c])
			off := (o*n + c) * k.inner
			xs, ys := x[off:off+k.inner], y[off:off+k.inner]
			if k.quantize {
				for i, v := range xs {
					ys[i] = min(max(quant.Round(v/s)+z, k.lo), k.hi)
				}
				continue
			}
			for i, v := range xs {
				ys[i] = (v - z) * s
			}
		}
	}
}

func (k *qdq) Backward() {}
