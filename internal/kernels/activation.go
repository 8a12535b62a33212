package kernels

import "math"

// Elementwise activations. Forward functions write y from x and backward
// functions write dx from dy and the forward input x (or the forward output
// y where the name says so); y may alias x and dx may alias dy. Where a
// function has a kink, the gradient there is the one-sided value PyTorch
// uses.

// elemChunk is the number of elements one parallel task handles.
const elemChunk = 1 << 14

// mapElems runs f over [0, n) in parallel chunks.
func mapElems(n, cost int, f func(lo, hi int)) {
	tasks := (n + elemChunk - 1) / elemChunk
	parFor(tasks, elemChunk*cost, func(lo, hi int) {
		f(lo*elemChunk, min(hi*elemChunk, n))
	})
}

func unary(x, y []float32, cost int, f func(x, y []float32)) {
	need("y", y, len(x))
	mapElems(len(x), cost, func(lo, hi int) { f(x[lo:hi], y[lo:hi]) })
}

func binary(x, dy, dx []float32, cost int, f func(x, dy, dx []float32)) {
	need("dy", dy, len(x))
	need("dx", dx, len(x))
	mapElems(len(x), cost, func(lo, hi int) { f(x[lo:hi], dy[lo:hi], dx[lo:hi]) })
}

// ReLU computes y = max(x, 0).
func ReLU(x, y []float32) {
	unary(x, y, 1, func(x, y []float32) {
		y = y[:len(x)]
		if haveElem16 && useElem16 && len(x) > 0 {
			affinePlanes(&x[0], &y[0], len(x), 1, len(x), 1, 0, float32(math.Inf(1)), true)
			return
		}
		for i, v := range x {
			y[i] = relu32(v)
		}
	})
}

// ReLUBackward computes dx = dy where x > 0, else 0. The forward output y
// may be passed for x.
func ReLUBackward(x, dy, dx []float32) { binary(x, dy, dx, 1, reluBackward) }

// reluBackward is ReLUBackward on one goroutine.
func reluBackward(x, dy, dx []float32) {
	dy, dx = dy[:len(x)], dx[:len(x)]
	if n := bulk16(len(x)); n > 0 {
		reluGrad16(&x[0], &dy[0], &dx[0], n)
		x, dy, dx = x[n:], dy[n:], dx[n:]
	}
	for i, v := range x {
		dx[i] = maskf(dy[i], posMask(v))
	}
}

// posMask returns all ones when v > 0 and 0 otherwise (−0 included),
// without a branch: elementwise masks on random signs otherwise cost a
// mispredicted branch every other element.
func posMask(v float32) uint32 { return uint32(-int64(int32(math.Float32bits(v))) >> 63) }

// maskf returns v where m is all ones and +0 where m is 0.
func maskf(v float32, m uint32) float32 { return math.Float32frombits(math.Float32bits(v) & m) }

// selectf returns a where m is all ones and b where m is 0.
func selectf(m uint32, a, b float32) float32 {
	return math.Float32frombits(math.Float32bits(a)&m | math.Float32bits(b)&^m)
}

// Clip computes y = min(max(x, lo), hi); Clip(x, y, 0, 6) is ReLU6.
func Clip(x, y []float32, lo, hi float32) {
	unary(x, y, 1, func(x, y []float32) { clip(x, y, lo, hi) })
}

// clip is Clip on one goroutine.
func clip(x, y []float32, lo, hi float32) {
	y = y[:len(x)]
	if n := bulk16(len(x)); n > 0 {
		clip16(&x[0], &y[0], n, lo, hi)
		x, y = x[n:], y[n:]
	}
	for i, v := range x {
		y[i] = min(max(v, lo), hi)
	}
}

// clamp is a ReLU clipped above at hi (+Inf: none) that a convolution
// applies to its output; the zero value applies nothing.
type clamp struct {
	on bool
	hi float32
}

// apply clips y to [0, hi] in place when c is on.
func (c clamp) apply(y []float32) {
	if c.on {
		clip(y, y, 0, c.hi)
	}
}

// ClipBackward computes dx = dy where lo < x < hi, else 0 (PyTorch's
// hardtanh convention: no gradient at the bounds).
func ClipBackward(x, dy, dx []float32, lo, hi float32) {
	binary(x, dy, dx, 1, func(x, dy, dx []float32) { clipBackward(x, dy, dx, lo, hi) })
}

// clipBackward is ClipBackward on one goroutine.
func clipBackward(x, dy, dx []float32, lo, hi float32) {
	dy, dx = dy[:len(x)], dx[:len(x)]
	if n := bulk16(len(x)); n > 0 {
		clipGrad16(&x[0], &dy[0], &dx[0], n, lo, hi)
		x, dy, dx = x[n:], dy[n:], dx[n:]
	}
	for i, v := range x {
		dx[i] = maskf(dy[i], posMask(v-lo)&posMask(hi-v))
	}
}

// LeakyReLU computes y = x for x ≥ 0 and alpha·x otherwise.
func LeakyReLU(x, y []float32, alpha float32) {
	unary(x, y, 1, func(x, y []float32) {
		y = y[:len(x)]
		for i, v := range x {
			p := relu32(v)
			y[i] = p + alpha*(v-p)
		}
	})
}

// LeakyReLUBackward computes dx = dy for x > 0 and alpha·dy otherwise.
func LeakyReLUBackward(x, dy, dx []float32, alpha float32) {
	binary(x, dy, dx, 1, func(x, dy, dx []float32) {
		dy, dx = dy[:len(x)], dx[:len(x)]
		for i, v := range x {
			g := dy[i]
			dx[i] = selectf(posMask(v), g, alpha*g)
		}
	})
}

// Sigmoid computes y = 1/(1 + e^−x).
func Sigmoid(x, y []float32) {
	unary(x, y, 20, func(x, y []float32) {
		y = y[:len(x)]
		for i, v := range x {
			y[i] = sigmoid32(v)
		}
	})
}

// sigmoid32 computes 1/(1 + e^−|v|) and reflects it for negative v, so
// that exp never overflows.
func sigmoid32(v float32) float32 {
	s := float32(1 / (1 + math.Exp(-math.Abs(float64(v)))))
	return selectf(posMask(-v), 1-s, s)
}

// SigmoidBackward computes dx = dy·y·(1 − y) from the forward output y.
func SigmoidBackward(y, dy, dx []float32) {
	binary(y, dy, dx, 1, func(y, dy, dx []float32) {
		dy, dx = dy[:len(y)], dx[:len(y)]
		for i, v := range y {
			dx[i] = dy[i] * v * (1 - v)
		}
	})
}

// HardSigmoid computes y = max(0, min(1, alpha·x + beta)) (ONNX defaults
// alpha = 0.2, beta = 0.5; PyTorch's hardsigmoid is alpha = 1/6).
func HardSigmoid(x, y []float32, alpha, beta float32) {
	unary(x, y, 1, func(x, y []float32) {
		y = y[:len(x)]
		for i, v := range x {
			y[i] = min(max(alpha*v+beta, 0), 1)
		}
	})
}

// HardSigmoidBackward computes dx = alpha·dy where 0 < alpha·x + beta < 1,
// else 0.
func HardSigmoidBackward(x, dy, dx []float32, alpha, beta float32) {
	binary(x, dy, dx, 1, func(x, dy, dx []float32) {
		dy, dx = dy[:len(x)], dx[:len(x)]
		for i, v := range x {
			z := alpha*v + beta
			dx[i] = maskf(alpha*dy[i], posMask(z)&posMask(1-z))
		}
	})
}

// HardSwish computes y = x·max(0, min(1, x/6 + 1/2)) (ONNX HardSwish).
func HardSwish(x, y []float32) {
	unary(x, y, 2, func(x, y []float32) {
		y = y[:len(x)]
		for i, v := range x {
			y[i] = v * min(max(v/6+0.5, 0), 1)
		}
	})
}

// HardSwishBackward computes dx = 0 for x < −3, dy·(x/3 + 1/2) for
// −3 ≤ x ≤ 3 and dy for x > 3 (PyTorch's convention at the kinks).
func HardSwishBackward(x, dy, dx []float32) {
	binary(x, dy, dx, 2, func(x, dy, dx []float32) {
		dy, dx = dy[:len(x)], dx[:len(x)]
		for i, v := range x {
			d := selectf(posMask(v-3), 1, v/3+0.5)
			dx[i] = maskf(dy[i]*d, ^posMask(-3-v))
		}
	})
}

// AddReLU computes y = max(a + b, 0), the residual connection of a ResNet
// block in one pass. y may alias a or b.
func AddReLU(a, b, y []float32) {
	need("b", b, len(a))
	need("y", y, len(a))
	mapElems(len(a), 1, func(lo, hi int) { addReLU(a[lo:hi], b[lo:hi], y[lo:hi]) })
}

// addReLU is AddReLU on one worker.
func addReLU(a, b, y []float32) {
	if n := bulk16(len(a)); n > 0 {
		addReLU16(&a[0], &b[0], &y[0], n)
		a, b, y = a[n:], b[n:], y[n:]
	}
	for i, v := range a {
		y[i] = relu32(v + b[i])
	}
}

// AddMapped is Add, or AddReLU with relu, with either input or both read
// through an InputMap (ma, mb; nil for none) over c channels of hw
// floats per sample: the Add (and Relu) after BatchNormalizations whose
// outputs are not stored. Each mapped plane is computed into a buffer in
// the cache, with the rounding of the BatchNormalization's own output, so
// y has the same bits as Add or AddReLU of the stored outputs.
func AddMapped(a []float32, ma *InputMap, b []float32, mb *InputMap, y []float32, c, hw int, relu bool) {
	need("b", b, len(a))
	need("y", y, len(a))
	if c < 1 || hw < 1 || len(a)%(c*hw) != 0 {
		panic("kernels: AddMapped on data that is not whole samples of c·hw floats")
	}
	for _, m := range []*InputMap{ma, mb} {
		if m != nil {
			m.check(c)
		}
	}
	parFor(len(a)/hw, 3*hw, func(lo, hi int) {
		ta, tb := make([]float32, hw), make([]float32, hw)
		for p := lo; p < hi; p++ {
			ch := p % c
			pa, pb := a[p*hw:][:hw], b[p*hw:][:hw]
			if ma != nil {
				ma.plane(pa, ta, ch)
				pa = ta
			}
			if mb != nil {
				mb.plane(pb, tb, ch)
				pb = tb
			}
			if relu {
				addReLU(pa, pb, y[p*hw:][:hw])
			} else {
				add(pa, pb, y[p*hw:][:hw])
			}
		}
	})
}

// ReLUBackward2 is ReLUBackward writing the same gradient to two outputs
// (the two inputs of AddReLU); either may be nil. The forward output y may
// be passed for x.
func ReLUBackward2(x, dy, d1, d2 []float32) {
	switch {
	case d1 == nil && d2 == nil:
		return
	case d1 == nil:
		ReLUBackward(x, dy, d2)
		return
	case d2 == nil:
		ReLUBackward(x, dy, d1)
		return
	}
	need("dy", dy, len(x))
	need("d1", d1, len(x))
	need("d2", d2, len(x))
	mapElems(len(x), 1, func(lo, hi int) {
		x, dy, d1, d2 := x[lo:hi], dy[lo:hi], d1[lo:hi], d2[lo:hi]
		if n := bulk16(len(x)); n > 0 {
			reluGrad2x16(&x[0], &dy[0], &d1[0], &d2[0], n)
			x, dy, d1, d2 = x[n:], dy[n:], d1[n:], d2[n:]
		}
		for i, v := range x {
			g := maskf(dy[i], posMask(v))
			d1[i], d2[i] = g, g
		}
	})
}
