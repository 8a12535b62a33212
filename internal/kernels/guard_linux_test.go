package kernels

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"unsafe"
)

// guarded returns a slice of n floats flanked by inaccessible pages: at its
// end (atEnd) or at its start. An assembly loop that reads or writes past
// the slice it was given faults instead of silently using other memory.
func guarded(t *testing.T, n int, atEnd bool) []float32 {
	t.Helper()
	page := syscall.Getpagesize()
	body := (n*4 + page - 1) / page * page
	mem, err := syscall.Mmap(-1, 0, body+2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[:page], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mprotect(mem[page+body:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	off := page
	if atEnd {
		off = page + body - n*4
	}
	if n == 0 {
		return []float32{}
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&mem[off])), n)
}

// guardedCopy is guarded filled with v.
func guardedCopy(t *testing.T, v []float32, atEnd bool) []float32 {
	g := guarded(t, len(v), atEnd)
	copy(g, v)
	return g
}

// TestKernelsStayInBounds runs every path with our own loops (direct
// convolutions, moments, lazy BatchNorm gradients, BatchNorm, ReLU, Add+ReLU)
// on buffers ending, then starting, at an inaccessible page, with sizes
// that leave partial vectors everywhere; it passes if nothing faults and the
// results equal those on ordinary buffers (up to rounding: gonum's GEMM,
// which the purego build uses, sums in an order that depends on alignment).
func TestKernelsStayInBounds(t *testing.T) {
	shapes := []ConvShape{
		{N: 3, C: 5, H: 7, W: 9, OC: 6, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 2, C: 3, H: 9, W: 8, OC: 7, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 3, C: 4, H: 7, W: 5, OC: 5, KH: 1, KW: 1, SH: 2, SW: 2},
		{N: 2, C: 6, H: 3, W: 5, OC: 3, KH: 1, KW: 1},
		{N: 1, C: 1, H: 1, W: 1, OC: 1, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 2, C: 3, H: 16, W: 16, OC: 4, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 3, C: 2, H: 7, W: 9, OC: 2, KH: 3, KW: 3, Groups: 2, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 2, C: 3, H: 9, W: 7, OC: 3, KH: 3, KW: 3, SH: 2, SW: 2, Groups: 3, PT: 1, PL: 1, PB: 1, PR: 1},
		{N: 2, C: 2, H: 5, W: 7, OC: 2, KH: 5, KW: 5, SH: 2, SW: 2, Groups: 2, PT: 2, PL: 2, PB: 2, PR: 2},
		{N: 1, C: 2, H: 6, W: 5, OC: 2, KH: 7, KW: 7, Groups: 2, PT: 3, PL: 3, PB: 3, PR: 3},
	}
	r := rand.New(rand.NewPCG(9, 9))
	for _, s := range shapes {
		for _, atEnd := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/guard-at-end=%v", s, atEnd), func(t *testing.T) {
				x, w, dz := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.YLen())
				p := BNParams{N: s.N, C: s.OC, HW: s.OH() * s.OW(), Eps: 1e-5, Momentum: 0.1, ReLU: true, ReLUMax: 1.5}
				gamma, beta := randn(r, s.OC), randn(r, s.OC)
				run := func(g func([]float32) []float32, mk func(int) []float32) [][]float32 {
					xs, ws, dzs := g(x), g(w), g(dz)
					ga, be := g(gamma), g(beta)
					y, scratch := mk(s.YLen()), mk(s.ScratchLen())
					m := NewMoments(s.N, s.OC)
					Conv2DMoments(s, xs, ws, nil, y, scratch, m)
					z, mean, is := mk(s.YLen()), mk(s.OC), mk(s.OC)
					BatchNormTrainMoments(p, m, y, ga, be, z, mean, is, nil, nil)
					dg, db, dx, dw := mk(s.OC), mk(s.OC), mk(s.XLen()), mk(s.WLen())
					if s.Direct() {
						bg := NewBNInputGrad(s.OC)
						BatchNormBackwardTo(p, y, dzs, ga, be, mean, is, bg, dg, db)
						Conv2DBackwardBN(s, xs, ws, bg, dx, dw, scratch)
					} else {
						dy := mk(s.YLen())
						BatchNormBackward(p, y, dzs, ga, be, mean, is, dy, dg, db)
						Conv2DBackward(s, xs, ws, dy, dx, dw, nil, scratch)
					}
					a := mk(s.YLen())
					AddReLU(z, y, a)
					d1, d2 := mk(s.YLen()), mk(s.YLen())
					ReLUBackward2(a, dzs, d1, d2)
					return [][]float32{y, z, dg, db, dx, dw, a, d1, d2}
				}
				want := run(func(v []float32) []float32 { return append([]float32(nil), v...) },
					func(n int) []float32 { return make([]float32, n) })
				got := run(func(v []float32) []float32 { return guardedCopy(t, v, atEnd) },
					func(n int) []float32 { return guarded(t, n, atEnd) })
				for i := range want {
					closeTo(t, fmt.Sprint("result ", i), got[i], f64(want[i]), 1e-5)
				}
			})
		}
	}
}
