package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// gradCase is one differentiable kernel under the finite-difference check:
// inputs, a forward that writes nout outputs, and a backward that writes
// the gradient of every checked input (din[i] is nil for the others).
type gradCase struct {
	name string
	in   [][]float32
	nout int
	fwd  func(in [][]float32, y []float32)
	bwd  func(in [][]float32, y, dy []float32, din [][]float32)
	redo func(r *rand.Rand) bool // optional: redraws inputs, true if they are fine
}

// Shapes of the convolution cases: odd sizes, strides, asymmetric pads,
// dilations, groups, depthwise with multipliers and without, 1×1, and
// windows that reach whole rows of padding.
var convCases = []ConvShape{
	{N: 2, C: 3, H: 7, W: 6, OC: 4, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
	{N: 3, C: 2, H: 9, W: 8, OC: 5, KH: 3, KW: 2, SH: 2, SW: 3, PT: 2, PB: 1, PR: 1},
	{N: 2, C: 2, H: 8, W: 9, OC: 3, KH: 3, KW: 3, DH: 2, DW: 3, PT: 1, PL: 2, PR: 1},
	{N: 2, C: 4, H: 5, W: 5, OC: 6, KH: 3, KW: 3, Groups: 2, PT: 1, PL: 1, PB: 1, PR: 1},
	{N: 3, C: 6, H: 4, W: 5, OC: 3, KH: 2, KW: 3, Groups: 3, SH: 2, PL: 1, PR: 1},
	{N: 2, C: 3, H: 6, W: 7, OC: 3, KH: 3, KW: 3, Groups: 3, PT: 1, PL: 1, PB: 1, PR: 1},
	{N: 3, C: 2, H: 7, W: 7, OC: 4, KH: 3, KW: 3, Groups: 2, SH: 2, SW: 2, DH: 2, PT: 2, PL: 1, PB: 1, PR: 2},
	{N: 2, C: 4, H: 5, W: 6, OC: 8, KH: 5, KW: 3, Groups: 4, SW: 2, PT: 2, PL: 1, PB: 2, PR: 1},
	{N: 3, C: 4, H: 5, W: 3, OC: 2, KH: 1, KW: 1},
	{N: 2, C: 4, H: 5, W: 3, OC: 6, KH: 1, KW: 1, Groups: 2},
	{N: 2, C: 3, H: 5, W: 5, OC: 4, KH: 1, KW: 1, SH: 2, SW: 2},
	{N: 1, C: 2, H: 2, W: 3, OC: 2, KH: 3, KW: 4, PT: 1, PL: 1, PB: 1, PR: 1},
	{N: 2, C: 1, H: 3, W: 3, OC: 2, KH: 2, KW: 2, PT: 3, PR: 3},
	// depthwise on the direct path where the CPU has it: 5×5, 3×3 and 5×5
	// at stride 2, 7×7
	{N: 2, C: 2, H: 5, W: 6, OC: 2, KH: 5, KW: 5, Groups: 2, PT: 2, PL: 2, PB: 2, PR: 2},
	{N: 2, C: 2, H: 7, W: 6, OC: 2, KH: 3, KW: 3, Groups: 2, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1},
	{N: 3, C: 2, H: 6, W: 9, OC: 2, KH: 5, KW: 5, Groups: 2, SH: 2, SW: 2, PT: 2, PL: 2, PB: 2, PR: 2},
	{N: 1, C: 2, H: 4, W: 5, OC: 2, KH: 7, KW: 7, Groups: 2, PT: 3, PL: 3, PB: 3, PR: 3},
}

var poolCases = []PoolShape{
	{N: 2, C: 3, H: 5, W: 6, KH: 2, KW: 2, SH: 2, SW: 2},
	{N: 1, C: 2, H: 7, W: 5, KH: 3, KW: 3, SH: 2, SW: 1, PT: 1, PL: 1, PB: 1, PR: 1},
	{N: 2, C: 1, H: 6, W: 7, KH: 3, KW: 2, SH: 1, SW: 3, PT: 2, PR: 1},
	{N: 1, C: 2, H: 4, W: 4, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1, CountIncludePad: true},
}

func convCase(r *rand.Rand, s ConvShape) gradCase {
	scratch := make([]float32, s.ScratchLen())
	return gradCase{
		name: "Conv2D/" + s.String(),
		in:   [][]float32{randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.OC)},
		nout: s.YLen(),
		fwd:  func(in [][]float32, y []float32) { Conv2D(s, in[0], in[1], in[2], y, scratch) },
		bwd: func(in [][]float32, _, dy []float32, d [][]float32) {
			Conv2DBackward(s, in[0], in[1], dy, d[0], d[1], d[2], scratch)
		},
	}
}

func bnCase(r *rand.Rand, p BNParams) gradCase {
	n := p.N * p.C * p.HW
	mean, invStd := make([]float32, p.C), make([]float32, p.C)
	c := gradCase{
		name: fmt.Sprintf("BatchNormTrain/relu=%v,max=%g", p.ReLU, p.ReLUMax),
		in:   [][]float32{randn(r, n), randn(r, p.C), randn(r, p.C)},
		nout: n,
		fwd: func(in [][]float32, y []float32) {
			BatchNormTrain(p, in[0], in[1], in[2], y, mean, invStd, nil, nil)
		},
		bwd: func(in [][]float32, y, dy []float32, d [][]float32) {
			BatchNormTrain(p, in[0], in[1], in[2], y, mean, invStd, nil, nil)
			BatchNormBackward(p, in[0], dy, in[1], in[2], mean, invStd, d[0], d[1], d[2])
		},
	}
	if p.ReLU {
		// Keep every pre-activation clear of the ReLU's kinks.
		q := p
		q.ReLU = false
		z := make([]float32, n)
		c.redo = func(r *rand.Rand) bool {
			BatchNormTrain(q, c.in[0], c.in[1], c.in[2], z, mean, invStd, nil, nil)
			for i, v := range z {
				if abs32(v) < 0.05 || p.ReLUMax > 0 && abs32(v-p.ReLUMax) < 0.05 {
					c.in[0][i] = float32(r.NormFloat64())
					return false
				}
			}
			return true
		}
	}
	return c
}

func unaryCase(r *rand.Rand, name string, scale float32, kinks []float32,
	f func(x, y []float32), b func(x, y, dy, dx []float32)) gradCase {
	x := randn(r, 61)
	for i := range x {
		x[i] *= scale
	}
	awayFrom(r, x, scale, 0.03, kinks...)
	return gradCase{
		name: name,
		in:   [][]float32{x},
		nout: len(x),
		fwd:  func(in [][]float32, y []float32) { f(in[0], y) },
		bwd:  func(in [][]float32, y, dy []float32, d [][]float32) { b(in[0], y, dy, d[0]) },
	}
}

func gradCases(r *rand.Rand) []gradCase {
	var cs []gradCase
	for _, s := range convCases {
		cs = append(cs, convCase(r, s))
	}
	cs = append(cs,
		bnCase(r, BNParams{N: 3, C: 2, HW: 7, Eps: 1e-5}),
		bnCase(r, BNParams{N: 2, C: 3, HW: 5, Eps: 1e-3, ReLU: true}),
		bnCase(r, BNParams{N: 2, C: 2, HW: 35, Eps: 1e-3, ReLU: true}),
		bnCase(r, BNParams{N: 2, C: 2, HW: 19, Eps: 1e-3}),
		bnCase(r, BNParams{N: 2, C: 2, HW: 19, Eps: 1e-3, ReLU: true, ReLUMax: 0.6}),
		bnCase(r, BNParams{N: 3, C: 2, HW: 5, Eps: 1e-3, ReLU: true, ReLUMax: 0.4}),
		unaryCase(r, "ReLU", 1, []float32{0}, ReLU,
			func(x, _, dy, dx []float32) { ReLUBackward(x, dy, dx) }),
		unaryCase(r, "Clip", 4, []float32{-1, 2}, func(x, y []float32) { Clip(x, y, -1, 2) },
			func(x, _, dy, dx []float32) { ClipBackward(x, dy, dx, -1, 2) }),
		unaryCase(r, "ReLU6", 5, []float32{0, 6}, func(x, y []float32) { Clip(x, y, 0, 6) },
			func(x, _, dy, dx []float32) { ClipBackward(x, dy, dx, 0, 6) }),
		unaryCase(r, "LeakyReLU", 1, []float32{0}, func(x, y []float32) { LeakyReLU(x, y, 0.1) },
			func(x, _, dy, dx []float32) { LeakyReLUBackward(x, dy, dx, 0.1) }),
		unaryCase(r, "Sigmoid", 3, nil, Sigmoid,
			func(_, y, dy, dx []float32) { SigmoidBackward(y, dy, dx) }),
		unaryCase(r, "HardSigmoid", 4, []float32{-2.5, 2.5},
			func(x, y []float32) { HardSigmoid(x, y, 0.2, 0.5) },
			func(x, _, dy, dx []float32) { HardSigmoidBackward(x, dy, dx, 0.2, 0.5) }),
		unaryCase(r, "HardSwish", 4, []float32{-3, 3}, HardSwish,
			func(x, _, dy, dx []float32) { HardSwishBackward(x, dy, dx) }),
	)
	for _, p := range poolCases {
		name := fmt.Sprintf("%dx%d_k%dx%d_s%dx%d_p%d%d%d%d", p.H, p.W, p.KH, p.KW, p.SH, p.SW, p.PT, p.PL, p.PB, p.PR)
		cs = append(cs, gradCase{
			name: "MaxPool2D/" + name,
			in:   [][]float32{distinct(r, p.XLen())},
			nout: p.YLen(),
			fwd:  func(in [][]float32, y []float32) { MaxPool2D(p, in[0], y) },
			bwd: func(in [][]float32, _, dy []float32, d [][]float32) {
				MaxPool2DBackward(p, in[0], dy, d[0])
			},
		})
		for _, inc := range []bool{false, true} {
			q := p
			q.CountIncludePad = inc
			cs = append(cs, gradCase{
				name: fmt.Sprintf("AvgPool2D/%s_inc=%v", name, inc),
				in:   [][]float32{randn(r, q.XLen())},
				nout: q.YLen(),
				fwd:  func(in [][]float32, y []float32) { AvgPool2D(q, in[0], y) },
				bwd: func(_ [][]float32, _, dy []float32, d [][]float32) {
					AvgPool2DBackward(q, dy, d[0])
				},
			})
		}
	}
	cs = append(cs, gradCase{
		name: "GlobalAvgPool",
		in:   [][]float32{randn(r, 6*7)},
		nout: 6,
		fwd:  func(in [][]float32, y []float32) { GlobalAvgPool(7, in[0], y) },
		bwd: func(_ [][]float32, _, dy []float32, d [][]float32) {
			GlobalAvgPoolBackward(7, dy, d[0])
		},
	})
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			s := GemmShape{M: 3, N: 5, K: 4, TransA: ta, TransB: tb}
			cs = append(cs, gradCase{
				name: fmt.Sprintf("Gemm/transA=%v,transB=%v", ta, tb),
				in:   [][]float32{randn(r, s.M*s.K), randn(r, s.K*s.N), randn(r, s.N)},
				nout: s.M * s.N,
				fwd:  func(in [][]float32, y []float32) { Gemm(s, in[0], in[1], in[2], y) },
				bwd: func(in [][]float32, _, dy []float32, d [][]float32) {
					GemmBackward(s, in[0], in[1], dy, d[0], d[1], d[2])
				},
			})
		}
	}
	const rows, cols = 4, 7
	labels := []int{3, 0, 6, 3}
	cs = append(cs,
		gradCase{
			name: "Softmax",
			in:   [][]float32{randn(r, rows*cols)},
			nout: rows * cols,
			fwd:  func(in [][]float32, y []float32) { Softmax(rows, cols, in[0], y) },
			bwd: func(_ [][]float32, y, dy []float32, d [][]float32) {
				SoftmaxBackward(rows, cols, y, dy, d[0])
			},
		},
		gradCase{
			name: "SoftmaxCrossEntropy",
			in:   [][]float32{randn(r, rows*cols)},
			nout: 1,
			fwd: func(in [][]float32, y []float32) {
				y[0] = float32(SoftmaxCrossEntropy(rows, cols, in[0], labels, nil))
			},
			bwd: func(in [][]float32, _, dy []float32, d [][]float32) {
				SoftmaxCrossEntropy(rows, cols, in[0], labels, d[0])
				for i := range d[0] {
					d[0][i] *= dy[0]
				}
			},
		},
	)
	return cs
}

// TestGradients checks every kernel's backward against central differences
// of its forward. The loss is L = Σ r·y for a random r; kernels are
// deterministic, so outputs a perturbation does not reach cancel exactly and
// the error of the difference quotient is the float32 rounding of the
// outputs it does reach (~1e-6 relative) over the step (h = 1e-2), plus
// h²·f”' for the smooth kernels: a few 1e-4 at most. A wrong index, factor
// or sign gives errors of order one. Inputs stay ≥ 0.03 from every kink so a
// step never crosses one.
func TestGradients(t *testing.T) {
	const h, tol = 1e-2, 2e-3
	forVariants(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, c := range gradCases(r) {
			t.Run(c.name, func(t *testing.T) {
				for try := 0; c.redo != nil && !c.redo(r); try++ {
					if try > 10000 {
						t.Fatal("could not draw inputs away from the kinks")
					}
				}
				y := make([]float32, c.nout)
				c.fwd(c.in, y)
				dy := randn(r, c.nout)
				din := make([][]float32, len(c.in))
				for i, x := range c.in {
					// NaN-filled: a backward must overwrite, not accumulate.
					din[i] = make([]float32, len(x))
					for j := range din[i] {
						din[i][j] = float32(math.NaN())
					}
				}
				c.bwd(c.in, y, dy, din)
				loss := func() float64 {
					c.fwd(c.in, y)
					var s float64
					for i, v := range y {
						s += float64(dy[i]) * float64(v)
					}
					return s
				}
				var worst float64
				for i, x := range c.in {
					for j, v := range x {
						x[j] = v + h
						hp := float64(x[j]) - float64(v)
						lp := loss()
						x[j] = v - h
						hm := float64(v) - float64(x[j])
						lm := loss()
						x[j] = v
						num := (lp - lm) / (hp + hm)
						got := float64(din[i][j])
						err := math.Abs(num-got) / (1 + math.Abs(num))
						worst = max(worst, err)
						if !(err <= tol) {
							t.Fatalf("input %d[%d]: backward %.6g, finite difference %.6g", i, j, got, num)
						}
					}
				}
				if testing.Verbose() {
					t.Logf("worst relative error %.2g", worst)
				}
			})
		}
	})
}
