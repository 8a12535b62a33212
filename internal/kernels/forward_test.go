package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

func TestConvForward(t *testing.T) {
	forVariants(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 1))
		for _, s := range convCases {
			x, w, b := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.OC)
			y := make([]float32, s.YLen())
			scratch := make([]float32, s.ScratchLen())
			Conv2D(s, x, w, b, y, scratch)
			closeTo(t, s.String(), y, refConv(s, x, w, b), 1e-5)
			Conv2D(s, x, w, nil, y, scratch)
			closeTo(t, s.String()+"/nobias", y, refConv(s, x, w, nil), 1e-5)
		}
	})
}

// TestConvBackwardPartial checks that each gradient comes out the same when
// computed alone, and that db is the sum of dy.
func TestConvBackwardPartial(t *testing.T) {
	forVariants(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(2, 2))
		for _, s := range convCases {
			x, w, dy := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.YLen())
			scratch := make([]float32, s.ScratchLen())
			dx, dw, db := make([]float32, s.XLen()), make([]float32, s.WLen()), make([]float32, s.OC)
			Conv2DBackward(s, x, w, dy, dx, dw, db, scratch)
			dx2, dw2, db2 := make([]float32, s.XLen()), make([]float32, s.WLen()), make([]float32, s.OC)
			Conv2DBackward(s, x, w, dy, dx2, nil, nil, scratch)
			Conv2DBackward(s, x, w, dy, nil, dw2, nil, scratch)
			Conv2DBackward(s, x, w, dy, nil, nil, db2, scratch)
			closeTo(t, s.String()+"/dx", dx2, f64(dx), 0)
			closeTo(t, s.String()+"/dw", dw2, f64(dw), 0)
			closeTo(t, s.String()+"/db", db2, f64(db), 0)
			P := s.OH() * s.OW()
			want := make([]float64, s.OC)
			for i, v := range dy {
				want[i/P%s.OC] += float64(v)
			}
			closeTo(t, s.String()+"/db", db, want, 1e-5)
		}
	})
}

func TestConvShape(t *testing.T) {
	s := ConvShape{N: 2, C: 4, H: 28, W: 28, OC: 8, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1}
	if s.OH() != 14 || s.OW() != 14 || s.WLen() != 8*4*9 || s.MACs() != 2*14*14*8*4*9 {
		t.Errorf("OH %d OW %d WLen %d MACs %d", s.OH(), s.OW(), s.WLen(), s.MACs())
	}
	if s.Depthwise() {
		t.Error("dense conv reported depthwise")
	}
	if d := (ConvShape{N: 1, C: 4, H: 3, W: 3, OC: 8, KH: 3, KW: 3, Groups: 4}); !d.Depthwise() || d.ScratchLen() != 0 {
		t.Errorf("depthwise: %v, scratch %d", d.Depthwise(), d.ScratchLen())
	}
	oldC, oldS, oldU := convMinCols, splitByCaller, useConv3x3
	defer func() { convMinCols, splitByCaller, useConv3x3 = oldC, oldS, oldU }()
	convMinCols, splitByCaller, useConv3x3 = 1, func() bool { return false }, false // the BLAS path
	if d := (ConvShape{N: 3, C: 4, H: 3, W: 3, OC: 8, KH: 1, KW: 1}); d.ScratchLen() != (min(runtime.GOMAXPROCS(0), 3)-1)*d.WLen() {
		t.Errorf("1×1 conv, one sample a chunk: scratch %d, want only weight-gradient partials", d.ScratchLen())
	}
	for _, c := range []struct {
		s    ConvShape
		want string
	}{
		{ConvShape{C: 1, H: 1, W: 1, OC: 1, KH: 1, KW: 1}, "positive"},
		{ConvShape{N: 1, C: 3, H: 4, W: 4, OC: 4, KH: 1, KW: 1, Groups: 2}, "groups"},
		{ConvShape{N: 1, C: 1, H: 2, W: 2, OC: 1, KH: 3, KW: 3}, "larger"},
		{ConvShape{N: 1, C: 1, H: 4, W: 4, OC: 1, KH: 3, KW: 3, PT: -1}, "pads"},
		{ConvShape{N: 1, C: 1, H: 4, W: 4, OC: 1, KH: 3, KW: 3, SH: -1}, "strides"},
	} {
		if err := c.s.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", c.s, err, c.want)
		}
	}
	x := make([]float32, s.XLen())
	mustPanic(t, "short y", func() { Conv2D(s, x, make([]float32, s.WLen()), nil, make([]float32, 3), nil) })
	mustPanic(t, "short scratch", func() {
		pl := s.plan()
		Conv2D(s, x, make([]float32, s.WLen()), nil, make([]float32, s.YLen()), make([]float32, pl.scratchFor(1)-1))
	})
}

func TestPoolForward(t *testing.T) {
	forVariants(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 3))
		for _, p := range poolCases {
			for _, inc := range []bool{false, true} {
				p.CountIncludePad = inc
				x := randn(r, p.XLen())
				y := make([]float32, p.YLen())
				MaxPool2D(p, x, y)
				closeTo(t, "max", y, refPool(p, x, true), 0)
				AvgPool2D(p, x, y)
				closeTo(t, "avg", y, refPool(p, x, false), 1e-6)
			}
		}
		x := randn(r, 5*9)
		y := make([]float32, 5)
		GlobalAvgPool(9, x, y)
		want := make([]float64, 5)
		for i, v := range x {
			want[i/9] += float64(v) / 9
		}
		closeTo(t, "gap", y, want, 1e-6)
	})
	if err := (PoolShape{N: 1, C: 1, H: 4, W: 4, KH: 2, KW: 2, PT: 2}).Validate(); err == nil {
		t.Error("pad as large as the window accepted")
	}
	// Max pooling ignores padding even when every input is negative, and
	// routes the gradient to the first maximum of a window.
	p := PoolShape{N: 1, C: 1, H: 2, W: 2, KH: 2, KW: 2, PT: 1, PL: 1}
	x := []float32{-3, -1, -1, -2}
	y := make([]float32, p.YLen())
	MaxPool2D(p, x, y)
	closeTo(t, "negative", y, []float64{-3, -1, -1, -1}, 0)
	dx := make([]float32, 4)
	MaxPool2DBackward(p, x, []float32{1, 2, 4, 8}, dx)
	closeTo(t, "ties", dx, []float64{1, 10, 4, 0}, 0)
}

func TestBatchNorm(t *testing.T) {
	forVariants(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(4, 4))
		for _, act := range []struct {
			relu bool
			max  float32
		}{{false, 0}, {true, 0}, {true, 0.7}} {
			relu := act.relu
			for _, hw := range []int{7, 37} { // 37: the AVX-512 loops and a tail
				p := BNParams{N: 5, C: 3, HW: hw, Eps: 1e-5, Momentum: 0.1, ReLU: relu, ReLUMax: act.max}
				n := p.N * p.C * p.HW
				x := randn(r, n)
				for i := range x {
					x[i] = 3*x[i] + 100 // a large mean tests the variance's cancellation
				}
				gamma, beta := randn(r, p.C), randn(r, p.C)
				y, mean, invStd := make([]float32, n), make([]float32, p.C), make([]float32, p.C)
				runMean, runVar := randn(r, p.C), randn(r, p.C)
				rm0, rv0 := f64(runMean), f64(runVar)
				BatchNormTrain(p, x, gamma, beta, y, mean, invStd, runMean, runVar)
				wy, wm, wv := refBN(p, x, gamma, beta)
				closeTo(t, "y", y, wy, 2e-5)
				closeTo(t, "mean", mean, wm, 1e-6)
				M := float64(p.N * p.HW)
				wis, wrm, wrv := make([]float64, p.C), make([]float64, p.C), make([]float64, p.C)
				for c := range p.C {
					wis[c] = 1 / math.Sqrt(wv[c]+1e-5)
					wrm[c] = 0.9*rm0[c] + 0.1*wm[c]
					wrv[c] = 0.9*rv0[c] + 0.1*wv[c]*M/(M-1)
				}
				closeTo(t, "invStd", invStd, wis, 1e-5)
				closeTo(t, "runMean", runMean, wrm, 1e-6)
				closeTo(t, "runVar", runVar, wrv, 1e-5)

				// Inference with the batch statistics as running ones
				// reproduces the training output.
				for c := range p.C {
					runMean[c], runVar[c] = float32(wm[c]), float32(wv[c])
				}
				BatchNormInfer(p, x, gamma, beta, runMean, runVar, y)
				closeTo(t, "infer", y, wy, 2e-5)
				BatchNormInfer(p, x, gamma, nil, runMean, runVar, y)
				for i := range wy {
					c := i / p.HW % p.C
					wy[i] = (float64(x[i]) - wm[c]) * wis[c] * float64(gamma[c])
					if relu {
						wy[i] = math.Max(wy[i], 0)
					}
					if relu && act.max > 0 {
						wy[i] = math.Min(wy[i], float64(act.max))
					}
				}
				closeTo(t, "infer/nobeta", y, wy, 2e-5)
			}
		}
	})
}

func TestGemmForward(t *testing.T) {
	forVariants(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 5))
		for _, d := range [][3]int{{6, 5, 7}, {3, 9, 4}} {
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					s := GemmShape{M: d[0], N: d[1], K: d[2], TransA: ta, TransB: tb}
					a, b, bias := randn(r, s.M*s.K), randn(r, s.K*s.N), randn(r, s.N)
					y := make([]float32, s.M*s.N)
					Gemm(s, a, b, bias, y)
					closeTo(t, "gemm", y, refGemm(s, a, b, bias), 1e-5)
					Gemm(s, a, b, nil, y)
					closeTo(t, "gemm/nobias", y, refGemm(s, a, b, nil), 1e-5)
				}
			}
		}
	})
}

func TestSoftmax(t *testing.T) {
	forVariants(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(6, 6))
		const rows, cols = 5, 10
		x := randn(r, rows*cols)
		x[3] = 80 // large logits must not overflow
		y := make([]float32, rows*cols)
		Softmax(rows, cols, x, y)
		labels := []int{0, 9, 3, 3, 7}
		dx := make([]float32, rows*cols)
		loss := SoftmaxCrossEntropy(rows, cols, x, labels, dx)
		want, wantY, wantD := 0.0, make([]float64, rows*cols), make([]float64, rows*cols)
		for i := range rows {
			m := math.Inf(-1)
			for j := range cols {
				m = math.Max(m, float64(x[i*cols+j]))
			}
			var s float64
			for j := range cols {
				s += math.Exp(float64(x[i*cols+j]) - m)
			}
			for j := range cols {
				wantY[i*cols+j] = math.Exp(float64(x[i*cols+j])-m) / s
				wantD[i*cols+j] = wantY[i*cols+j] / rows
			}
			wantD[i*cols+labels[i]] -= 1.0 / rows
			want += (m + math.Log(s) - float64(x[i*cols+labels[i]])) / rows
		}
		closeTo(t, "softmax", y, wantY, 1e-6)
		closeTo(t, "dlogits", dx, wantD, 1e-6)
		if math.Abs(loss-want) > 1e-9*(1+want) {
			t.Errorf("loss %v, want %v", loss, want)
		}
		if l := SoftmaxCrossEntropy(rows, cols, make([]float32, rows*cols), labels, nil); math.Abs(l-math.Log(cols)) > 1e-12 {
			t.Errorf("uniform logits: loss %v, want log %d", l, cols)
		}
		mustPanic(t, "label out of range", func() { SoftmaxCrossEntropy(rows, cols, x, []int{0, 1, 2, 3, 10}, nil) })
	})
}

// TestActivations checks the elementwise kernels at chosen points,
// including exactly at their kinks.
func TestActivations(t *testing.T) {
	x := []float32{-7, -3, -1, -0.5, 0, 0.25, 1, 2.5, 3, 6, 8}
	x = append(x, x...) // 22: past one 16-element vector loop
	type fn struct {
		name       string
		f          func(x, y []float32)
		b          func(x, dy, dx []float32)
		ref, dref  func(v float64) float64
		gradFromFy bool
	}
	step := func(c bool, v float64) float64 {
		if c {
			return v
		}
		return 0
	}
	fns := []fn{
		{"ReLU", ReLU, ReLUBackward,
			func(v float64) float64 { return math.Max(v, 0) },
			func(v float64) float64 { return step(v > 0, 1) }, false},
		{"ReLU6", func(x, y []float32) { Clip(x, y, 0, 6) }, func(x, dy, dx []float32) { ClipBackward(x, dy, dx, 0, 6) },
			func(v float64) float64 { return math.Min(math.Max(v, 0), 6) },
			func(v float64) float64 { return step(v > 0 && v < 6, 1) }, false},
		{"LeakyReLU", func(x, y []float32) { LeakyReLU(x, y, 0.01) }, func(x, dy, dx []float32) { LeakyReLUBackward(x, dy, dx, 0.01) },
			func(v float64) float64 { return step(v >= 0, v) + step(v < 0, 0.01*v) },
			func(v float64) float64 { return step(v > 0, 1) + step(v <= 0, 0.01) }, false},
		{"Sigmoid", Sigmoid, SigmoidBackward,
			func(v float64) float64 { return 1 / (1 + math.Exp(-v)) },
			func(v float64) float64 { return v * (1 - v) }, true},
		{"HardSigmoid", func(x, y []float32) { HardSigmoid(x, y, 0.2, 0.5) }, func(x, dy, dx []float32) { HardSigmoidBackward(x, dy, dx, 0.2, 0.5) },
			func(v float64) float64 { return math.Min(math.Max(0.2*v+0.5, 0), 1) },
			func(v float64) float64 { return step(v > -2.5 && v < 2.5, 0.2) }, false},
		{"HardSwish", HardSwish, HardSwishBackward,
			func(v float64) float64 { return v * math.Min(math.Max(v/6+0.5, 0), 1) },
			func(v float64) float64 { return step(v >= -3 && v <= 3, v/3+0.5) + step(v > 3, 1) }, false},
	}
	for _, f := range fns {
		y, dx := make([]float32, len(x)), make([]float32, len(x))
		f.f(x, y)
		want, wantD := make([]float64, len(x)), make([]float64, len(x))
		for i, v := range x {
			want[i] = f.ref(float64(v))
			if f.gradFromFy {
				wantD[i] = 2 * f.dref(float64(y[i]))
			} else {
				wantD[i] = 2 * f.dref(float64(v))
			}
		}
		closeTo(t, f.name, y, want, 1e-6)
		in := x
		if f.gradFromFy {
			in = y
		}
		dy := make([]float32, len(x))
		for i := range dy {
			dy[i] = 2
		}
		f.b(in, dy, dx)
		closeTo(t, f.name+"Backward", dx, wantD, 1e-6)
		// In place.
		z := append([]float32(nil), x...)
		f.f(z, z)
		closeTo(t, f.name+"/inplace", z, want, 1e-6)
	}
	mustPanic(t, "mismatched lengths", func() { ReLU(x, make([]float32, 3)) })
}

// TestParallelElementwise runs an elementwise kernel over more than one
// chunk with forced parallelism.
func TestParallelElementwise(t *testing.T) {
	forVariants(t, func(t *testing.T) {
		x := randn(rand.New(rand.NewPCG(9, 9)), 3*elemChunk+5)
		y := make([]float32, len(x))
		ReLU(x, y)
		for i, v := range x {
			if y[i] != max(v, 0) {
				t.Fatalf("y[%d] = %v for x = %v", i, y[i], v)
			}
		}
	})
}

// TestConvReLU checks Conv2DReLU and Conv2DBackwardReLU, which apply the
// activation to each chunk of the output and mask the output gradient
// plane by plane, against Conv2D followed by ReLU or Clip to [0, 6] and
// the unfused backward (ReLUBackward or ClipBackward on the convolution's
// output, then Conv2DBackward), on every path: equal outputs and input
// and weight gradients, and the bias gradient to rounding.
func TestConvReLU(t *testing.T) {
	forVariants(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 3))
		cases := append(convCases[:len(convCases):len(convCases)],
			ConvShape{N: 3, C: 3, H: 9, W: 8, OC: 5, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1},
			ConvShape{N: 5, C: 8, H: 11, W: 20, OC: 6, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
			ConvShape{N: 4, C: 6, H: 9, W: 19, OC: 8, KH: 1, KW: 1})
		for _, s := range cases {
			x, w, b := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.OC)
			for _, hi := range []float32{float32(math.Inf(1)), 6} {
				for i := range b {
					b[i] *= 2
				}
				scratch := make([]float32, s.ScratchLen())
				pre, want, got := make([]float32, s.YLen()), make([]float32, s.YLen()), make([]float32, s.YLen())
				Conv2D(s, x, w, b, pre, scratch)
				Clip(pre, want, 0, hi)
				Conv2DReLU(s, x, w, b, got, scratch, hi)
				name := fmt.Sprintf("%v/hi=%g", s, hi)
				closeTo(t, name+"/y", got, f64(want), 0)

				dy := randn(r, s.YLen())
				g := make([]float32, s.YLen())
				if hi > 6 {
					ReLUBackward(pre, dy, g)
				} else {
					ClipBackward(pre, dy, g, 0, hi)
				}
				dx, dw, db := make([]float32, s.XLen()), make([]float32, s.WLen()), make([]float32, s.OC)
				Conv2DBackward(s, x, w, g, dx, dw, db, scratch)
				dx2, dw2, db2 := make([]float32, s.XLen()), make([]float32, s.WLen()), make([]float32, s.OC)
				Conv2DBackwardReLU(s, x, w, got, dy, dx2, dw2, db2, scratch, hi)
				closeTo(t, name+"/masked dy", dy, f64(g), 0)
				closeTo(t, name+"/dx", dx2, f64(dx), 0)
				closeTo(t, name+"/dw", dw2, f64(dw), 0)
				closeTo(t, name+"/db", db2, f64(db), 1e-6)
			}
		}
	})
}

// TestAddMapped checks that AddMapped, with either input or both read through the map
// BatchNormTrainDeferred leaves (with and without the BatchNormalization's ReLU), gives
// the bits of Add and AddReLU on the BatchNormalizations' stored outputs, on planes shorter
// and longer than a vector.
func TestAddMapped(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, hw := range []int{7, 49, 196} {
		const n, c = 3, 5
		p := BNParams{N: n, C: c, HW: hw, Eps: 1e-5, Momentum: 0.1}
		bn := func(relu bool) (raw, stored []float32, m *InputMap) {
			q := p
			q.ReLU = relu
			raw, gamma, beta := randn(r, n*c*hw), randn(r, c), randn(r, c)
			stored = make([]float32, len(raw))
			mean, is := make([]float32, c), make([]float32, c)
			BatchNormTrain(q, raw, gamma, beta, stored, mean, is, nil, nil)
			m = &InputMap{A: make([]float32, c), B: make([]float32, c)}
			BatchNormTrainDeferred(q, nil, raw, gamma, beta, mean, is, nil, nil, m)
			return raw, stored, m
		}
		ra, sa, ma := bn(false)
		rb, sb, mb := bn(true)
		want := make([]float32, len(ra))
		for _, c := range []struct {
			name             string
			a, b             []float32
			ma, mb           *InputMap
			storedA, storedB []float32
		}{
			{"a mapped", ra, sb, ma, nil, sa, sb},
			{"b mapped", sa, rb, nil, mb, sa, sb},
			{"both mapped", ra, rb, ma, mb, sa, sb},
		} {
			for _, relu := range []bool{true, false} {
				if relu {
					AddReLU(c.storedA, c.storedB, want)
				} else {
					Add(c.storedA, c.storedB, want)
				}
				got := make([]float32, len(ra))
				AddMapped(c.a, c.ma, c.b, c.mb, got, 5, hw, relu)
				closeTo(t, fmt.Sprintf("hw=%d %s relu=%v", hw, c.name, relu), got, f64(want), 0)
			}
		}
	}
}

// TestMaxPoolWinners checks that max pooling gives, bit for bit, what
// scanning each window on its own gives (the first maximum in row-major
// order, the first NaN as soon as one is met, -0 and +0 told apart),
// forward and backward, with and without the AVX-512 windows, on windows
// inside the input and clipped by it, with ties, NaNs of both signs and
// signed zeros in the input.
func TestMaxPoolWinners(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	nan := math.Float32frombits(0x7fc00000)
	negNaN := math.Float32frombits(0xffc00001)
	negZero := float32(math.Copysign(0, -1))
	for _, p := range []PoolShape{
		{N: 2, C: 3, H: 16, W: 112, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1}, // torchvision's stem
		{N: 1, C: 2, H: 9, W: 67, KH: 3, KW: 3, SH: 2, SW: 2},                               // odd, no pads
		{N: 1, C: 2, H: 7, W: 70, KH: 3, KW: 3, SH: 2, SW: 2, PT: 2, PL: 2, PB: 2, PR: 2},
		{N: 1, C: 2, H: 5, W: 34, KH: 3, KW: 3, SH: 2, SW: 2, PL: 1}, // one group at most
		{N: 1, C: 2, H: 8, W: 9, KH: 2, KW: 2, SH: 2, SW: 2},
		{N: 1, C: 2, H: 7, W: 6, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 1, C: 1, H: 2, W: 3, KH: 3, KW: 3, PT: 2, PL: 1, PB: 2, PR: 2}, // no window inside
		{N: 1, C: 2, H: 9, W: 11, KH: 2, KW: 3, SH: 3, SW: 2, PT: 1, PR: 2},
	} {
		x := make([]float32, p.XLen())
		for i := range x {
			switch k := r.IntN(40); {
			case k == 0:
				x[i] = nan
			case k == 1:
				x[i] = negNaN
			case k < 5:
				x[i] = negZero
			case k < 9:
				x[i] = 0
			case k == 9:
				x[i] = float32(math.Inf(-1))
			default:
				x[i] = float32(r.IntN(5) - 2) // many ties
			}
		}
		dy := randn(r, p.YLen())
		q := p.norm()
		OH, OW, HW := q.OH(), q.OW(), q.H*q.W
		wantY, wantDx := make([]float32, p.YLen()), make([]float32, p.XLen())
		for c := range q.N * q.C {
			xp := x[c*HW : (c+1)*HW]
			for oh := range OH {
				for ow := range OW {
					i := q.argmax(xp, oh, ow)
					wantY[(c*OH+oh)*OW+ow] = xp[i]
					wantDx[c*HW+i] += dy[(c*OH+oh)*OW+ow]
				}
			}
		}
		for _, fast := range []bool{false, true} {
			old := useMaxPool16
			useMaxPool16 = fast
			y, dx := make([]float32, p.YLen()), make([]float32, p.XLen())
			MaxPool2D(p, x, y)
			MaxPool2DBackward(p, x, dy, dx)
			useMaxPool16 = old
			for i := range y {
				if math.Float32bits(y[i]) != math.Float32bits(wantY[i]) {
					t.Fatalf("%+v fast=%v: y[%d] = %v, want %v", p, fast, i, y[i], wantY[i])
				}
			}
			for i := range dx {
				if math.Float32bits(dx[i]) != math.Float32bits(wantDx[i]) {
					t.Fatalf("%+v fast=%v: dx[%d] = %v, want %v", p, fast, i, dx[i], wantDx[i])
				}
			}
		}
	}
}
