package engine

import (
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/kernels"
)

// layerNorm runs LayerNormalization: each row of the trailing axes from axis on is
// normalized, scaled and shifted.
type layerNorm struct {
	b                 *Build
	s                 kernels.LayerNormShape
	x, scale, bias, y *Value
	mean, invStd      []float32 // the Mean and InvStdDev outputs', or the kernel's own
	dx, dscale, dbias *GradDst
}

func buildLayerNorm(b *Build) (Kernel, error) {
	x := b.In[0]
	axis, eps, err := graph.LayerNormAxis(b.Node, len(x.Shape))
	if err != nil {
		return nil, err
	}
	d := prod(x.Shape[axis:])
	s := kernels.LayerNormShape{Rows: x.Len() / max(d, 1), D: d, Eps: eps}
	k := &layerNorm{b: b, s: s, x: x, scale: b.In[1], y: b.Out[0], dx: b.InGrad(0), dscale: b.InGrad(1)}
	if len(b.In) > 2 && b.In[2] != nil {
		k.bias, k.dbias = b.In[2], b.InGrad(2)
	}
	for _, p := range []*Value{k.scale, k.bias} {
		if p != nil && p.Len() != d && p.Len() != 1 {
			return nil, b.Errorf("scale or bias %q has shape %v; the engine takes %d values or one", p.Name, p.Shape, d)
		}
	}
	stats := [2]*[]float32{&k.mean, &k.invStd}
	for i, p := range stats {
		if o := i + 1; o < len(b.Out) && b.Out[o] != nil {
			if b.Out[o].Grad != nil {
				return nil, b.Errorf("gradients through the Mean and InvStdDev outputs are not supported")
			}
			*p = b.Out[o].Data
		} else {
			*p = make([]float32, s.Rows)
		}
	}
	b.NeedScratch(s.ScratchLen())
	return k, nil
}

func (k *layerNorm) Forward(bool) {
	var beta []float32
	if k.bias != nil {
		beta = k.bias.Data
	}
	kernels.LayerNorm(k.s, k.x.Data, k.scale.Data, beta, k.y.Data, k.mean, k.invStd)
}

func (k *layerNorm) Backward() {
	kernels.LayerNormBackward(k.s, k.x.Data, k.scale.Data, k.mean, k.invStd, k.y.Grad,
		buf(k.dx), buf(k.dscale), buf(k.dbias), k.b.Plan.Scratch(k.s.ScratchLen()))
}

func init() { Register("LayerNormalization", buildLayerNorm) }
