package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// variant is one setting of the package's tuning knobs; every correctness
// test runs under each so the serial, parallel and chunked paths are all
// exercised on small shapes.
type variant struct {
	name    string
	grain   int  // parGrain
	minCols int  // convMinCols
	split   bool // splitByCaller: batch workers and split GEMMs
	col2im  bool // stride-1 input gradients through col2im too
}

var variants = []variant{
	{name: "default", grain: parGrain, minCols: convMinCols},
	{name: "parallel/chunk1", grain: 0, minCols: 1},
	{name: "parallel/chunk20", grain: 0, minCols: 20},
	{name: "batch/chunk1", grain: 0, minCols: 1, split: true},
	{name: "batch/chunk20", grain: 0, minCols: 20, split: true},
	{name: "col2im", grain: 0, minCols: 20, col2im: true},
}

func forVariants(t *testing.T, f func(t *testing.T)) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			oldG, oldC, oldS, oldD := parGrain, convMinCols, splitByCaller, convDxConv
			parGrain, convMinCols, convDxConv = v.grain, v.minCols, !v.col2im
			if v.split {
				splitByCaller = func() bool { return true }
			}
			defer func() { parGrain, convMinCols, splitByCaller, convDxConv = oldG, oldC, oldS, oldD }()
			f(t)
		})
	}
}

// convBothWays runs Conv2D and Conv2DBackward (all gradients) on one of our
// direct paths (direct) or on im2col and the portable loops, on a scratch
// full of stale values, failing t if the path taken is not the one asked
// for.
func convBothWays(t *testing.T, s ConvShape, direct bool, x, w, b, dy []float32) (y, dx, dw, db []float32) {
	t.Helper()
	old := useConv3x3
	useConv3x3 = direct
	defer func() { useConv3x3 = old }()
	if pl := s.plan(); (pl.path() != viaBLAS) != direct {
		t.Fatalf("direct path taken: %v, with useConv3x3 = %v", !direct, direct)
	}
	scratch := make([]float32, s.ScratchLen())
	for i := range scratch {
		scratch[i] = float32(i) // stale data must not leak into results
		if i%7 == 0 {
			scratch[i] = float32(math.NaN()) // nor stale NaNs (0·NaN is NaN)
		}
	}
	y = make([]float32, s.YLen())
	dx, dw, db = make([]float32, s.XLen()), make([]float32, s.WLen()), make([]float32, s.OC)
	Conv2D(s, x, w, b, y, scratch)
	Conv2DBackward(s, x, w, dy, dx, dw, db, scratch)
	return y, dx, dw, db
}

func randn(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// awayFrom redraws every value of s closer than gap to a kink.
func awayFrom(r *rand.Rand, s []float32, scale float32, gap float32, kinks ...float32) {
	for i := range s {
	redraw:
		for _, k := range kinks {
			if abs32(s[i]-k) < gap {
				s[i] = scale * float32(r.NormFloat64())
				goto redraw
			}
		}
	}
}

func abs32(v float32) float32 { return float32(math.Abs(float64(v))) }

// distinct returns n values spaced 0.05 apart in random order, so that no
// perturbation of a finite-difference step reorders them.
func distinct(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i, p := range r.Perm(n) {
		s[i] = float32(p-n/2) * 0.05
	}
	return s
}

// closeTo fails t when got and want differ by more than tol·(1+|want|)
// anywhere.
func closeTo(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: len %d, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol*(1+math.Abs(want[i]))) {
			t.Fatalf("%s[%d] = %v, want %v (diff %.3g)", what, i, got[i], want[i], d)
		}
	}
}

func f64(s []float32) []float64 {
	d := make([]float64, len(s))
	for i, v := range s {
		d[i] = float64(v)
	}
	return d
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func (s ConvShape) String() string {
	s = s.norm()
	return fmt.Sprintf("n%dc%d_%dx%d_oc%d_k%dx%d_s%dx%d_p%d%d%d%d_d%dx%d_g%d",
		s.N, s.C, s.H, s.W, s.OC, s.KH, s.KW, s.SH, s.SW, s.PT, s.PL, s.PB, s.PR, s.DH, s.DW, s.Groups)
}

// Reference implementations: plain loops in float64.

func refConv(s ConvShape, x, w, b []float32) []float64 {
	s = s.norm()
	OH, OW := s.OH(), s.OW()
	cg, ocg := s.C/s.Groups, s.OC/s.Groups
	y := make([]float64, s.YLen())
	for n := range s.N {
		for oc := range s.OC {
			g := oc / ocg
			for oh := range OH {
				for ow := range OW {
					var acc float64
					if b != nil {
						acc = float64(b[oc])
					}
					for ic := range cg {
						c := g*cg + ic
						for kh := range s.KH {
							for kw := range s.KW {
								ih := oh*s.SH - s.PT + kh*s.DH
								iw := ow*s.SW - s.PL + kw*s.DW
								if ih < 0 || ih >= s.H || iw < 0 || iw >= s.W {
									continue
								}
								acc += float64(x[((n*s.C+c)*s.H+ih)*s.W+iw]) *
									float64(w[((oc*cg+ic)*s.KH+kh)*s.KW+kw])
							}
						}
					}
					y[((n*s.OC+oc)*OH+oh)*OW+ow] = acc
				}
			}
		}
	}
	return y
}

func refPool(p PoolShape, x []float32, isMax bool) []float64 {
	p = p.norm()
	OH, OW := p.OH(), p.OW()
	y := make([]float64, p.YLen())
	for t := range p.N * p.C {
		for oh := range OH {
			for ow := range OW {
				m, s, cnt := math.Inf(-1), 0.0, 0
				for kh := range p.KH {
					for kw := range p.KW {
						ih, iw := oh*p.SH-p.PT+kh, ow*p.SW-p.PL+kw
						if ih < 0 || ih >= p.H || iw < 0 || iw >= p.W {
							continue
						}
						v := float64(x[(t*p.H+ih)*p.W+iw])
						m = math.Max(m, v)
						s += v
						cnt++
					}
				}
				out := m
				if !isMax {
					if p.CountIncludePad {
						cnt = p.KH * p.KW
					}
					out = s / float64(cnt)
				}
				y[(t*OH+oh)*OW+ow] = out
			}
		}
	}
	return y
}

// refBN returns the batch-normalized x (training statistics) and the
// biased variance per channel.
func refBN(p BNParams, x, gamma, beta []float32) (y, mean, variance []float64) {
	y = make([]float64, len(x))
	mean, variance = make([]float64, p.C), make([]float64, p.C)
	M := float64(p.N * p.HW)
	for c := range p.C {
		var s float64
		for n := range p.N {
			for i := range p.HW {
				s += float64(x[(n*p.C+c)*p.HW+i])
			}
		}
		mu := s / M
		var v float64
		for n := range p.N {
			for i := range p.HW {
				d := float64(x[(n*p.C+c)*p.HW+i]) - mu
				v += d * d
			}
		}
		v /= M
		mean[c], variance[c] = mu, v
		for n := range p.N {
			for i := range p.HW {
				o := (n*p.C+c)*p.HW + i
				z := (float64(x[o])-mu)/math.Sqrt(v+float64(p.Eps))*float64(gamma[c]) + float64(beta[c])
				if p.ReLU {
					z = math.Max(z, 0)
				}
				if p.ReLU && p.ReLUMax > 0 {
					z = math.Min(z, float64(p.ReLUMax))
				}
				y[o] = z
			}
		}
	}
	return y, mean, variance
}

func refGemm(s GemmShape, a, b, bias []float32) []float64 {
	y := make([]float64, s.M*s.N)
	for i := range s.M {
		for j := range s.N {
			var acc float64
			if bias != nil {
				acc = float64(bias[j])
			}
			for k := range s.K {
				av := a[i*s.K+k]
				if s.TransA {
					av = a[k*s.M+i]
				}
				bv := b[k*s.N+j]
				if s.TransB {
					bv = b[j*s.K+k]
				}
				acc += float64(av) * float64(bv)
			}
			y[i*s.N+j] = acc
		}
	}
	return y
}
