package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestInterleave checks deinterleaveRows and interleaveRows, whose AVX-512
// versions mask their tails, against the plain loops on every width up to
// 70, one row and several at pitches with gaps (and a pitch of 0, which
// reads or overwrites one row), and that they touch nothing past the
// elements they own.
func TestInterleave(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	filled := func(n int) []float32 {
		s := make([]float32, n)
		for j := range s {
			s[j] = -1
		}
		return s
	}
	for w := 0; w <= 70; w++ {
		for _, rows := range []int{1, 3} {
			for _, gap := range []int{0, 5} {
				sp, ep, op := w+gap, (w+1)/2+gap, w/2+gap
				if gap == 5 && rows > 1 {
					op = 0
				}
				src := randn(r, rows*sp+gap)
				var got, back [2][]float32
				for i, fast := range []bool{true, false} {
					useElem16 = fast
					ev, od := filled(rows*ep+3), filled(rows*op+w/2+3)
					deinterleaveRows(src, ev, od, rows, w, sp, ep, op)
					got[i] = append(ev, od...)
					dst := filled(rows*sp + 3)
					interleaveRows(ev, od, dst, rows, w, ep, op, sp)
					back[i] = dst
				}
				useElem16 = true
				if !slices.Equal(got[0], got[1]) {
					t.Errorf("deinterleaveRows w=%d rows=%d sp=%d ep=%d op=%d: %v, want %v", w, rows, sp, ep, op, got[0], got[1])
				}
				if !slices.Equal(back[0], back[1]) {
					t.Errorf("interleaveRows w=%d rows=%d: %v, want %v", w, rows, back[0], back[1])
				}
				// With separate rows the round trip gives the source back
				// and leaves the gaps alone.
				if op != 0 || rows == 1 {
					for k := range rows {
						if row := back[0][k*sp:][:w]; !slices.Equal(row, src[k*sp:][:w]) {
							t.Errorf("round trip w=%d rows=%d row %d: %v, want %v", w, rows, k, row, src[k*sp:][:w])
						}
						for j := k*sp + w; j < (k+1)*sp; j++ {
							if back[0][j] != -1 {
								t.Fatalf("interleaveRows w=%d rows=%d wrote gap float %d", w, rows, j)
							}
						}
					}
				}
			}
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

// TestPaddedLayoutCopies checks padPlanes and unpadPlane, whose AVX-512
// loops store whole vectors past the end of a row and rely on later rows
// to overwrite them, against the plain loops: every width up to 40 with
// heights 1–4, pads of 1 and 2, a bias or none, contiguous and padded
// pitches. Every float of the destination, owned or not, must match, so
// a store that runs past a plane or a channel (a region another worker
// may own) fails.
func TestPaddedLayoutCopies(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for w := 1; w <= 40; w++ {
		for h := 1; h <= 4; h++ {
			for p := 1; p <= 2; p++ {
				m, c := 3, 2
				x := randn(r, m*c*h*w)
				sp := (h + p) * (w + p)
				row := m*sp + 2*(w+p) + 2 // the least the convolution paths give a channel
				var pad [2][]float32
				for i, fast := range []bool{true, false} {
					useElem16 = fast
					pad[i] = make([]float32, c*row+20)
					for j := range pad[i] {
						pad[i][j] = -7
					}
					padPlanes(func(i, ch int) []float32 { return x[(i*c+ch)*h*w:][:h*w] }, nil, m, c, h, w, p, row, pad[i][:c*row])
				}
				useElem16 = true
				if !slices.Equal(pad[0], pad[1]) {
					t.Fatalf("padPlanes h=%d w=%d p=%d: AVX-512 %v, portable %v", h, w, p, pad[0], pad[1])
				}
			}
			for _, wp := range []int{w, w + 1, w + 2} {
				for _, bias := range [][]float32{nil, {0.5, -2}} {
					src := randn(r, h*wp+16)
					var y [2][]float32
					for i, fast := range []bool{true, false} {
						useElem16 = fast
						y[i] = make([]float32, 3*h*w+20)
						for j := range y[i] {
							y[i][j] = -7
						}
						unpadPlane(src, y[i][h*w:2*h*w], h, w, wp, bias, 1, clamp{}, nil, 0)
					}
					useElem16 = true
					if !slices.Equal(y[0], y[1]) {
						t.Fatalf("unpadPlane h=%d w=%d wp=%d bias %v: AVX-512 %v, portable %v", h, w, wp, bias, y[0], y[1])
					}
				}
			}
		}
	}
}

// TestAddMatchesPortable checks Add and AddTo, whose AVX-512 loop takes the multiples of
// 16 elements, against the plain loop on every length up to 70, also with y aliasing a.
func TestAddMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for n := 0; n <= 70; n++ {
		a, b := randn(r, n), randn(r, n)
		want := make([]float32, n)
		for i := range want {
			want[i] = a[i] + b[i]
		}
		y := make([]float32, n)
		Add(a, b, y)
		if !slices.Equal(y, want) {
			t.Errorf("Add n=%d: %v, want %v", n, y, want)
		}
		AddTo(a, b)
		if !slices.Equal(a, want) {
			t.Errorf("AddTo n=%d: %v, want %v", n, a, want)
		}
	}
}
