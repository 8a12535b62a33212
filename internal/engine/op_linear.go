package engine

import "github.com/qnas/qnas/internal/kernels"

// gemm runs Gemm (Y = alpha·A'·B' + beta·C) and MatMul with a 2-D right operand, as one
// matrix product over all leading rows.
type gemm struct {
	b           *Build
	s           kernels.GemmShape
	alpha, beta float32
	a, w, c, y  *Value
	da, dw, dc  *GradDst
	bias        bool // C is a vector of length N added to every row with beta = 1
}

func init() {
	Register("Gemm", func(b *Build) (Kernel, error) {
		ta, err := b.Node.Int("transA", 0)
		if err != nil {
			return nil, err
		}
		tb, err := b.Node.Int("transB", 0)
		if err != nil {
			return nil, err
		}
		alpha, err := b.Node.Float("alpha", 1)
		if err != nil {
			return nil, err
		}
		beta, err := b.Node.Float("beta", 1)
		if err != nil {
			return nil, err
		}
		a, w := b.In[0], b.In[1]
		s := kernels.GemmShape{M: a.Shape[0], K: a.Shape[1], TransA: ta != 0, TransB: tb != 0}
		if s.TransA {
			s.M, s.K = a.Shape[1], a.Shape[0]
		}
		s.N = w.Shape[1]
		if s.TransB {
			s.N = w.Shape[0]
		}
		k := &gemm{b: b, s: s, alpha: alpha, beta: beta, a: a, w: w, y: b.Out[0], da: b.InGrad(0), dw: b.InGrad(1)}
		if len(b.In) > 2 && b.In[2] != nil {
			k.c, k.dc = b.In[2], b.InGrad(2)
			switch n := k.c.Len(); {
			case n == s.N && beta == 1:
				k.bias = true
			case n != s.N && n != 1 && n != s.M*s.N:
				return nil, b.Errorf("C has %d values; supported: 1, N = %d or M×N = %d", n, s.N, s.M*s.N)
			case n == s.M*s.N && s.M != s.N && len(k.c.Shape) == 2 && k.c.Shape[0] != s.M:
				return nil, b.Errorf("C has shape %v, want %dx%d", k.c.Shape, s.M, s.N)
			}
		}
		b.NeedScratch(s.M * s.N)
		return k, nil
	})
	Register("MatMul", func(b *Build) (Kernel, error) {
		a, w := b.In[0], b.In[1]
		if len(w.Shape) != 2 {
			return nil, b.Errorf("MatMul with a %d-D right operand is not supported (only 2-D weights)", len(w.Shape))
		}
		m := a.Len() / a.Shape[len(a.Shape)-1]
		s := kernels.GemmShape{M: m, K: w.Shape[0], N: w.Shape[1]}
		b.NeedScratch(s.M * s.N)
		return &gemm{b: b, s: s, alpha: 1, a: a, w: w, y: b.Out[0], da: b.InGrad(0), dw: b.InGrad(1)}, nil
	})
}

func (k *gemm) Forward(bool) {
	if k.bias {
		kernels.Gemm(k.s, k.a.Data, k.w.Data, k.c.Data, k.y.Data)
	} else {
		kernels.Gemm(k.s, k.a.Data, k.w.Data, nil, k.y.Data)
	}
	if k.alpha != 1 {
		for i := range k.y.Data {
			k.y.Data[i] *= k.alpha
		}
	}
	if k.c != nil && !k.bias {
		n := k.c.Len()
		for i := range k.y.Data {
			var c float32
			switch n {
			case 1:
				c = k.c.Data[0]
			case k.s.N:
				c = k.c.Data[i%k.s.N]
			default:
				c = k.c.Data[i]
			}
			k.y.Data[i] += k.beta * c
		}
	}
}

func (k *gemm) Backward() {
	dy := k.y.Grad
	if k.alpha != 1 {
		scaled := k.b.Plan.Scratch(len(dy))
		for i, g := range dy {
			scaled[i] = g * k.alpha
		}
		dy = scaled
	}
	var dbias []float32
	if k.bias && k.dc != nil {
		dbias = k.dc.Buf
	}
	kernels.GemmBackward(k.s, k.a.Data, k.w.Data, dy, buf(k.da), buf(k.dw), dbias)
	if k.dc != nil && !k.bias {
		d := k.dc.Buf
		clear(d)
		for i, g := range k.y.Grad {
			switch len(d) {
			case 1:
				d[0] += k.beta * g
			case k.s.N:
				d[i%k.s.N] += k.beta * g
			default:
				d[i] = k.beta * g
			}
		}
	}
}
