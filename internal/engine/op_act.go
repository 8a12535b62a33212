package engine

import (
	"math"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/kernels"
)

// elementwise is an activation with a forward and backward kernel over whole buffers.
type elementwise struct {
	x, y *Value
	dx   *GradDst
	fwd  func(x, y []float32)
	bwd  func(x, y, dy, dx []float32)
}

func (k *elementwise) Forward(bool) { k.fwd(k.x.Data, k.y.Data) }
func (k *elementwise) Backward() {
	if k.dx != nil {
		k.bwd(k.x.Data, k.y.Data, k.y.Grad, k.dx.Buf)
	}
}

func registerElementwise(op string, make func(b *Build) (fwd func(x, y []float32), bwd func(x, y, dy, dx []float32), err error)) {
	Register(op, func(b *Build) (Kernel, error) {
		f, bw, err := make(b)
		if err != nil {
			return nil, err
		}
		return &elementwise{x: b.In[0], y: b.Out[0], dx: b.InGrad(0), fwd: f, bwd: bw}, nil
	})
}

func init() {
	registerElementwise("Relu", func(*Build) (func(x, y []float32), func(x, y, dy, dx []float32), error) {
		return kernels.ReLU, func(x, _, dy, dx []float32) { kernels.ReLUBackward(x, dy, dx) }, nil
	})
	registerElementwise("Sigmoid", func(*Build) (func(x, y []float32), func(x, y, dy, dx []float32), error) {
		return kernels.Sigmoid, func(_, y, dy, dx []float32) { kernels.SigmoidBackward(y, dy, dx) }, nil
	})
	registerElementwise("HardSwish", func(*Build) (func(x, y []float32), func(x, y, dy, dx []float32), error) {
		return kernels.HardSwish, func(x, _, dy, dx []float32) { kernels.HardSwishBackward(x, dy, dx) }, nil
	})
	registerElementwise("LeakyRelu", func(b *Build) (func(x, y []float32), func(x, y, dy, dx []float32), error) {
		a, err := b.Node.Float("alpha", 0.01)
		return func(x, y []float32) { kernels.LeakyReLU(x, y, a) },
			func(x, _, dy, dx []float32) { kernels.LeakyReLUBackward(x, dy, dx, a) }, err
	})
	registerElementwise("HardSigmoid", func(b *Build) (func(x, y []float32), func(x, y, dy, dx []float32), error) {
		a, err := b.Node.Float("alpha", 0.2)
		if err != nil {
			return nil, nil, err
		}
		be, err := b.Node.Float("beta", 0.5)
		return func(x, y []float32) { kernels.HardSigmoid(x, y, a, be) },
			func(x, _, dy, dx []float32) { kernels.HardSigmoidBackward(x, dy, dx, a, be) }, err
	})
	registerElementwise("Sqrt", func(*Build) (func(x, y []float32), func(x, y, dy, dx []float32), error) {
		return kernels.Sqrt, func(_, y, dy, dx []float32) { kernels.SqrtBackward(y, dy, dx) }, nil
	})
	registerElementwise("Tanh", func(*Build) (func(x, y []float32), func(x, y, dy, dx []float32), error) {
		return kernels.Tanh, func(_, y, dy, dx []float32) { kernels.TanhBackward(y, dy, dx) }, nil
	})
	registerElementwise("Erf", func(*Build) (func(x, y []float32), func(x, y, dy, dx []float32), error) {
		return kernels.Erf, func(x, _, dy, dx []float32) { kernels.ErfBackward(x, dy, dx) }, nil
	})
	registerElementwise("Gelu", func(b *Build) (func(x, y []float32), func(x, y, dy, dx []float32), error) {
		tanh, err := graph.GeluTanh(b.Node)
		return func(x, y []float32) { kernels.Gelu(x, y, tanh) },
			func(x, _, dy, dx []float32) { kernels.GeluBackward(x, dy, dx, tanh) }, err
	})
	registerElementwise("Clip", func(b *Build) (func(x, y []float32), func(x, y, dy, dx []float32), error) {
		lo, hi, err := b.Graph.ClipBoundsOf(b.Node)
		if err != nil {
			return nil, nil, err
		}
		if lo > hi {
			return nil, nil, b.Errorf("min %g is above max %g", lo, hi)
		}
		if math.IsInf(float64(lo), -1) && math.IsInf(float64(hi), 1) {
			return func(x, y []float32) { copy(y, x) }, func(_, _, dy, dx []float32) { copy(dx, dy) }, nil
		}
		return func(x, y []float32) { kernels.Clip(x, y, lo, hi) },
			func(x, _, dy, dx []float32) { kernels.ClipBackward(x, dy, dx, lo, hi) }, nil
	})
}
