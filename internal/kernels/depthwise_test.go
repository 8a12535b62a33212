package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestDepthwiseMatchesPortable checks the direct depthwise path against the
// portable loops (themselves checked against the reference convolution and
// finite differences) for every kernel size and stride it has, on planes
// from 1×1 to wider than a vector row, odd and even sizes, chunks of one
// sample and of many, with and without bias; and that the shapes it does
// not cover (even kernels, asymmetric pads, dilations, multipliers, 7×7 at
// stride 2) stay on the portable loops.
func TestDepthwiseMatchesPortable(t *testing.T) {
	if !haveConv3x3 {
		t.Skip("no AVX-512 micro-kernels in this build or on this CPU")
	}
	dw := func(n, c, h, w, k, s int) ConvShape {
		p := k / 2
		return ConvShape{N: n, C: c, H: h, W: w, OC: c, KH: k, KW: k, SH: s, SW: s, Groups: c, PT: p, PL: p, PB: p, PR: p}
	}
	shapes := []ConvShape{
		dw(1, 2, 1, 1, 3, 1), dw(2, 3, 7, 7, 3, 1), dw(3, 5, 14, 15, 3, 1), dw(2, 4, 28, 29, 3, 1), dw(1, 2, 40, 3, 3, 1),
		dw(1, 2, 1, 1, 3, 2), dw(2, 3, 7, 8, 3, 2), dw(3, 4, 14, 14, 3, 2), dw(2, 2, 29, 31, 3, 2), dw(1, 3, 2, 5, 3, 2),
		dw(1, 2, 1, 2, 5, 1), dw(2, 3, 7, 7, 5, 1), dw(3, 2, 14, 17, 5, 1),
		dw(1, 2, 1, 1, 5, 2), dw(2, 3, 7, 7, 5, 2), dw(2, 2, 14, 15, 5, 2), dw(1, 2, 3, 4, 5, 2),
		dw(1, 2, 2, 2, 7, 1), dw(2, 2, 7, 7, 7, 1), dw(2, 3, 14, 13, 7, 1),
	}
	portable := []ConvShape{
		{N: 2, C: 3, H: 6, W: 7, OC: 6, KH: 3, KW: 3, Groups: 3, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 2, C: 3, H: 6, W: 7, OC: 3, KH: 3, KW: 3, Groups: 3, PT: 0, PL: 1, PB: 1, PR: 1},
		{N: 2, C: 3, H: 6, W: 7, OC: 3, KH: 3, KW: 3, Groups: 3, DH: 2, DW: 2, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 2, C: 3, H: 6, W: 7, OC: 3, KH: 2, KW: 2, Groups: 3},
		{N: 2, C: 3, H: 6, W: 7, OC: 3, KH: 3, KW: 5, Groups: 3, PT: 1, PL: 2, PB: 1, PR: 2},
		dw(2, 3, 9, 9, 7, 2), dw(2, 3, 9, 9, 9, 1), dw(2, 3, 9, 9, 3, 3),
	}
	for _, s := range portable {
		if pl := s.plan(); pl.path() != viaBLAS {
			t.Errorf("%s takes the direct path", s)
		}
	}
	r := rand.New(rand.NewPCG(5, 5))
	for _, chunk := range []int{dwChunk, 1} {
		for _, s := range shapes {
			t.Run(fmt.Sprintf("%s/chunk=%d", s, chunk), func(t *testing.T) {
				old := dwChunk
				dwChunk = chunk
				defer func() { dwChunk = old }()
				x, w, b, dy := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.OC), randn(r, s.YLen())
				if pl := s.plan(); pl.path() != viaDW {
					t.Fatalf("path %d, want the direct depthwise path", pl.path())
				}
				for _, bias := range [][]float32{b, nil} {
					y, dx, dw, db := convBothWays(t, s, true, x, w, bias, dy)
					wy, wdx, wdw, wdb := convBothWays(t, s, false, x, w, bias, dy)
					tol := func(terms int) float64 { return 2e-7 * float64(terms) }
					closeTo(t, "y", y, f64(wy), tol(s.KH*s.KW))
					closeTo(t, "dx", dx, f64(wdx), tol(s.KH*s.KW))
					closeTo(t, "dw", dw, f64(wdw), tol(s.N*s.H*s.W))
					closeTo(t, "db", db, f64(wdb), 0)
				}
			})
		}
	}
}
