package engine

import "github.com/qnas/qnas/internal/kernels"

// conv runs Conv through im2col + GEMM (direct for depthwise).
type conv struct {
	b             *Build
	s             kernels.ConvShape
	x, w, bias, y *Value
	dx, dw, db    *GradDst
	scratch       int
	moments       *kernels.Moments // shared with the BatchNormalization reading y (shareMoments)
}

func init() {
	Register("Conv", func(b *Build) (Kernel, error) {
		ci, err := b.Graph.ConvGeometry(b.Node)
		if err != nil {
			return nil, err
		}
		x := b.In[0]
		k := &conv{b: b, x: x, w: b.In[1], y: b.Out[0], s: kernels.ConvShape{
			N: x.Shape[0], C: x.Shape[1], H: x.Shape[2], W: x.Shape[3],
			OC: ci.OutC, KH: ci.KH, KW: ci.KW, SH: ci.SH, SW: ci.SW,
			PT: ci.PadT, PL: ci.PadL, PB: ci.PadB, PR: ci.PadR, DH: ci.DH, DW: ci.DW, Groups: ci.Group,
		}}
		if len(b.In) > 2 {
			k.bias = b.In[2]
		}
		if err := k.s.Validate(); err != nil {
			return nil, b.Errorf("%v", err)
		}
		if k.s.OH() != ci.OutH || k.s.OW() != ci.OutW {
			return nil, b.Errorf("kernel output %dx%d differs from the inferred %dx%d", k.s.OH(), k.s.OW(), ci.OutH, ci.OutW)
		}
		k.dx, k.dw = b.InGrad(0), b.InGrad(1)
		if k.bias != nil {
			k.db = b.InGrad(2)
		}
		k.scratch = k.s.ScratchLen()
		b.NeedScratch(k.scratch)
		return k, nil
	})
}

func (k *conv) Forward(train bool) {
	var bias []float32
	if k.bias != nil {
		bias = k.bias.Data
	}
	if train && k.moments != nil {
		kernels.Conv2DMoments(k.s, k.x.Data, k.w.Data, bias, k.y.Data, k.b.Plan.Scratch(k.scratch), k.moments)
		return
	}
	kernels.Conv2D(k.s, k.x.Data, k.w.Data, bias, k.y.Data, k.b.Plan.Scratch(k.scratch))
}

func (k *conv) Backward() {
	kernels.Conv2DBackward(k.s, k.x.Data, k.w.Data, k.y.Grad, buf(k.dx), buf(k.dw), buf(k.db), k.b.Plan.Scratch(k.scratch))
}

// buf returns d's buffer, or nil when no gradient is wanted.
func buf(d *GradDst) []float32 {
	if d == nil {
		return nil
	}
	return d.Buf
}
