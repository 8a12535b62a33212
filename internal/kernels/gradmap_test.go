package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestConvMapsInputGradient checks ConvShape.DxMap on every path that reads its input
// through a map: the input gradient the backward pass writes (or adds) through the map
// and the per-plane sums it records have the bits of computing the convolution's own input
// gradient, then the op's backward plane by plane on the op's input (the BatchNormalization's
// output, or the stored input when there is none), and the weight gradient is unchanged; with
// chunks of many samples and of one.
func TestConvMapsInputGradient(t *testing.T) {
	if !haveConv3x3 {
		t.Skip("no AVX-512 micro-kernels in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(12, 12))
	// A straight-through estimator clipped to (0, 0.8), and the gradient of the clip.
	grad := func(x, dy, dx []float32) float64 {
		var s float32
		for i, v := range x {
			g := dy[i]
			if v >= 0.8 {
				s += g
			}
			if v <= 0 || v >= 0.8 {
				g = 0
			}
			dx[i] = g
		}
		return float64(s)
	}
	grid := func(x, y []float32) {
		for i, v := range x {
			y[i] = float32(math.Round(float64(min(max(v, 0), 0.8))*4)) / 4
		}
	}
	for _, l2 := range []int{conv3x3L2, 1} {
		for _, s := range []ConvShape{
			{N: 5, C: 6, H: 9, W: 8, OC: 7, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
			{N: 3, C: 16, H: 14, W: 14, OC: 16, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
			{N: 5, C: 6, H: 9, W: 7, OC: 10, KH: 1, KW: 1},
			{N: 3, C: 5, H: 9, W: 11, OC: 7, KH: 1, KW: 1, SH: 2, SW: 2},
			{N: 4, C: 6, H: 9, W: 8, OC: 6, KH: 3, KW: 3, Groups: 6, PT: 1, PL: 1, PB: 1, PR: 1},
			{N: 3, C: 5, H: 14, W: 13, OC: 5, KH: 3, KW: 3, SH: 2, SW: 2, Groups: 5, PT: 1, PL: 1, PB: 1, PR: 1},
		} {
			restore := setChunking(l2)
			p := BNParams{N: s.N, C: s.C, HW: s.H * s.W, Eps: 1e-5, Momentum: 0.1, ReLU: true}
			raw, gamma, beta := randn(r, s.XLen()), randn(r, s.C), randn(r, s.C)
			w, dy := randn(r, s.WLen()), randn(r, s.YLen())
			stored := make([]float32, s.XLen())
			BatchNormTrain(p, raw, gamma, beta, stored, make([]float32, s.C), make([]float32, s.C), nil, nil)
			aff := &InputMap{A: make([]float32, s.C), B: make([]float32, s.C), ReLU: true, Then: grid}
			mean, is := make([]float32, s.C), make([]float32, s.C)
			BatchNormTrainDeferred(p, nil, raw, gamma, beta, mean, is, nil, nil, aff)
			// bnSame checks that the BatchNormalization's backward from the lanes recorded
			// as its output gradient g was written has the bits of its own.
			bnSame := func(what string, lanes []float32, g []float32) {
				want := [3][]float32{make([]float32, s.XLen()), make([]float32, s.C), make([]float32, s.C)}
				BatchNormBackward(p, raw, g, gamma, beta, mean, is, want[0], want[1], want[2])
				got := [3][]float32{make([]float32, s.XLen()), make([]float32, s.C), make([]float32, s.C)}
				BatchNormBackwardLanes(p, lanes, raw, g, gamma, beta, mean, is, nil, got[0], got[1], got[2])
				for i, name := range []string{"dx", "dgamma", "dbeta"} {
					closeTo(t, what+" BatchNorm "+name, got[i], f64(want[i]), 0)
				}
			}
			for _, bn := range []bool{true, false} {
				in, src := &InputMap{Then: grid}, raw // the op's input: raw itself
				if bn {
					in, src = aff, stored // the op's input: the BatchNormalization's output
				}
				sa := s
				sa.In = in
				scratch := make([]float32, s.ScratchLen())
				// The convolution's own input gradient, then the op's backward.
				own, dw := make([]float32, s.XLen()), make([]float32, s.WLen())
				Conv2DBackward(sa, raw, w, dy, own, dw, nil, scratch)
				want, sums := make([]float32, s.XLen()), make([]float64, s.N*s.C)
				hw := s.H * s.W
				for k := range sums {
					sums[k] = grad(src[k*hw:(k+1)*hw], own[k*hw:(k+1)*hw], want[k*hw:(k+1)*hw])
				}
				prev := randn(r, s.XLen())
				for _, add := range []bool{false, true} {
					what := fmt.Sprintf("%s bn=%v add=%v l2=%d", s, bn, add, l2)
					gm := &GradMap{Grad: grad, Sums: make([]float64, s.N*s.C), Add: add}
					if bn && !add {
						gm.BN = &BNLanes{P: p, Mean: mean, A: aff.A, B: aff.B, Lanes: make([]float32, 32*s.N*s.C)}
					}
					sb := sa
					sb.DxMap = gm
					got, dw2 := make([]float32, s.XLen()), make([]float32, s.WLen())
					exp := want
					if add {
						copy(got, prev)
						exp = slices.Clone(prev)
						AddTo(exp, want)
					}
					Conv2DBackward(sb, raw, w, dy, got, dw2, nil, scratch)
					closeTo(t, what+" dx", got, f64(exp), 0)
					closeTo(t, what+" dw", dw2, f64(dw), 0)
					if !slices.Equal(gm.Sums, sums) {
						t.Errorf("%s: sums %v, want %v", what, gm.Sums[:4], sums[:4])
					}
					if gm.BN != nil {
						bnSame(what, gm.BN.Lanes, got)
					}
				}
			}
			// The BatchNormalization read by the convolution directly: dx is the
			// convolution's own input gradient, and the lanes are recorded from it.
			sa := s
			sa.In = &InputMap{A: aff.A, B: aff.B, ReLU: true}
			scratch := make([]float32, s.ScratchLen())
			own, dw := make([]float32, s.XLen()), make([]float32, s.WLen())
			Conv2DBackward(sa, raw, w, dy, own, dw, nil, scratch)
			gm := &GradMap{BN: &BNLanes{P: p, Mean: mean, A: aff.A, B: aff.B, Lanes: make([]float32, 32*s.N*s.C)}}
			sa.DxMap = gm
			got, dw2 := make([]float32, s.XLen()), make([]float32, s.WLen())
			Conv2DBackward(sa, raw, w, dy, got, dw2, nil, scratch)
			what := fmt.Sprintf("%s BatchNorm only l2=%d", s, l2)
			closeTo(t, what+" dx", got, f64(own), 0)
			closeTo(t, what+" dw", dw2, f64(dw), 0)
			bnSame(what, gm.BN.Lanes, got)
			restore()
		}
	}
	s := ConvShape{N: 2, C: 4, H: 8, W: 8, OC: 4, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1,
		DxMap: &GradMap{Grad: grad, Sums: make([]float64, 8)}}
	defer func() {
		if recover() == nil {
			t.Error("a stride-2 3×3 convolution accepted an input-gradient map")
		}
	}()
	Conv2DBackward(s, make([]float32, s.XLen()), make([]float32, s.WLen()), make([]float32, s.YLen()),
		make([]float32, s.XLen()), nil, nil, make([]float32, s.ScratchLen()))
}
