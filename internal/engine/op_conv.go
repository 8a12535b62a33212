package engine

import (
	"math"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/kernels"
)

// conv runs Conv through im2col + GEMM (direct for depthwise).
type conv struct {
	b             *Build
	s             kernels.ConvShape
	x, w, bias, y *Value
	dx, dw, db    *GradDst
	scratch       int
	link          *convBN         // shared with the BatchNormalization reading y (linkConvBN)
	in            *Deferred       // shared with the op writing x, when deferred (see Deferred)
	addsDx        bool            // s can add its input gradient into x's (kernels.ConvShape.AddsDx)
	gm            kernels.GradMap // the input-gradient map when no deferred op supplies one (BatchNorm sums alone)
	relu          bool            // a fused ReLU: y is its output (see fuse)
	reluMax       float32         // its upper clip, +Inf for none
}

// convShape returns the kernel shape of Conv node n of g on an input of shape x.
func convShape(g *graph.Graph, n *graph.Node, x []int) (kernels.ConvShape, graph.ConvInfo, error) {
	ci, err := g.ConvGeometry(n)
	if err != nil {
		return kernels.ConvShape{}, ci, err
	}
	return kernels.ConvShape{
		N: x[0], C: x[1], H: x[2], W: x[3],
		OC: ci.OutC, KH: ci.KH, KW: ci.KW, SH: ci.SH, SW: ci.SW,
		PT: ci.PadT, PL: ci.PadL, PB: ci.PadB, PR: ci.PadR, DH: ci.DH, DW: ci.DW, Groups: ci.Group,
	}, ci, nil
}

func init() {
	Register("Conv", func(b *Build) (Kernel, error) {
		x := b.In[0]
		s, ci, err := convShape(b.Graph, b.Node, x.Shape)
		if err != nil {
			return nil, err
		}
		k := &conv{b: b, x: x, w: b.In[1], y: b.Out[0], s: s}
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
		k.relu, k.reluMax = b.ReLU, b.ReLUMax
		if k.reluMax <= 0 {
			k.reluMax = float32(math.Inf(1))
		}
		k.addsDx = k.s.AddsDx()
		k.scratch = k.s.ScratchLen()
		b.NeedScratch(k.scratch)
		return k, nil
	})
}

// input returns the shape and the input data the kernels take: x itself, or, after a
// training forward of the op deferred into this one (see Deferred), the data and map that
// op left (a BatchNormalization's input and its map, or an activation quantizer's input and
// its fake quantization after the map of a BatchNormalization deferred into it).
func (k *conv) input() (kernels.ConvShape, []float32) {
	s := k.s
	x, m := k.in.Mapped(k.x)
	s.In = m
	return s, x
}

func (k *conv) Forward(train bool) {
	var bias []float32
	if k.bias != nil {
		bias = k.bias.Data
	}
	s, x := k.input()
	if k.relu {
		kernels.Conv2DReLU(s, x, k.w.Data, bias, k.y.Data, k.b.Plan.Scratch(k.scratch), k.reluMax)
		return
	}
	if train && k.link != nil {
		kernels.Conv2DMoments(s, x, k.w.Data, bias, k.y.Data, k.b.Plan.Scratch(k.scratch), k.link.moments)
		return
	}
	kernels.Conv2D(s, x, k.w.Data, bias, k.y.Data, k.b.Plan.Scratch(k.scratch))
}

func (k *conv) Backward() {
	s, x := k.input()
	dx := buf(k.dx)
	if dx != nil {
		// The op deferred into this one may leave its backward to it too: dx is then
		// that op's input gradient.
		folded := false
		if gm, d, ok := k.in.fold(k.b.Plan, k.b.Node.Inputs[0]); ok {
			s.DxMap, dx, folded = gm, d, true
		}
		// And when dx is a training BatchNormalization's output gradient, the sums of
		// its backward are recorded as dx is written.
		if l := k.in.bnLanes(folded); l != nil && (s.DxMap == nil || !s.DxMap.Add) {
			if s.DxMap == nil {
				k.gm = kernels.GradMap{}
				s.DxMap = &k.gm
			}
			s.DxMap.BN, l.bnDone = l.bn, true
		}
	}
	if dx != nil && k.addsDx && s.DxMap == nil {
		// On the direct 3×3 stride-1 path a later contribution to x's gradient is added
		// into it as the input gradient is copied out, instead of through a temporary.
		if g, ok := k.dx.addInto(); ok {
			dx, s.AddDx = g, true
		}
	}
	if l := k.link; l != nil && l.gradReady {
		l.gradReady = false
		kernels.Conv2DBackwardBN(s, x, k.w.Data, l.grad, dx, buf(k.dw), k.b.Plan.Scratch(k.scratch))
		return
	}
	if k.relu {
		// This is the last reader of y.Grad (the ReLU's output gradient), so it is masked
		// in place into the convolution's.
		kernels.Conv2DBackwardReLU(s, x, k.w.Data, k.y.Data, k.y.Grad, dx, buf(k.dw), buf(k.db), k.b.Plan.Scratch(k.scratch), k.reluMax)
		return
	}
	kernels.Conv2DBackward(s, x, k.w.Data, k.y.Grad, dx, buf(k.dw), buf(k.db), k.b.Plan.Scratch(k.scratch))
}

// buf returns d's buffer, or nil when no gradient is wanted.
func buf(d *GradDst) []float32 {
	if !d.Active() {
		return nil
	}
	return d.Buf
}
