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
func copyRows(src, dst []float32, rows, w, sp, dp int) { moveRows(src, dst, rows, w, sp, dp, false) }

// addRows is copyRows adding the rows into dst instead of overwriting it.
func addRows(src, dst []float32, rows, w, sp, dp int) { moveRows(src, dst, rows, w, sp, dp, true) }

func moveRows(src, dst []float32, rows, w, sp, dp int, add bool) {
	if rows < 1 || w < 1 {
		return
	}
	_ = src[(rows-1)*sp+w-1]
	_ = dst[(rows-1)*dp+w-1]
	if haveElem16 && useElem16 {
		unpadRows16(&src[0], &dst[0], rows, w, sp, dp, 0, 0, false, add)
		return
	}
	for r := range rows {
		d, s := dst[r*dp:r*dp+w], src[r*sp:r*sp+w]
		if !add {
			copy(d, s)
			continue
		}
		for j, v := range s {
			d[j] += v
		}
	}
}

// Add sets y = a + b elementwise, on all cores for long slices. y may
// alias a or b.
func Add(a, b, y []float32) {
	need("b", b, len(a))
	need("y", y, len(a))
	mapElems(len(a), 1, func(lo, hi int) { add(a[lo:hi], b[lo:hi], y[lo:hi]) })
}

// AddTo adds src into dst elementwise, on all cores for long slices.
func AddTo(dst, src []float32) { Add(dst, src, dst) }

// add is Add on one worker.
func add(a, b, y []float32) {
	if n := bulk16(len(a)); n > 0 {
		add16(&a[0], &b[0], &y[0], n)
		a, b, y = a[n:], b[n:], y[n:]
	}
	for i, v := range a {
		y[i] = v + b[i]
	}
}

// Copy copies src to dst (of equal length), on all cores for long slices.
func Copy(dst, src []float32) {
	need("src", src, len(dst))
	mapElems(len(dst), 1, func(lo, hi int) { copy(dst[lo:hi], src[lo:hi]) })
}

// deinterleave sets even[j] = src[2j] for j < (len(src)+1)/2 and odd[j] =
// src[2j+1] for j < len(src)/2.
func deinterleave(src, even, odd []float32) {
	deinterleaveRows(src, even, odd, 1, len(src), 0, 0, 0)
}

// deinterleaveRows runs deinterleave on rows rows of w floats, with pitches
// in floats: row r is src[r·sp:][:w], its even elements go to even[r·ep:]
// and its odd ones to odd[r·op:] (op 0 throws them all into one row). One
// call splits a whole plane, which is what the stride-2 paths need: a call
// per row cost more than the copy itself.
func deinterleaveRows(src, even, odd []float32, rows, w, sp, ep, op int) {
	if rows < 1 || w < 1 {
		return
	}
	ne, no := (w+1)/2, w/2
	_ = src[(rows-1)*sp+w-1]
	_ = even[(rows-1)*ep+ne-1]
	if no > 0 {
		_ = odd[(rows-1)*op+no-1]
	}
	if haveElem16 && useElem16 {
		op0 := &even[0] // any valid pointer when there are no odd elements
		if no > 0 {
			op0 = &odd[0]
		}
		deinterleaveRows32(&src[0], &even[0], op0, rows, w, sp, ep, op)
		return
	}
	for r := range rows {
		s, e := src[r*sp:][:w], even[r*ep:][:ne]
		for j := range e {
			e[j] = s[2*j]
		}
		if no > 0 {
			o := odd[r*op:][:no]
			for j := range o {
				o[j] = s[2*j+1]
			}
		}
	}
}

// interleave is the inverse of deinterleave: dst[2j] = even[j] and
// dst[2j+1] = odd[j] for the indices inside dst.
func interleave(even, odd, dst []float32) {
	interleaveRows(even, odd, dst, 1, len(dst), 0, 0, 0)
}

// interleaveRows runs interleave on rows rows of w floats of dst: row r is
// dst[r·dp:][:w], taking its even elements from even[r·ep:] and its odd
// ones from odd[r·op:] (pitches in floats; op 0 reads one row for all).
func interleaveRows(even, odd, dst []float32, rows, w, ep, op, dp int) {
	if rows < 1 || w < 1 {
		return
	}
	ne, no := (w+1)/2, w/2
	_ = dst[(rows-1)*dp+w-1]
	_ = even[(rows-1)*ep+ne-1]
	if no > 0 {
		_ = odd[(rows-1)*op+no-1]
	}
	if haveElem16 && useElem16 {
		op0 := &even[0]
		if no > 0 {
			op0 = &odd[0]
		}
		interleaveRows32(&even[0], op0, &dst[0], rows, w, ep, op, dp)
		return
	}
	for r := range rows {
		d, e := dst[r*dp:][:w], even[r*ep:][:ne]
		for j, v := range e {
			d[2*j] = v
		}
		if no > 0 {
			o := odd[r*op:][:no]
			for j, v := range o {
				d[2*j+1] = v
			}
		}
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

// gradSumsPlanes adds to acc, with c = {mu, a, b, hi} and g = dy, or dy
// where 0 < x·a + b < hi when relu, Σg (acc[0:16]) and Σg·(x − mu)
// (acc[16:32]) over np planes of hw floats stride apart, lane by lane:
// summed in float32 within a plane (gradLanesPlanes) and in float64 across
// planes, in order.
func gradSumsPlanes(x, dy []float32, hw, np, stride int, c *[4]float32, relu bool, acc *[32]float64) {
	const batch = 16 // planes per call
	var lanes [batch * 32]float32
	_ = x[(np-1)*stride+hw-1]
	_ = dy[(np-1)*stride+hw-1]
	for p0 := 0; p0 < np; p0 += batch {
		k := min(batch, np-p0)
		gradLanesPlanes(&x[p0*stride], &dy[p0*stride], hw, k, stride, c, relu, &lanes[0], 32)
		for p := range k {
			for i, v := range lanes[p*32 : (p+1)*32] {
				acc[i] += float64(v)
			}
		}
	}
}
