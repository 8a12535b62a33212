package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestInterleave checks deinterleave and interleave, whose AVX-512 versions
// mask their tails, against the plain loops on every length up to 70,
// and that they touch nothing past the elements they own.
func TestInterleave(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for w := 0; w <= 70; w++ {
		src := randn(r, w)
		var got, want [2][]float32
		for i, fast := range []bool{true, false} {
			useElem16 = fast
			ev, od := make([]float32, (w+1)/2+3), make([]float32, w/2+3)
			for j := range ev {
				ev[j] = -1
			}
			for j := range od {
				od[j] = -1
			}
			deinterleave(src, ev[:(w+1)/2], od[:w/2])
			got[i] = append(ev, od...)
			dst := make([]float32, w+3)
			for j := range dst {
				dst[j] = -1
			}
			interleave(ev, od, dst[:w])
			want[i] = dst
		}
		useElem16 = true
		if !slices.Equal(got[0], got[1]) {
			t.Errorf("deinterleave w=%d: %v, want %v", w, got[0], got[1])
		}
		if !slices.Equal(want[0], want[1]) || !slices.Equal(want[0][:w], src) {
			t.Errorf("interleave w=%d: %v, want %v then -1s", w, want[0], src)
		}
	}
}

// TestClipMatchesPortable checks Clip and ClipBackward, whose AVX-512
// loops take the multiples of 16 elements, against the plain loops on
// random values, the bounds themselves, infinities and NaN.
func TestClipMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	x := randn(r, 100)
	for i := range x {
		x[i] *= 5
	}
	copy(x[3:], []float32{0, 6, -1, 2, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())})
	copy(x[50:], []float32{-1, 2, 0, 6})
	dy := randn(r, len(x))
	same := func(a, b float32) bool { return a == b || a != a && b != b }
	for _, b := range [][2]float32{{0, 6}, {-1, 2}} {
		var y, dx [2][]float32
		for i, fast := range []bool{true, false} {
			useElem16 = fast
			y[i], dx[i] = make([]float32, len(x)), make([]float32, len(x))
			Clip(x, y[i], b[0], b[1])
			ClipBackward(x, dy, dx[i], b[0], b[1])
		}
		useElem16 = true
		for j := range x {
			if !same(y[0][j], y[1][j]) || !same(dx[0][j], dx[1][j]) {
				t.Fatalf("bounds %v, x = %v: Clip %v, %v; ClipBackward %v, %v (AVX-512, portable)",
					b, x[j], y[0][j], y[1][j], dx[0][j], dx[1][j])
			}
		}
	}
}
