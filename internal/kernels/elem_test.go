package kernels

import (
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
