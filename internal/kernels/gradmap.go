package kernels

// GradMap is the backward of the elementwise op in ConvShape.In's Then (an
// activation quantizer whose output only the convolution reads, applied as
// the convolution reads its input), for the convolution's backward pass to
// apply as it writes its input gradient (ConvShape.DxMap): dx then receives
// the gradient of the op's input instead of the convolution's own, and the
// convolution's own is never stored. Grad runs on one plane at a time, in
// the cache, with t the op's input: x read through In without its Then (x
// itself when In has no BatchNormalization).
//
// With Grad nil there is no op: dx is the convolution's own input gradient,
// as without a map, and the map is there for BN.
type GradMap struct {
	// Grad writes to dx the op's input gradient on one plane, from the
	// op's input t and its output gradient dy (dx may be dy), and returns
	// the plane's share of a parameter's gradient.
	Grad func(t, dy, dx []float32) float64
	// Sums receives what Grad returned for plane n·C + c (N·C floats).
	Sums []float64
	// Add adds the op's input gradient into dx instead of overwriting it.
	Add bool
	// BN, when set, records the sums of the backward of the training
	// BatchNormalization whose output dx is the gradient of (In's
	// BatchNormalization), from each plane of x and dx (see BNLanes).
	BN *BNLanes
}

// BNLanes holds, for each plane n·C + c of a training BatchNormalization's
// input x and output gradient g (masked by its fused ReLU), the sums its
// backward needs, Σg and Σg·(x − μ), as the AVX-512 loop's 16 float32 lanes
// of each: 32 floats at Lanes[32·(n·C + c):]. BatchNormBackwardLanes adds
// them up in the order its own loop does, so a Conv that records them as it
// writes g (GradMap.BN) saves the BatchNormalization a pass over x and g
// and changes no bit. Only where BNLanesAvailable.
type BNLanes struct {
	P          BNParams
	Mean, A, B []float32 // per channel: the batch mean and the map (InputMap's A and B)
	Lanes      []float32 // 32·N·C
}

// BNLanesAvailable reports whether BatchNormBackwardLanes can run: the
// sums' AVX-512 loop is in this build and on this CPU.
func BNLanesAvailable() bool { return haveElem16 && useElem16 }

// record records the lanes of the planes of samples n0…n0+m, channels
// c0…c1, of x and g (N×C×P.HW each).
func (l *BNLanes) record(x, g []float32, n0, m, c0, c1 int) {
	C, hw := l.P.C, l.P.HW
	for c := c0; c < c1; c++ {
		o := (n0*C + c) * hw
		_ = x[o+(m-1)*C*hw+hw-1]
		_ = g[o+(m-1)*C*hw+hw-1]
		_ = l.Lanes[((n0+m-1)*C+c)*32+31]
		gradLanesPlanes(&x[o], &g[o], hw, m, C*hw, &[4]float32{l.Mean[c], l.A[c], l.B[c], l.P.hi()}, l.P.ReLU,
			&l.Lanes[(n0*C+c)*32], C*32)
	}
}

// dxOut writes plane (n, c) of the input gradient to dx from dy, the
// convolution's own input gradient of that plane (H·W floats of the
// caller's scratch, which it may overwrite, or, when pl.DxMap applies no op,
// the plane of dx itself): through pl.DxMap, reading the plane of x through
// pl.In without its Then (mapped into tmp, H·W floats).
func (pl *convPlan) dxOut(x, dy, dx []float32, n, c int, tmp []float32) {
	hw := pl.H * pl.W
	o := (n*pl.C + c) * hw
	t, d := x[o:o+hw], dx[o:o+hw]
	dy = dy[:hw]
	if in := pl.In; in != nil && in.A != nil && pl.DxMap.Grad != nil {
		m := *in
		m.Then = nil
		m.plane(t, tmp[:hw], c)
		t = tmp[:hw]
	}
	gm := pl.DxMap
	switch {
	case gm.Grad == nil:
		if &dy[0] != &d[0] { // the caller may have written the plane of dx itself
			copy(d, dy)
		}
	case gm.Add:
		gm.Sums[n*pl.C+c] = gm.Grad(t, dy, dy)
		addPlane(d, dy)
	default:
		gm.Sums[n*pl.C+c] = gm.Grad(t, dy, d)
	}
}

// dxLanes records the BatchNormalization sums of pl.DxMap.BN, if any, for
// the planes of samples n0…n0+m, channels c0…c1, once dxOut wrote them.
func (pl *convPlan) dxLanes(x, dx []float32, n0, m, c0, c1 int) {
	if b := pl.DxMap.BN; b != nil {
		b.record(x, dx, n0, m, c0, c1)
	}
}

// addPlane adds src into dst on the calling goroutine.
func addPlane(dst, src []float32) { add(dst, src[:len(dst)], dst) }

// dxPlane returns where the caller writes the convolution's own input
// gradient of plane (n, c) before calling dxOut: scratch, or the plane of
// dx when pl.DxMap applies no op.
func (pl *convPlan) dxPlane(dx, scratch []float32, n, c int) []float32 {
	hw := pl.H * pl.W
	if pl.DxMap.Grad == nil {
		return dx[(n*pl.C+c)*hw:][:hw]
	}
	return scratch[:hw]
}
