package kernels

// haveElem16 is set by init where the AVX-512 loops of elem_amd64.s can
// run; the functions below then hand them whole planes (the loops mask the
// last partial vector) or the largest multiple of 16 elements (the rest
// done in Go). useElem16 lets tests compare with the plain Go loops.
var (
	haveElem16 bool
	useElem16  = true
)

// bulk16 returns how many leading elements of an n-element slice the
// AVX-512 loops take: 0 without them.
func bulk16(n int) int {
	if !haveElem16 || !useElem16 {
		return 0
	}
	return n &^ 15
}

// lanes sums the 16-lane vectors acc[0:16] and acc[16:32] in float64.
func lanes(acc *[32]float32) (s, ss float64) {
	for i := range 16 {
		s += float64(acc[i])
		ss += float64(acc[16+i])
	}
	return s, ss
}

// copyRows copies rows rows of w floats from src (row pitch sp) to dst
// (row pitch dp).
func copyRows(src, dst []float32, rows, w, sp, dp int) {
	if rows < 1 || w < 1 {
		return
	}
	_ = src[(rows-1)*sp+w-1]
	_ = dst[(rows-1)*dp+w-1]
	if haveElem16 && useElem16 {
		unpadRows16(&src[0], &dst[0], rows, w, sp, dp, 0, 0, false)
		return
	}
	for r := range rows {
		copy(dst[r*dp:r*dp+w], src[r*sp:r*sp+w])
	}
}

// Add sets y = a + b elementwise, on all cores for long slices. y may
// alias a or b.
func Add(a, b, y []float32) {
	need("b", b, len(a))
	need("y", y, len(a))
	mapElems(len(a), 1, func(lo, hi int) {
		a, b, y := a[lo:hi], b[lo:hi], y[lo:hi]
		for i, v := range a {
			y[i] = v + b[i]
		}
	})
}

// AddTo adds src into dst elementwise, on all cores for long slices.
func AddTo(dst, src []float32) {
	need("src", src, len(dst))
	mapElems(len(dst), 1, func(lo, hi int) {
		d, s := dst[lo:hi], src[lo:hi]
		for i, v := range s {
			d[i] += v
		}
	})
}

// Copy copies src to dst (of equal length), on all cores for long slices.
func Copy(dst, src []float32) {
	need("src", src, len(dst))
	mapElems(len(dst), 1, func(lo, hi int) { copy(dst[lo:hi], src[lo:hi]) })
}

// deinterleave sets even[j] = src[2j] for j < (len(src)+1)/2 and odd[j] =
// src[2j+1] for j < len(src)/2.
func deinterleave(src, even, odd []float32) {
	w := len(src)
	if w == 0 {
		return
	}
	ev, od := even[:(w+1)/2], odd[:w/2]
	if haveElem16 && useElem16 {
		op := &ev[0] // any valid pointer when there are no odd elements
		if len(od) > 0 {
			op = &od[0]
		}
		deinterleave32(&src[0], &ev[0], op, w)
		return
	}
	for j := range ev {
		ev[j] = src[2*j]
	}
	for j := range od {
		od[j] = src[2*j+1]
	}
}

// interleave is the inverse of deinterleave: dst[2j] = even[j] and
// dst[2j+1] = odd[j] for the indices inside dst.
func interleave(even, odd, dst []float32) {
	w := len(dst)
	if w == 0 {
		return
	}
	ev, od := even[:(w+1)/2], odd[:w/2]
	if haveElem16 && useElem16 {
		op := &ev[0]
		if len(od) > 0 {
			op = &od[0]
		}
		interleave32(&ev[0], op, &dst[0], w)
		return
	}
	for j, v := range ev {
		dst[2*j] = v
	}
	for j, v := range od {
		dst[2*j+1] = v
	}
}

// planes runs over the np planes of hw floats of one channel: all at once
// through the AVX-512 loop fast where it can run, else plane by plane
// through slow(n).
func planes(np, hw int, fast func(), slow func(n int)) {
	if np < 1 || hw < 1 {
		return
	}
	if haveElem16 && useElem16 {
		fast()
		return
	}
	for n := range np {
		slow(n)
	}
}
