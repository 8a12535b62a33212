package kernels

import "math"

// Smooth activations of the transformer-style CNNs (ConvNeXt): GELU, erf, tanh, √x.
//
// erf and e^(−x²) are read from cubic Hermite tables built at start-up from math.Erf
// and math.Exp (values and exact derivatives at 512 knots over [0, 4]); between knots the
// cubic is within 5e-11 of the function (TestSmoothTables), far below float32's
// resolution, and costs a few multiply-adds instead of math.Erf's ~100 ns.

// hermite is a cubic Hermite table of an even or odd function on [0, n/scale].
type hermite struct {
	scale float64   // knots per unit
	f, df []float64 // value and derivative at each knot
}

func newHermite(n int, scale float64, f, df func(float64) float64) *hermite {
	h := &hermite{scale: scale, f: make([]float64, n+1), df: make([]float64, n+1)}
	for i := range h.f {
		x := float64(i) / scale
		h.f[i], h.df[i] = f(x), df(x)/scale // derivative per knot step
	}
	return h
}

// at returns the interpolated value at 0 ≤ x < n/scale.
func (h *hermite) at(x float64) float64 {
	u := x * h.scale
	i := int(u)
	t := u - float64(i)
	t2 := t * t
	t3 := t2 * t
	return (2*t3-3*t2+1)*h.f[i] + (t3-2*t2+t)*h.df[i] + (-2*t3+3*t2)*h.f[i+1] + (t3-t2)*h.df[i+1]
}

const tableEnd = 4 // erf(4) rounds to 1 in float32; e^(−16) < 1.2e-7

var (
	erfTable   = newHermite(512, 512/tableEnd, math.Erf, func(x float64) float64 { return 2 / math.SqrtPi * math.Exp(-x*x) })
	gaussTable = newHermite(512, 512/tableEnd, func(x float64) float64 { return math.Exp(-x * x) },
		func(x float64) float64 { return -2 * x * math.Exp(-x*x) })
)

// erf64 is erf(x) from the table (±1 beyond it).
func erf64(x float64) float64 {
	a := math.Abs(x)
	if a >= tableEnd {
		return math.Copysign(1, x)
	}
	return math.Copysign(erfTable.at(a), x)
}

// gauss64 is e^(−x²) from the table (math.Exp beyond it).
func gauss64(x float64) float64 {
	a := math.Abs(x)
	if a >= tableEnd {
		return math.Exp(-x * x)
	}
	return gaussTable.at(a)
}

// Erf computes y = erf(x).
func Erf(x, y []float32) {
	mapEach(x, y, 12, func(v float32) float32 { return float32(erf64(float64(v))) })
}

// ErfBackward computes dx = dy·2/√π·e^(−x²).
func ErfBackward(x, dy, dx []float32) {
	gradEach(x, dy, dx, 12, func(v, g float32) float32 {
		return float32(float64(g) * (2 / math.SqrtPi) * gauss64(float64(v)))
	})
}

// Gelu computes y = x·Φ(x) = x/2·(1 + erf(x/√2)), or with tanh its approximation
// x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
func Gelu(x, y []float32, tanh bool) {
	if tanh {
		unary(x, y, 30, func(x, y []float32) {
			y = y[:len(x)]
			for i, v := range x {
				y[i] = float32(geluTanh(float64(v)))
			}
		})
		return
	}
	unary(x, y, 12, func(x, y []float32) {
		y = y[:len(x)]
		for i, v := range x {
			u := float64(v)
			y[i] = float32(0.5 * u * (1 + erf64(u/math.Sqrt2)))
		}
	})
}

const geluK = 0.7978845608028654 // √(2/π)

func geluTanh(x float64) float64 { return 0.5 * x * (1 + math.Tanh(geluK*(x+0.044715*x*x*x))) }

// GeluBackward computes dx = dy·(Φ(x) + x·φ(x)) (φ the standard normal density), or
// the derivative of the tanh approximation.
func GeluBackward(x, dy, dx []float32, tanh bool) {
	if tanh {
		binary(x, dy, dx, 30, func(x, dy, dx []float32) {
			dy, dx = dy[:len(x)], dx[:len(x)]
			for i, v := range x {
				u := float64(v)
				t := math.Tanh(geluK * (u + 0.044715*u*u*u))
				d := 0.5*(1+t) + 0.5*u*(1-t*t)*geluK*(1+3*0.044715*u*u)
				dx[i] = float32(float64(dy[i]) * d)
			}
		})
		return
	}
	binary(x, dy, dx, 16, func(x, dy, dx []float32) {
		dy, dx = dy[:len(x)], dx[:len(x)]
		for i, v := range x {
			u := float64(v)
			s := u / math.Sqrt2
			d := 0.5*(1+erf64(s)) + u*gauss64(s)/math.Sqrt(2*math.Pi)
			dx[i] = float32(float64(dy[i]) * d)
		}
	})
}

// mapEach writes y[i] = f(x[i]) in parallel chunks.
func mapEach(x, y []float32, cost int, f func(float32) float32) {
	unary(x, y, cost, func(x, y []float32) {
		y = y[:len(x)]
		for i, v := range x {
			y[i] = f(v)
		}
	})
}

// gradEach writes dx[i] = f(x[i], dy[i]) in parallel chunks.
func gradEach(x, dy, dx []float32, cost int, f func(x, dy float32) float32) {
	binary(x, dy, dx, cost, func(x, dy, dx []float32) {
		dy, dx = dy[:len(x)], dx[:len(x)]
		for i, v := range x {
			dx[i] = f(v, dy[i])
		}
	})
}

// Tanh computes y = tanh(x).
func Tanh(x, y []float32) {
	mapEach(x, y, 20, func(v float32) float32 { return float32(math.Tanh(float64(v))) })
}

// TanhBackward computes dx = dy·(1 − y²) from the forward output y.
func TanhBackward(y, dy, dx []float32) {
	gradEach(y, dy, dx, 1, func(v, g float32) float32 { return g * (1 - v*v) })
}

// Sqrt computes y = √x.
func Sqrt(x, y []float32) {
	mapEach(x, y, 2, func(v float32) float32 { return float32(math.Sqrt(float64(v))) })
}

// SqrtBackward computes dx = dy/(2·y) from the forward output y.
func SqrtBackward(y, dy, dx []float32) {
	gradEach(y, dy, dx, 2, func(v, g float32) float32 { return g / (2 * v) })
}
