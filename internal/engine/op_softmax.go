package engine

import "github.com/qnas/qnas/internal/kernels"

// softmax runs Softmax along the last axis.
type softmax struct {
	rows, cols int
	x, y       *Value
	dx         *GradDst
}

func init() {
	Register("Softmax", func(b *Build) (Kernel, error) {
		x := b.In[0]
		def := int64(-1)
		if b.Graph.Opset < 13 {
			def = 1
		}
		axis, err := b.Node.Int("axis", def)
		if err != nil {
			return nil, err
		}
		a := normAxis(axis, len(x.Shape))
		cols := 1
		for _, d := range x.Shape[a:] {
			cols *= d
		}
		if b.Graph.Opset >= 13 && a != len(x.Shape)-1 {
			return nil, b.Errorf("softmax along axis %d of a rank-%d tensor is not supported (only the last)", axis, len(x.Shape))
		}
		return &softmax{rows: x.Len() / cols, cols: cols, x: x, y: b.Out[0], dx: b.InGrad(0)}, nil
	})
}

func (k *softmax) Forward(bool) { kernels.Softmax(k.rows, k.cols, k.x.Data, k.y.Data) }
func (k *softmax) Backward() {
	if k.dx != nil {
		kernels.SoftmaxBackward(k.rows, k.cols, k.y.Data, k.y.Grad, k.dx.Buf)
	}
}
