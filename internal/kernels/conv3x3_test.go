package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestConv3x3MatchesIm2col checks the direct paths (3×3 with strides 1 and
// 2, and pointwise) against the im2col
// path (itself checked against the reference convolution and finite
// differences) on shapes that reach every tile size, channel counts that
// are not multiples of the tiles, one-pixel rows and columns, and
// weight-gradient chunks of one sample.
func TestConv3x3MatchesIm2col(t *testing.T) {
	if !haveConv3x3 {
		t.Skip("no AVX-512 micro-kernels in this build or on this CPU")
	}
	shapes := [][5]int{ // N, C, OC, H (W = H + index mod 3), stride
		{1, 1, 1, 1, 1}, {2, 1, 16, 5, 1}, {3, 3, 5, 7, 1}, {2, 7, 2, 4, 1}, {5, 16, 16, 28, 1},
		{4, 32, 7, 14, 1}, {3, 64, 64, 7, 1}, {2, 5, 9, 19, 1}, {1, 2, 3, 40, 1},
		{1, 1, 1, 1, 2}, {2, 3, 4, 2, 2}, {3, 16, 32, 28, 2}, {2, 32, 64, 14, 2}, {2, 5, 7, 9, 2},
		{3, 4, 5, 7, 2}, {2, 2, 3, 31, 2},
		{2, 3, 5, 14, 1}, {1, 2, 4, 29, 1}, // W = 15 and 31: odd, W+1 a multiple of 16 and 32
	}
	pointwise := [][5]int{ // N, C, OC, H, stride, as above, with a 1×1 kernel and no pads
		{1, 1, 1, 1, 1}, {3, 16, 32, 28, 2}, {2, 32, 64, 14, 2}, {4, 5, 7, 9, 2}, {3, 6, 5, 7, 1}, {2, 24, 144, 14, 1},
		{2, 9, 6, 5, 1}, {3, 15, 10, 6, 2}, // every weight-gradient tile size: 1–4 output × 1–6 input channels
	}
	r := rand.New(rand.NewPCG(3, 3))
	for _, l2 := range []int{conv3x3L2, 1} {
		for i, sh := range append(shapes, pointwise...) {
			s := ConvShape{N: sh[0], C: sh[1], OC: sh[2], H: sh[3], W: sh[3] + i%3, KH: 3, KW: 3,
				SH: sh[4], SW: sh[4], PT: 1, PL: 1, PB: 1, PR: 1}
			if i >= len(shapes) {
				s.KH, s.KW, s.PT, s.PL, s.PB, s.PR = 1, 1, 0, 0, 0, 0
			}
			// The stride-1 3×3 shapes run twice: products direct, and by
			// Winograd's algorithm whatever the channel counts.
			for _, wino := range []bool{false, true} {
				if wino && (s.KH != 3 || s.SH != 1) {
					continue
				}
				t.Run(fmt.Sprintf("%s/l2=%d/winograd=%v", s, l2, wino), func(t *testing.T) {
					oldW, oldMin := useWinograd, winoMinC
					useWinograd, winoMinC = wino, 1
					defer setChunking(l2)()
					defer func() { useWinograd, winoMinC = oldW, oldMin }()
					if p := s.plan(); p.wino() != wino {
						t.Fatalf("Winograd path taken: %v, want %v", p.wino(), wino)
					}
					x, w, b, dy := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.OC), randn(r, s.YLen())
					run := func(direct bool) (y, dx, dw, db []float32) {
						return convBothWays(t, s, direct, x, w, b, dy)
					}
					y, dx, dw, db := run(true)
					wy, wdx, wdw, wdb := run(false)
					// Both sum in float32 in different orders: allow for
					// rounding growing with the length of the sums.
					tol := func(terms int) float64 { return 2e-7 * float64(terms) }
					closeTo(t, "y", y, f64(wy), tol(s.C*9))
					closeTo(t, "dx", dx, f64(wdx), tol(s.OC*9))
					closeTo(t, "dw", dw, f64(wdw), tol(s.N*s.H*s.W))
					closeTo(t, "db", db, f64(wdb), 0)
				})
			}
		}
	}
}

// TestDirectConvIndependentOfThreads checks that the direct paths give the
// same bits on one and two batch workers: output, moments, input and weight
// gradients (chunks do not depend on the worker count, partials are summed
// in chunk order, and Winograd's tiles start at each sample's first row).
func TestDirectConvIndependentOfThreads(t *testing.T) {
	if !haveConv3x3 {
		t.Skip("no AVX-512 micro-kernels in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(4, 4))
	for _, s := range []ConvShape{
		{N: 37, C: 5, H: 9, W: 8, OC: 6, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 37, C: 16, H: 9, W: 10, OC: 17, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}, // Winograd
		{N: 33, C: 4, H: 10, W: 7, OC: 5, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 35, C: 5, H: 9, W: 7, OC: 6, KH: 1, KW: 1, SH: 2, SW: 2},
		{N: 35, C: 5, H: 9, W: 7, OC: 5, KH: 3, KW: 3, Groups: 5, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 33, C: 4, H: 10, W: 7, OC: 4, KH: 5, KW: 5, SH: 2, SW: 2, Groups: 4, PT: 2, PL: 2, PB: 2, PR: 2},
	} {
		x, w, dy := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.YLen())
		run := func(procs int) [][]float32 {
			var out [][]float32
			withThreads(procs, func() { out = convMomentsBackward(s, x, w, dy) })
			return out
		}
		one, two := run(1), run(2)
		for i := range one {
			closeTo(t, fmt.Sprintf("%s result %d", s, i), two[i], f64(one[i]), 0)
		}
	}
}

// TestConvReadsThroughAffine checks that a convolution reading its input through an
// InputMap (the BatchNormalization before it, with or without its ReLU or ReLU6, then an
// elementwise function or not, or that function alone) gives the same bits as one reading
// the mapped input stored: output, moments, input
// and weight gradients, with chunks of many samples and of one; that BatchNormTrainDeferred
// leaves the map BatchNormTrain applies; on the direct 3×3 stride-1, pointwise (strides 1
// and 2) and depthwise (3×3 and 5×5, strides 1 and 2) paths; and that no other path takes a
// map.
func TestConvReadsThroughAffine(t *testing.T) {
	if !haveConv3x3 {
		t.Skip("no AVX-512 micro-kernels in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(8, 8))
	for _, l2 := range []int{conv3x3L2, 1} {
		for _, c := range []struct {
			s       ConvShape
			relu    bool
			reluMax float32
		}{
			{ConvShape{N: 5, C: 6, H: 9, W: 8, OC: 7, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}, true, 0},
			{ConvShape{N: 3, C: 16, H: 14, W: 14, OC: 16, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}, false, 0},
			{ConvShape{N: 4, C: 3, H: 7, W: 9, OC: 5, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}, true, 0.5},
			{ConvShape{N: 5, C: 6, H: 9, W: 7, OC: 10, KH: 1, KW: 1}, true, 6},
			{ConvShape{N: 3, C: 24, H: 14, W: 14, OC: 8, KH: 1, KW: 1}, false, 0},
			{ConvShape{N: 3, C: 5, H: 9, W: 11, OC: 7, KH: 1, KW: 1, SH: 2, SW: 2}, true, 0},
			{ConvShape{N: 4, C: 6, H: 9, W: 8, OC: 6, KH: 3, KW: 3, Groups: 6, PT: 1, PL: 1, PB: 1, PR: 1}, true, 6},
			{ConvShape{N: 3, C: 5, H: 14, W: 13, OC: 5, KH: 3, KW: 3, SH: 2, SW: 2, Groups: 5, PT: 1, PL: 1, PB: 1, PR: 1}, true, 0},
			{ConvShape{N: 3, C: 4, H: 10, W: 9, OC: 4, KH: 5, KW: 5, SH: 2, SW: 2, Groups: 4, PT: 2, PL: 2, PB: 2, PR: 2}, false, 0},
		} {
			restore := setChunking(l2)
			s := c.s
			p := BNParams{N: s.N, C: s.C, HW: s.H * s.W, Eps: 1e-5, Momentum: 0.1, ReLU: c.relu, ReLUMax: c.reluMax}
			raw, gamma, beta := randn(r, s.XLen()), randn(r, s.C), randn(r, s.C)
			w, dy := randn(r, s.WLen()), randn(r, s.YLen())
			// The stored way: BatchNormalization writes its output, the convolution reads it.
			stored := make([]float32, s.XLen())
			mean, is := make([]float32, s.C), make([]float32, s.C)
			BatchNormTrain(p, raw, gamma, beta, stored, mean, is, nil, nil)
			// The deferred way: the convolution reads raw through the map.
			aff := &InputMap{A: make([]float32, s.C), B: make([]float32, s.C)}
			mean2, is2 := make([]float32, s.C), make([]float32, s.C)
			BatchNormTrainDeferred(p, nil, raw, gamma, beta, mean2, is2, nil, nil, aff)
			closeTo(t, "mean", mean2, f64(mean), 0)
			closeTo(t, "invStd", is2, f64(is), 0)
			want := convMomentsBackward(s, stored, w, dy)
			sa := s
			sa.In = aff
			if !sa.MapsInput() {
				t.Fatalf("%s: no input map", s)
			}
			got := convMomentsBackward(sa, raw, w, dy)
			for i, what := range []string{"y", "moments", "dx", "dw"} {
				closeTo(t, fmt.Sprintf("%s relu=%v max=%g l2=%d %s", s, c.relu, c.reluMax, l2, what), got[i], f64(want[i]), 0)
			}
			// An elementwise function after the map (an activation quantizer's), and
			// alone (no BatchNormalization before the quantizer).
			grid := func(x, y []float32) {
				for i, v := range x {
					y[i] = float32(math.Round(float64(v)*4)) / 4
				}
			}
			for _, bn := range []bool{true, false} {
				m, src := &InputMap{Then: grid}, raw
				if bn {
					m.A, m.B, m.ReLU, m.ReLUMax = aff.A, aff.B, aff.ReLU, aff.ReLUMax
					src = stored
				}
				q := make([]float32, len(src))
				grid(src, q)
				want := convMomentsBackward(s, q, w, dy)
				sa.In = m
				got := convMomentsBackward(sa, raw, w, dy)
				for i, what := range []string{"y", "moments", "dx", "dw"} {
					closeTo(t, fmt.Sprintf("%s then, bn=%v, l2=%d %s", s, bn, l2, what), got[i], f64(want[i]), 0)
				}
			}
			restore()
		}
	}
	for _, s := range []ConvShape{
		{N: 2, C: 4, H: 8, W: 8, OC: 4, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 2, C: 4, H: 8, W: 8, OC: 4, KH: 3, KW: 3, DH: 2, DW: 2, PT: 2, PL: 2, PB: 2, PR: 2},
		{N: 2, C: 4, H: 8, W: 8, OC: 4, KH: 5, KW: 5, PT: 2, PL: 2, PB: 2, PR: 2},
		{N: 2, C: 4, H: 8, W: 8, OC: 8, KH: 3, KW: 3, Groups: 2, PT: 1, PL: 1, PB: 1, PR: 1},
	} {
		if s.MapsInput() {
			t.Errorf("%s reads through an input map", s)
		}
	}
	bad := ConvShape{N: 1, C: 3, H: 4, W: 4, OC: 2, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1,
		In: &InputMap{A: make([]float32, 2), B: make([]float32, 3)}}
	if bad.Validate() == nil {
		t.Error("an input map of 2 channels for 3 validates")
	}
}

// convMomentsBackward runs Conv2DMoments (no bias) and Conv2DBackward of s and returns
// y, the moments (mean and M2 by channel), dx and dw.
func convMomentsBackward(s ConvShape, x, w, dy []float32) [][]float32 {
	scratch := make([]float32, s.ScratchLen())
	y := make([]float32, s.YLen())
	m := NewMoments(s.N, s.OC)
	Conv2DMoments(s, x, w, nil, y, scratch, m)
	dx, dw := make([]float32, s.XLen()), make([]float32, s.WLen())
	Conv2DBackward(s, x, w, dy, dx, dw, nil, scratch)
	mom := make([]float32, 0, 2*s.OC)
	for c := range s.OC {
		mom = append(mom, float32(m.Mean[c]), float32(m.M2[c]))
	}
	return [][]float32{y, mom, dx, dw}
}

// TestConvAddsInputGradient checks that Conv2DBackward with AddDx adds the input gradient
// into dx with the bits of writing it and adding it with AddTo, leaving dw alone, with
// chunks of many samples and of one; and that other paths refuse AddDx.
func TestConvAddsInputGradient(t *testing.T) {
	if !haveConv3x3 {
		t.Skip("no AVX-512 micro-kernels in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(10, 10))
	for _, l2 := range []int{conv3x3L2, 1} {
		for _, s := range []ConvShape{
			{N: 5, C: 6, H: 9, W: 8, OC: 7, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
			{N: 3, C: 16, H: 14, W: 14, OC: 16, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
			{N: 2, C: 3, H: 1, W: 17, OC: 2, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
		} {
			restore := setChunking(l2)
			x, w, dy, prev := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.YLen()), randn(r, s.XLen())
			scratch := make([]float32, s.ScratchLen())
			dx, dw := make([]float32, s.XLen()), make([]float32, s.WLen())
			Conv2DBackward(s, x, w, dy, dx, dw, nil, scratch)
			want := slices.Clone(prev)
			AddTo(want, dx)
			sa := s
			sa.AddDx = true
			got, dw2 := slices.Clone(prev), make([]float32, s.WLen())
			Conv2DBackward(sa, x, w, dy, got, dw2, nil, scratch)
			closeTo(t, fmt.Sprintf("%s l2=%d dx", s, l2), got, f64(want), 0)
			closeTo(t, fmt.Sprintf("%s l2=%d dw", s, l2), dw2, f64(dw), 0)
			restore()
		}
	}
	for _, s := range []ConvShape{
		{N: 2, C: 4, H: 8, W: 8, OC: 4, KH: 1, KW: 1},
		{N: 2, C: 4, H: 8, W: 8, OC: 4, KH: 3, KW: 3, Groups: 4, PT: 1, PL: 1, PB: 1, PR: 1},
	} {
		if s.AddsDx() {
			t.Errorf("%s adds its input gradient", s)
		}
	}
	s2 := ConvShape{N: 2, C: 4, H: 8, W: 8, OC: 4, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1, AddDx: true}
	defer func() {
		if recover() == nil {
			t.Error("AddDx on a stride-2 convolution did not panic")
		}
	}()
	Conv2DBackward(s2, make([]float32, s2.XLen()), make([]float32, s2.WLen()), make([]float32, s2.YLen()),
		make([]float32, s2.XLen()), nil, nil, make([]float32, s2.ScratchLen()))
}

// setChunking sets the batch chunks of the direct paths for a test: l2 as
// conv3x3L2 (1 for chunks of one sample) and, with l2 = 1, no lower bound
// on the Winograd path's tiles per chunk. It returns what restores both.
func setChunking(l2 int) (restore func()) {
	old, oldTiles := conv3x3L2, winoMinTiles
	conv3x3L2 = l2
	if l2 == 1 {
		winoMinTiles = 1
	}
	return func() { conv3x3L2, winoMinTiles = old, oldTiles }
}
