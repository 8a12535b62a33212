package engine

import (
	"math"

	"github.com/qnas/qnas/internal/kernels"
)

// binary runs Add, Sub, Mul, Div and Pow with numpy broadcasting.
type binary struct {
	op      byte // '+', '-', '*', '/', '^'
	a, b, y *Value
	da, db  *GradDst
	same    bool      // a, b and y have one shape
	runs    []run     // otherwise: the innermost runs of the broadcast, precomputed
	ma, mb  *Deferred // an Add's: the BatchNormalizations writing a and b, when linked (see Deferred)
}

// addMapped runs a same-shape Add (with its fused Relu when relu) through the maps of the
// BatchNormalizations linked to it, and reports whether any was active.
func (k *binary) addMapped(relu bool) bool {
	a, ma := k.ma.Mapped(k.a)
	b, mb := k.mb.Mapped(k.b)
	if ma == nil && mb == nil {
		return false
	}
	y := k.y
	kernels.AddMapped(a, ma, b, mb, y.Data, y.Shape[1], y.Len()/(y.Shape[0]*y.Shape[1]), relu)
	return true
}

// run is one innermost stretch of a broadcast: n outputs from o, reading a from ai by as
// and b from bi by bs.
type run struct{ o, n, ai, as, bi, bs int }

func buildBinary(op byte) Builder {
	return func(bd *Build) (Kernel, error) {
		a, b, y := bd.In[0], bd.In[1], bd.Out[0]
		k := &binary{op: op, a: a, b: b, y: y, da: bd.InGrad(0), db: bd.InGrad(1)}
		k.same = a.Len() == y.Len() && b.Len() == y.Len()
		if !k.same {
			sa, sb := broadcastStrides(a.Shape, y.Shape), broadcastStrides(b.Shape, y.Shape)
			sa.each(func(o, i, n, step int) { k.runs = append(k.runs, run{o: o, n: n, ai: i, as: step}) })
			j := 0
			sb.each(func(_, i, _, step int) { k.runs[j].bi, k.runs[j].bs = i, step; j++ })
		}
		return k, nil
	}
}

// broadcastStrides maps output coordinates to offsets in a tensor of shape in broadcast to
// out: stride 0 on the axes in lacks or has size 1.
func broadcastStrides(in, out []int) strided {
	s := strided{shape: out, strides: make([]int, len(out))}
	st := rowMajorStrides(in)
	for i := range in {
		j := i + len(out) - len(in)
		if in[i] != 1 {
			s.strides[j] = st[i]
		}
	}
	return s
}

func (k *binary) apply(x, y float32) float32 {
	switch k.op {
	case '+':
		return x + y
	case '-':
		return x - y
	case '*':
		return x * y
	case '^':
		return pow32(x, y)
	}
	return x / y
}

// pow32 is x^e, with the exponents models use (LayerNorm's square) computed exactly.
func pow32(x, e float32) float32 {
	switch e {
	case 2:
		return x * x
	case 1:
		return x
	case 3:
		return x * x * x
	case 0.5:
		return float32(math.Sqrt(float64(x)))
	}
	return float32(math.Pow(float64(x), float64(e)))
}

// powGrads returns the gradients of x^e with respect to x and e for upstream gradient g
// and output y, as PyTorch defines them: 0 for x where e = 0, 0 for e where x = 0 and
// e ≥ 0 (NaN for e where x < 0).
func powGrads(g, x, e, y float32) (gx, ge float32) {
	if e != 0 {
		gx = g * e * pow32(x, e-1)
	}
	if x != 0 || e < 0 {
		ge = g * y * float32(math.Log(float64(x)))
	}
	return gx, ge
}

func (k *binary) Forward(bool) {
	a, b, y := k.a.Data, k.b.Data, k.y.Data
	if k.same {
		switch k.op {
		case '+':
			if !k.addMapped(false) {
				kernels.Add(a, b, y)
			}
		case '-':
			for i := range y {
				y[i] = a[i] - b[i]
			}
		case '*':
			for i := range y {
				y[i] = a[i] * b[i]
			}
		case '^':
			for i := range y {
				y[i] = pow32(a[i], b[i])
			}
		default:
			for i := range y {
				y[i] = a[i] / b[i]
			}
		}
		return
	}
	for _, r := range k.runs {
		for t := 0; t < r.n; t++ {
			y[r.o+t] = k.apply(a[r.ai+t*r.as], b[r.bi+t*r.bs])
		}
	}
}

func (k *binary) Backward() {
	dy, a, b := k.y.Grad, k.a.Data, k.b.Data
	if k.op == '^' {
		k.powBackward()
		return
	}
	if k.same {
		if k.da != nil {
			sameGradA(k.op, dy, b, k.da.Buf)
		}
		if k.db != nil {
			sameGradB(k.op, dy, a, b, k.db.Buf)
		}
		return
	}
	if k.da != nil {
		clear(k.da.Buf)
	}
	if k.db != nil {
		clear(k.db.Buf)
	}
	for _, r := range k.runs {
		ai, as, ib, bs := r.ai, r.as, r.bi, r.bs
		for t := 0; t < r.n; t++ {
			g, x, z := dy[r.o+t], a[ai+t*as], b[ib+t*bs]
			var ga, gb float32
			switch k.op {
			case '+':
				ga, gb = g, g
			case '-':
				ga, gb = g, -g
			case '*':
				ga, gb = g*z, g*x
			default:
				ga, gb = g/z, -g*x/(z*z)
			}
			if k.da != nil {
				k.da.Buf[ai+t*as] += ga
			}
			if k.db != nil {
				k.db.Buf[ib+t*bs] += gb
			}
		}
	}
}

// powBackward writes Pow's gradients, broadcast or not.
func (k *binary) powBackward() {
	dy, a, b, y := k.y.Grad, k.a.Data, k.b.Data, k.y.Data
	if k.da != nil {
		clear(k.da.Buf)
	}
	if k.db != nil {
		clear(k.db.Buf)
	}
	runs := k.runs
	if k.same {
		runs = []run{{n: len(y), as: 1, bs: 1}}
	}
	for _, r := range runs {
		for t := 0; t < r.n; t++ {
			ia, ib := r.ai+t*r.as, r.bi+t*r.bs
			ga, gb := powGrads(dy[r.o+t], a[ia], b[ib], y[r.o+t])
			if k.da != nil {
				k.da.Buf[ia] += ga
			}
			if k.db != nil {
				k.db.Buf[ib] += gb
			}
		}
	}
}

// sameGradA writes the gradient of a for same-shape operands, one loop per
// operator (a switch inside the loop cost more than the arithmetic).
func sameGradA(op byte, dy, b, da []float32) {
	da = da[:len(dy)]
	switch op {
	case '+', '-':
		kernels.Copy(da, dy)
	case '*':
		b = b[:len(dy)]
		for i, g := range dy {
			da[i] = g * b[i]
		}
	default:
		b = b[:len(dy)]
		for i, g := range dy {
			da[i] = g / b[i]
		}
	}
}

// sameGradB writes the gradient of b for same-shape operands.
func sameGradB(op byte, dy, a, b, db []float32) {
	db = db[:len(dy)]
	switch op {
	case '+':
		kernels.Copy(db, dy)
	case '-':
		for i, g := range dy {
			db[i] = -g
		}
	case '*':
		a = a[:len(dy)]
		for i, g := range dy {
			db[i] = g * a[i]
		}
	default:
		a, b = a[:len(dy)], b[:len(dy)]
		for i, g := range dy {
			db[i] = -g * a[i] / (b[i] * b[i])
		}
	}
}

// addRelu runs an Add whose only reader is a Relu (the residual connection of a ResNet
// block, fused by the engine: Add absorbs a ReLU): one pass forward, one backward.
type addRelu struct{ add *binary }

func buildAdd(bd *Build) (Kernel, error) {
	k, err := buildBinary('+')(bd)
	if err != nil || !bd.ReLU {
		return k, err
	}
	return &addRelu{add: k.(*binary)}, nil
}

func (k *addRelu) Forward(train bool) {
	b := k.add
	if b.same {
		if !b.addMapped(true) {
			kernels.AddReLU(b.a.Data, b.b.Data, b.y.Data)
		}
		return
	}
	b.Forward(train)
	kernels.ReLU(b.y.Data, b.y.Data)
}

func (k *addRelu) Backward() {
	b := k.add
	y, dy := b.y.Data, b.y.Grad
	if b.same {
		var da, db []float32
		if b.da != nil {
			da = b.da.Buf
		}
		if b.db != nil {
			db = b.db.Buf
		}
		kernels.ReLUBackward2(y, dy, da, db)
		return
	}
	// The output gradient is this op's own: mask it in place, then the Add's backward.
	kernels.ReLUBackward(y, dy, dy)
	b.Backward()
}

func init() {
	Register("Add", buildAdd)
	Register("Sub", buildBinary('-'))
	Register("Mul", buildBinary('*'))
	Register("Div", buildBinary('/'))
	Register("Pow", buildBinary('^'))
}
