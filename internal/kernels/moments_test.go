package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestConvMomentsFeedBatchNorm checks that BatchNorm fed the moments
// Conv2DMoments gathered gives what it computes from the data itself, on
// every convolution path, including outputs with a mean far larger than
// their spread.
func TestConvMomentsFeedBatchNorm(t *testing.T) {
	shapes := []ConvShape{
		{N: 5, C: 3, H: 9, W: 8, OC: 6, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},                // direct, stride 1
		{N: 4, C: 4, H: 10, W: 7, OC: 5, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1}, // direct, stride 2
		{N: 3, C: 4, H: 6, W: 6, OC: 8, KH: 1, KW: 1, SH: 2, SW: 2},                              // direct, pointwise
		{N: 3, C: 4, H: 7, W: 6, OC: 5, KH: 3, KW: 2, SW: 2, PT: 1, PB: 1},                       // im2col
		{N: 3, C: 4, H: 6, W: 5, OC: 4, KH: 3, KW: 3, Groups: 4, PT: 1, PL: 1, PB: 1, PR: 1},     // depthwise
		{N: 3, C: 3, H: 9, W: 7, OC: 3, KH: 5, KW: 5, SH: 2, SW: 2, Groups: 3, PT: 2, PL: 2, PB: 2, PR: 2},
		{N: 3, C: 4, H: 6, W: 5, OC: 8, KH: 3, KW: 3, Groups: 4, PT: 1, PL: 1, PB: 1, PR: 1}, // depthwise, portable
	}
	r := rand.New(rand.NewPCG(7, 7))
	for _, s := range shapes {
		for _, offset := range []float32{0, 1000} {
			t.Run(fmt.Sprintf("%s/bias=%g", s, offset), func(t *testing.T) {
				x, w := randn(r, s.XLen()), randn(r, s.WLen())
				b := make([]float32, s.OC)
				for i := range b {
					b[i] = offset
				}
				y := make([]float32, s.YLen())
				scratch := make([]float32, s.ScratchLen())
				m := NewMoments(s.N, s.OC)
				Conv2DMoments(s, x, w, b, y, scratch, m)
				if !m.Valid {
					t.Fatal("Conv2DMoments left the moments invalid")
				}
				p := BNParams{N: s.N, C: s.OC, HW: s.OH() * s.OW(), Eps: 1e-5, Momentum: 0.1, ReLU: true}
				gamma, beta := randn(r, s.OC), randn(r, s.OC)
				z1 := make([]float32, len(y))
				z2 := make([]float32, len(y))
				mean1, is1, rm1, rv1 := make([]float32, s.OC), make([]float32, s.OC), make([]float32, s.OC), make([]float32, s.OC)
				mean2, is2, rm2, rv2 := make([]float32, s.OC), make([]float32, s.OC), make([]float32, s.OC), make([]float32, s.OC)
				BatchNormTrainMoments(p, m, y, gamma, beta, z1, mean1, is1, rm1, rv1)
				if m.Valid {
					t.Fatal("BatchNormTrainMoments left the moments valid")
				}
				BatchNormTrain(p, y, gamma, beta, z2, mean2, is2, rm2, rv2)
				closeTo(t, "mean", mean1, f64(mean2), 1e-6)
				closeTo(t, "invStd", is1, f64(is2), 1e-4)
				closeTo(t, "runVar", rv1, f64(rv2), 1e-4)
				closeTo(t, "y", z1, f64(z2), 1e-3)
			})
		}
	}
}

// TestConvBackwardBN checks that a convolution's backward pass reading the
// gradient of the BatchNorm it feeds plane by plane (Conv2DBackwardBN)
// gives what the stored gradient gives, on the direct paths (depthwise
// included), with and without a fused ReLU.
func TestConvBackwardBN(t *testing.T) {
	if !haveConv3x3 {
		t.Skip("no direct convolution path in this build or on this CPU")
	}
	shapes := []ConvShape{
		{N: 5, C: 3, H: 9, W: 8, OC: 6, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 4, C: 4, H: 10, W: 7, OC: 5, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 3, C: 5, H: 9, W: 7, OC: 6, KH: 1, KW: 1, SH: 2, SW: 2},
		{N: 3, C: 5, H: 4, W: 6, OC: 7, KH: 1, KW: 1},
		{N: 3, C: 4, H: 9, W: 8, OC: 4, KH: 3, KW: 3, Groups: 4, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 4, C: 3, H: 10, W: 7, OC: 3, KH: 3, KW: 3, SH: 2, SW: 2, Groups: 3, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 2, C: 3, H: 7, W: 9, OC: 3, KH: 5, KW: 5, SH: 2, SW: 2, Groups: 3, PT: 2, PL: 2, PB: 2, PR: 2},
	}
	r := rand.New(rand.NewPCG(8, 8))
	for _, s := range shapes {
		for _, act := range []struct {
			relu bool
			max  float32
		}{{false, 0}, {true, 0}, {true, 0.5}} {
			relu := act.relu
			t.Run(fmt.Sprintf("%s/relu=%v,max=%g", s, relu, act.max), func(t *testing.T) {
				if !s.Direct() {
					t.Fatal("shape not Direct")
				}
				x, w, dz := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.YLen())
				y := make([]float32, s.YLen())
				scratch := make([]float32, s.ScratchLen())
				Conv2D(s, x, w, nil, y, scratch)
				p := BNParams{N: s.N, C: s.OC, HW: s.OH() * s.OW(), Eps: 1e-5, Momentum: 0.1, ReLU: relu, ReLUMax: act.max}
				gamma, beta := randn(r, s.OC), randn(r, s.OC)
				z, mean, invStd := make([]float32, len(y)), make([]float32, s.OC), make([]float32, s.OC)
				BatchNormTrain(p, y, gamma, beta, z, mean, invStd, nil, nil)

				dy, dg, db := make([]float32, len(y)), make([]float32, s.OC), make([]float32, s.OC)
				BatchNormBackward(p, y, dz, gamma, beta, mean, invStd, dy, dg, db)
				dx, dw := make([]float32, s.XLen()), make([]float32, s.WLen())
				Conv2DBackward(s, x, w, dy, dx, dw, nil, scratch)

				g := NewBNInputGrad(s.OC)
				dg2, db2 := make([]float32, s.OC), make([]float32, s.OC)
				BatchNormBackwardTo(p, y, dz, gamma, beta, mean, invStd, g, dg2, db2)
				dx2, dw2 := make([]float32, s.XLen()), make([]float32, s.WLen())
				Conv2DBackwardBN(s, x, w, g, dx2, dw2, scratch)
				closeTo(t, "dgamma", dg2, f64(dg), 0)
				closeTo(t, "dbeta", db2, f64(db), 0)
				closeTo(t, "dx", dx2, f64(dx), 0)
				closeTo(t, "dw", dw2, f64(dw), 0)
			})
		}
	}
}
