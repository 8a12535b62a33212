package kernels

// The 3×3 stride-1 convolution with pads of 1 (the bulk of CIFAR- and
// ImageNet-style CNNs) has a direct path on CPUs with AVX-512: no column
// matrix and no BLAS, but micro-kernels (conv3x3_amd64.s) that read each
// input channel straight from a padded copy of the sample.
//
// The padded copy lays a channel out with row pitch wp = W+1: pixel (h, w)
// sits at (h+1)·wp + w + 1 and everything else is 0. The single zero
// column between rows serves as the right pad of one row and the left pad
// of the next, so output position q = oh·wp + ow reads its 9 taps at q +
// kh·wp + kw: a convolution becomes a one-dimensional correlation over q,
// vectorized 16 positions at a time, and only column ow = W of each row is
// wasted work. Samples follow each other every (H+1)·wp floats, the bottom
// pad row of one being the top pad row of the next, so a chunk of samples
// is one correlation too (the row between samples is wasted work).
//
// The forward kernel holds a tile of 4 output channels × up to 6 vectors
// in registers and runs over all input channels; the weight-gradient
// kernel holds 3 output channels × 9 taps and runs over a whole chunk,
// reading the output gradient in the same padded layout shifted by wp+1
// (so that it is 0 at the wasted positions). The input gradient is the
// forward kernel on the padded output gradient with the flipped,
// transposed kernel.
//
// With 16 to 512 channels each way the forward and input-gradient products
// go through Winograd's algorithm instead (winograd.go), on the same padded
// chunks.

// haveConv3x3 is set by init where the micro-kernels can run (amd64 with
// AVX-512F, not built with purego); useConv3x3 lets tests and benchmarks
// turn the path off to compare.
var (
	haveConv3x3 bool
	useConv3x3  = true

	// The micro-kernels by family (conv3x3_decl_amd64.go fills them in):
	// stride 1; stride 2; the four phases of the stride-2 input gradient;
	// pointwise.
	fwdS1, fwdS2, fwdS2dx00, fwdS2dx01, fwdS2dx10, fwdS2dx11, fwdP1 fwdKernels
	wgradS1, wgradS2                                                wgradKernels
	wgradP1                                                         wgradP1Kernels
)

// fwdKernels are one family's forward kernels by the number of 16-wide
// vectors of output positions they cover (1…6); wgradKernels its
// weight-gradient kernels by the number of output channels (1…3);
// wgradP1Kernels the pointwise weight-gradient kernels by the numbers of
// output (1…4) and input (1…6) channels. Their arguments are described in
// asmgen/main.go.
type (
	fwdKernels     [7]func(x, w, y *float32, nc, xcs, ycs int, offs *int)
	wgradKernels   [4]func(x, dy, acc *float32, nv, dycs int, offs *int)
	wgradP1Kernels [5][7]func(x, dy, dw *float32, nv, xcs, dycs, dwcs int)
)

// fwdTiles runs a forward family over the first qv output positions (a
// multiple of 16) for oc4 output channels: x, w and out as the kernels
// take them, with nc input channels of xcs floats and output rows of ocs
// floats. It takes one step of pf (nil for none) before each kernel call.
func fwdTiles(k *fwdKernels, x, wpk, out []float32, nc, xcs, oc4, qv, ocs int, offs *[6]int, pf *ahead) {
	ntap := len(wpk) / (oc4 * nc)
	for q := 0; q < qv; q += 6 * 16 {
		nv := min(6, (qv-q)/16)
		f := k[nv]
		for ob := 0; ob < oc4; ob += 4 {
			pf.step()
			f(&x[q], &wpk[ob*nc*ntap], &out[ob*ocs+q], nc, xcs*4, ocs*4, &offs[0])
		}
	}
}

// tileCalls is the number of kernel calls fwdTiles makes.
func tileCalls(oc4, qv int) int { return (qv + 6*16 - 1) / (6 * 16) * (oc4 / 4) }

// ahead spreads prefetches over a loop of micro-kernel calls: the memory
// that the next steps read (the next chunk's input) or write (this
// chunk's output) is asked for a few lines per call, so that its
// transfer from DRAM overlaps the kernels' arithmetic instead of stalling
// the copies in and out of the padded layout. The zero value does
// nothing; so does a nil *ahead.
type ahead struct {
	regs [3]struct {
		s     []float32
		lines int // per step
		write bool
	}
	n int
}

// usePrefetch lets benchmarks turn ahead off.
var usePrefetch = true

// add queues region s, to be read (or written, when write is set).
func (a *ahead) add(s []float32, write bool) {
	if a.n == len(a.regs) || len(s) == 0 || !haveElem16 || !usePrefetch {
		return
	}
	a.regs[a.n].s, a.regs[a.n].write = s, write
	a.n++
}

// spread divides the queued regions over steps steps.
func (a *ahead) spread(steps int) {
	for i := range a.n {
		a.regs[i].lines = (len(a.regs[i].s)+15)/16/max(steps, 1) + 1
	}
}

// step prefetches the next lines of every region.
func (a *ahead) step() {
	if a == nil {
		return
	}
	for i := range a.n {
		r := &a.regs[i]
		k := min(16*r.lines, len(r.s))
		if k == 0 {
			continue
		}
		prefetchLines(&r.s[0], (k+15)/16, r.write)
		r.s = r.s[k:]
	}
}

// prefetchAt asks for s[off:off+n] to be brought into the cache, unless it
// does not lie inside s. The copies into the padded, phase and pointwise
// layouts call it for the plane they read next: they read a plane row by
// row, which the hardware prefetchers follow too late, and one plane ahead
// is enough to hide DRAM's latency (a 28×28 plane split into its stride-2
// phases: 560 ns from DRAM without, 110 ns with; a plain copy 95 ns).
func prefetchAt(s []float32, off, n int) {
	if !haveElem16 || !usePrefetch || off < 0 || n <= 0 || off+n > len(s) {
		return
	}
	prefetchLines(&s[off], (n+15)/16, false)
}

// xPlanes returns the planes of samples n0… of x (c channels of hw floats)
// as padPlanes and pack1 take them: get(i, ch) is the plane of sample n0 +
// i, channel ch, and pre(i, ch) prefetches it.
func xPlanes(x []float32, n0, c, hw int) (get func(i, ch int) []float32, pre func(i, ch int)) {
	get = func(i, ch int) []float32 { return x[((n0+i)*c+ch)*hw:][:hw] }
	pre = func(i, ch int) { prefetchAt(x, ((n0+i)*c+ch)*hw, hw) }
	return get, pre
}

// conv3x3L2 is the working set a weight-gradient chunk aims for, in bytes
// (tests lower it to exercise chunking).
var conv3x3L2 = 512 << 10

// c3 is the geometry of the direct 3×3 path for one plan.
type c3 struct {
	wp  int // row pitch of the padded layout, W+1
	sp  int // floats per sample in the padded layout, (H+1)·wp
	m   int // samples per chunk
	qv  int // output positions computed per chunk: m·sp rounded up to 16
	row int // floats per channel of a chunk in the padded layout
	oc4 int // output channels rounded up to 4
	c4  int // input channels rounded up to 4 (the output channels of dx)
	nb3 int // blocks of 3 output channels in the weight gradient
}

// isConv3x3 reports whether the direct path applies to the plan.
func (pl *convPlan) isConv3x3() bool {
	return haveConv3x3 && useConv3x3 && pl.Groups == 1 && pl.KH == 3 && pl.KW == 3 &&
		pl.SH == 1 && pl.SW == 1 && pl.DH == 1 && pl.DW == 1 &&
		pl.PT == 1 && pl.PL == 1 && pl.PB == 1 && pl.PR == 1
}

func (pl *convPlan) geom3() c3 {
	g := c3{wp: pl.W + 1}
	g.sp = (pl.H + 1) * g.wp
	g.m = max(1, min(pl.N, conv3x3L2/((pl.C+pl.OC)*g.sp*4)))
	if pl.wino() { // enough tiles per chunk: see winoMinTiles
		wg := pl.winoGeom(1)
		g.m = max(g.m, min(pl.N, (winoMinTiles+wg.ntr*wg.spr-1)/(wg.ntr*wg.spr)))
	}
	g.qv = roundUp(g.m*g.sp, 16)
	// Past the chunk's last output row the 3×3 taps read two more rows;
	// the Winograd path's tile rows read up to 32 floats further.
	g.row = roundUp(g.qv+2*g.wp+32, 16)
	g.oc4, g.c4 = roundUp(pl.OC, 4), roundUp(pl.C, 4)
	g.nb3 = (pl.OC + 2) / 3
	return g
}

func roundUp(n, k int) int { return (n + k - 1) / k * k }

// chunkLen3 is the scratch of one batch worker: a chunk of padded inputs
// and of padded output gradients, an output tile, the weight-gradient
// kernel's sums, two planes (of output gradient, mapped input, or input
// gradient for ConvShape.DxMap) and the Winograd path's scratch.
func (pl *convPlan) chunkLen3() int {
	g := pl.geom3()
	n := (pl.C+pl.OC)*g.row + max(g.oc4, g.c4)*g.qv + pl.C*g.nb3*27 + 2*pl.H*pl.W
	if pl.wino() {
		n += pl.winoLen(g.m)
	}
	return n
}

// preLen3 is the shared scratch for the packed weights.
func (pl *convPlan) preLen3() int {
	g := pl.geom3()
	if pl.wino() {
		return max(winoWeightsLen(pl.OC, pl.C), winoWeightsLen(pl.C, pl.OC))
	}
	return max(g.oc4*pl.C, g.c4*pl.OC) * 9
}

// taps3 and flip3 list the 9 taps of a 3×3 kernel in order and reversed;
// taps1 the one tap of a 1×1 kernel.
var (
	taps3 = []int{0, 1, 2, 3, 4, 5, 6, 7, 8}
	flip3 = []int{8, 7, 6, 5, 4, 3, 2, 1, 0}
	taps1 = []int{0}
)

// packTiles writes the weights of a forward kernel family to wpk: for each
// block of 4 kernel outputs o (zero for o ≥ nout), [nin][len(taps)][4]
// floats, tap t of output o and input i being w[at(o, i) + taps[t]]. The
// blocks are packed in parallel.
func packTiles(w, wpk []float32, nout, nin int, at func(o, i int) int, taps []int) {
	nt := len(taps)
	parFor(roundUp(nout, 4)/4, 4*nin*nt, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			blk := wpk[b*nin*nt*4 : (b+1)*nin*nt*4]
			for j := range 4 {
				o := 4*b + j
				if o >= nout {
					for k := j; k < len(blk); k += 4 {
						blk[k] = 0
					}
					continue
				}
				for i := range nin {
					src := w[at(o, i):]
					d := blk[i*nt*4+j:]
					for t, k := range taps {
						d[t*4] = src[k]
					}
				}
			}
		}
	})
}

// pack3 writes the weights of the forward kernel: for each block of 4
// output channels, [C][9][4] floats.
func (pl *convPlan) pack3(w, wpk []float32) {
	C := pl.C
	if pl.wino() {
		packWino(w, wpk, pl.OC, C, func(o, c int) int { return (o*C + c) * 9 }, taps3)
		return
	}
	packTiles(w, wpk, pl.OC, C, func(o, c int) int { return (o*C + c) * 9 }, taps3)
}

// pack3T writes the weights of the input-gradient kernel (a convolution
// from OC to C channels with the flipped kernel): for each block of 4 input
// channels c, [OC][9][4] floats holding w[o][c][8−t].
func (pl *convPlan) pack3T(w, wpk []float32) {
	C := pl.C
	if pl.wino() {
		packWino(w, wpk, C, pl.OC, func(c, o int) int { return (o*C + c) * 9 }, flip3)
		return
	}
	packTiles(w, wpk, C, pl.OC, func(c, o int) int { return (o*C + c) * 9 }, flip3)
}

// padInput writes samples c0…c0+m of the input x in the padded layout
// with pads of 1 (see padPlanes), read through the plan's input map when it
// has one (each plane mapped into tmp, H·W floats, then copied from there).
func (pl *convPlan) padInput(x []float32, c0, m, row int, dst, tmp []float32) {
	get, pre := pl.inputPlanes(x, c0, tmp)
	padPlanes(get, pre, m, pl.C, pl.H, pl.W, 1, row, dst)
}

// inputPlanes is xPlanes for the convolution's input x: through the plan's
// input map when it has one, each plane mapped into tmp (H·W floats) as it
// is asked for.
func (pl *convPlan) inputPlanes(x []float32, n0 int, tmp []float32) (get func(i, ch int) []float32, pre func(i, ch int)) {
	hw := pl.H * pl.W
	get, pre = xPlanes(x, n0, pl.C, hw)
	if in := pl.In; in != nil {
		raw, t := get, tmp[:hw]
		get = func(i, ch int) []float32 {
			in.plane(raw(i, ch), t, ch)
			return t
		}
	}
	return get, pre
}

// padPlanes writes planes get(i, ch) (m samples of c channels, h×w each)
// padded by p on every side at row pitch w+p, the p zeros between rows
// serving as the right pad of one row and the left pad of the next:
// channel ch at dst[ch·row:], sample i at offset i·(h+p)·(w+p), pixel (r,
// col) at (r+p)·(w+p) + p + col of it. It writes each float of the first
// row floats of each channel once: the rows, the zero gaps and zeros
// around. Before each plane it calls pre (nil for none) on the next one,
// to prefetch it.
func padPlanes(get func(i, ch int) []float32, pre func(i, ch int), m, c, h, w, p, row int, dst []float32) {
	pitch := w + p
	sp := (h + p) * pitch
	// With the AVX-512 loops, rows 0…h−2 go out as whole vectors whose
	// lanes past w are zero: they lay the p zeros after each row (when 16
	// − w mod 16 ≥ p), and what runs further lands on later rows or pads,
	// written after it. The last sample's must stay in its channel.
	whole := haveElem16 && useElem16 && h >= 2 && 16-w%16 >= p &&
		(m-1)*sp+p*pitch+p+(h-2)*pitch+16*(w/16+1) <= row
	for ch := range c {
		r := dst[ch*row : (ch+1)*row]
		for i := range m {
			prefetchNext(pre, i, ch, m, c)
			base := i * sp
			clear(r[base : base+p*pitch+p])
			src, d := get(i, ch), r[base+p*pitch+p:]
			if whole {
				_ = src[h*w-1]
				_ = d[(h-2)*pitch+16*(w/16+1)-1]
				padRows16(&src[0], &d[0], h-1, w, w, pitch)
				copyRows(src[(h-1)*w:], d[(h-1)*pitch:], 1, w, w, pitch)
				continue
			}
			copyRows(src, d, h, w, w, pitch)
			for k := range h - 1 {
				gap := r[base+(k+p+1)*pitch:][:p]
				for j := range gap {
					gap[j] = 0
				}
			}
		}
		clear(r[m*sp:])
	}
}

// prefetchNext calls pre (unless nil) on the plane after (i, ch) in the
// order padPlanes and pack1 copy them: samples within a channel.
func prefetchNext(pre func(i, ch int), i, ch, m, c int) {
	switch {
	case pre == nil:
	case i+1 < m:
		pre(i+1, ch)
	case ch+1 < c:
		pre(0, ch+1)
	}
}

// dySrc is where a backward pass reads the output gradient (c channels of
// hw values per sample): stored in dy, or computed plane by plane from a
// BatchNorm's input gradient bn.
type dySrc struct {
	dy    []float32
	bn    *BNInputGrad
	c, hw int
}

// plane returns the output gradient of sample n, channel ch, computing it
// into tmp (hw floats) when it is not stored.
func (d dySrc) plane(n, ch int, tmp []float32) []float32 {
	if d.bn == nil {
		return d.dy[(n*d.c+ch)*d.hw:][:d.hw]
	}
	d.bn.plane(n, ch, tmp)
	return tmp[:d.hw]
}

// pre returns a prefetch of the planes of samples n0… for padPlanes and
// pack1.
func (d dySrc) pre(n0 int) func(i, ch int) {
	return func(i, ch int) {
		off := ((n0+i)*d.c + ch) * d.hw
		if d.bn == nil {
			prefetchAt(d.dy, off, d.hw)
			return
		}
		prefetchAt(d.bn.x, off, d.hw)
		prefetchAt(d.bn.dy, off, d.hw)
	}
}

// prefetch queues on a the output gradient's sources for samples n0…n0+m.
func (d dySrc) prefetch(a *ahead, n0, m int) {
	lo, hi := n0*d.c*d.hw, (n0+m)*d.c*d.hw
	if d.bn == nil {
		a.add(d.dy[lo:hi], false)
		return
	}
	a.add(d.bn.x[lo:hi], false)
	a.add(d.bn.dy[lo:hi], false)
}

// backAhead returns the prefetches of a backward chunk (samples c0…c0+m
// of a worker's c0…n1, chw input floats each), to overlap its kernels: the
// next chunk's output gradient and input (when withX), and this chunk's
// input gradient dx (nil for none).
func backAhead(dy dySrc, x, dx []float32, withX bool, c0, m, n1, chw int) ahead {
	var pf ahead
	next := min(n1, c0+2*m) - (c0 + m)
	dy.prefetch(&pf, c0+m, next)
	if withX {
		pf.add(x[(c0+m)*chw:][:next*chw], false)
	}
	if dx != nil {
		pf.add(dx[c0*chw:][:m*chw], true)
	}
	return pf
}

// unpad3 copies the valid positions of an output tile to samples y: c
// channels of rows qv, sample i at i·sp, its h rows of w values at pitch
// wp. It adds the bias b (nil for none), applies act and records each
// plane's statistics in mom (nil for none) as those of sample n0 + i.
func unpad3(out []float32, m, c, h, w, wp, sp, qv int, b, y []float32, act clamp, mom *Moments, n0 int) {
	for i := range m {
		for ch := range c {
			unpadPlane(out[ch*qv+i*sp:], y[(i*c+ch)*h*w:(i*c+ch+1)*h*w], h, w, wp, b, ch, act, mom, n0+i)
		}
	}
}

// unpadAdd3 is unpad3 adding the valid positions into y (no bias, no
// activation, no statistics): an input gradient added to the one another
// reader of the input already wrote.
func unpadAdd3(out []float32, m, c, h, w, wp, sp, qv int, y []float32) {
	for i := range m {
		for ch := range c {
			addRows(out[ch*qv+i*sp:], y[(i*c+ch)*h*w:(i*c+ch+1)*h*w], h, w, wp, w)
		}
	}
}

// unpadPlane copies the h rows of w values at pitch wp of src to the plane
// y of (sample n, channel ch), adds the bias b[ch] (b nil for none),
// applies act and records the plane's statistics in mom (nil for none).
func unpadPlane(src, y []float32, h, w, wp int, b []float32, ch int, act clamp, mom *Moments, n int) {
	if wp == w {
		h, w, wp = 1, h*w, h*w
	}
	if haveElem16 && useElem16 && h > 0 && w > 0 {
		_ = src[(h-1)*wp+w-1]
		_ = y[h*w-1]
		// Row r may go out as whole vectors when they end inside y.
		whole := 0
		if over := h*w - roundUp(w, 16); over >= 0 {
			whole = min(h, over/w+1)
		}
		var bv float32
		if b != nil {
			bv = b[ch]
		}
		unpadRows16(&src[0], &y[0], h, w, wp, w, whole, bv, b != nil, false)
	} else {
		copyRows(src, y, h, w, wp, w)
		if b != nil {
			bv := b[ch]
			for j := range y {
				y[j] += bv
			}
		}
	}
	act.apply(y)
	if mom != nil {
		mom.addPlane(n, ch, y)
	}
}

// fwd3 computes samples n0…n1 of y = conv(x, w) + b for a plan whose input
// has C channels and output OC, from the packed weights wpk.
func (pl *convPlan) fwd3(x, wpk, b, y []float32, n0, n1 int, scratch []float32, mom *Moments) {
	g := pl.geom3()
	C, OC, H, W := pl.C, pl.OC, pl.H, pl.W
	xp := scratch[:C*g.row]
	out := scratch[(pl.C+pl.OC)*g.row:][:g.oc4*g.qv]
	tmp := scratch[(C+OC)*g.row+max(g.oc4, g.c4)*g.qv+C*g.nb3*27:][:H*W]
	winoScratch := scratch[(C+OC)*g.row+max(g.oc4, g.c4)*g.qv+C*g.nb3*27+2*H*W:]
	offs := [6]int{0, g.wp * 4, 2 * g.wp * 4}
	for c0 := n0; c0 < n1; c0 += g.m {
		m := min(g.m, n1-c0)
		pl.padInput(x, c0, m, g.row, xp, tmp)
		qv := roundUp(m*g.sp, 16)
		var pf ahead
		pf.add(x[(c0+m)*C*H*W:min(n1, c0+2*m)*C*H*W], false)
		pf.add(y[c0*OC*H*W:(c0+m)*OC*H*W], true)
		if pl.wino() {
			pf.spread((pl.winoGeom(m).nv + winoGroup - 1) / winoGroup)
			t, wg := pl.winoTiles(xp, g.row, wpk, C, OC, m, winoScratch, &pf)
			unpad3(t, m, OC, H, W, wg.p, wg.bsp, wg.blen, b, y[c0*OC*H*W:], pl.act, mom, c0)
			continue
		}
		pf.spread(tileCalls(g.oc4, qv))
		fwdTiles(&fwdS1, xp, wpk[:g.oc4*C*9], out, C, g.row, g.oc4, qv, g.qv, &offs, &pf)
		unpad3(out, m, OC, H, W, g.wp, g.sp, g.qv, b, y[c0*OC*H*W:], pl.act, mom, c0)
	}
}

// back3 computes, for samples n0…n1, the weight gradient dw (when not nil)
// and the input gradient dx (when not nil) from the weights pack3T wrote
// to wpkT, padding each chunk of x and dy once.
func (pl *convPlan) back3(x []float32, dy dySrc, wpkT, dx, dw []float32, n0, n1 int, scratch []float32) {
	g := pl.geom3()
	C, OC, H, W := pl.C, pl.OC, pl.H, pl.W
	xp := scratch[:C*g.row]
	dp := scratch[C*g.row:][:OC*g.row]
	out := scratch[(C+OC)*g.row:][:g.c4*g.qv]
	acc := scratch[(C+OC)*g.row+max(g.oc4, g.c4)*g.qv:][:C*g.nb3*27]
	tmp := scratch[(C+OC)*g.row+max(g.oc4, g.c4)*g.qv+C*g.nb3*27:][:H*W]
	plane := scratch[(C+OC)*g.row+max(g.oc4, g.c4)*g.qv+C*g.nb3*27+H*W:][:H*W]
	winoScratch := scratch[(C+OC)*g.row+max(g.oc4, g.c4)*g.qv+C*g.nb3*27+2*H*W:]
	offs := [6]int{0, g.wp * 4, 2 * g.wp * 4}
	if dw != nil {
		clear(acc)
	}
	for c0 := n0; c0 < n1; c0 += g.m {
		m := min(g.m, n1-c0)
		qv := roundUp(m*g.sp, 16)
		padPlanes(func(i, ch int) []float32 { return dy.plane(c0+i, ch, tmp) }, dy.pre(c0), m, OC, H, W, 1, g.row, dp)
		pf := backAhead(dy, x, dx, dw != nil, c0, m, n1, C*H*W)
		steps := 0
		if dw != nil {
			steps += C * g.nb3
		}
		if dx != nil && pl.wino() {
			steps += (pl.winoGeom(m).nv + winoGroup - 1) / winoGroup
		} else if dx != nil {
			steps += tileCalls(g.c4, qv)
		}
		pf.spread(steps)
		if dw != nil {
			pl.padInput(x, c0, m, g.row, xp, tmp)
			// The output gradient at position q, as the forward pass
			// numbers them, is the padded one at q + wp + 1.
			for c := range C {
				for b := range g.nb3 {
					k := min(3, OC-3*b)
					pf.step()
					wgradS1[k](&xp[c*g.row], &dp[3*b*g.row+g.wp+1], &acc[(c*g.nb3+b)*27], qv/16, g.row*4, &offs[0])
				}
			}
		}
		if dx != nil {
			// The input gradient's tile: its buffer, row pitch, sample
			// stride and channel stride.
			t, pitch, tsp, tcs := out, g.wp, g.sp, g.qv
			if pl.wino() {
				var wg winoGeom
				t, wg = pl.winoTiles(dp, g.row, wpkT, OC, C, m, winoScratch, &pf)
				pitch, tsp, tcs = wg.p, wg.bsp, wg.blen
			} else {
				fwdTiles(&fwdS1, dp, wpkT[:g.c4*OC*9], out, OC, g.row, g.c4, qv, g.qv, &offs, &pf)
			}
			switch {
			case pl.DxMap != nil && pl.DxMap.Grad == nil:
				unpad3(t, m, C, H, W, pitch, tsp, tcs, nil, dx[c0*C*H*W:], clamp{}, nil, 0)
				pl.dxLanes(x, dx, c0, m, 0, C)
			case pl.DxMap != nil:
				for i := range m {
					for ch := range C {
						d := pl.dxPlane(dx, plane, c0+i, ch)
						unpadPlane(t[ch*tcs+i*tsp:], d, H, W, pitch, nil, ch, clamp{}, nil, 0)
						pl.dxOut(x, d, dx, c0+i, ch, tmp)
					}
				}
				pl.dxLanes(x, dx, c0, m, 0, C)
			case pl.AddDx:
				unpadAdd3(t, m, C, H, W, pitch, tsp, tcs, dx[c0*C*H*W:])
			default:
				unpad3(t, m, C, H, W, pitch, tsp, tcs, nil, dx[c0*C*H*W:], clamp{}, nil, 0)
			}
		}
	}
	if dw != nil {
		reduceWgrad(acc, dw, C, OC, g.nb3)
	}
}

// reduceWgrad sets dw (OC×C×9) from the weight-gradient kernels' sums: for
// input channel c and block b of 3 output channels, 27 floats at
// acc[(c·nb3 + b)·27].
func reduceWgrad(acc, dw []float32, C, OC, nb3 int) {
	for c := range C {
		for b := range nb3 {
			a := acc[(c*nb3+b)*27:]
			for j := range min(3, OC-3*b) {
				copy(dw[((3*b+j)*C+c)*9:][:9], a[j*9:][:9])
			}
		}
	}
}
