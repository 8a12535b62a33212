package kernels

// GradMap is the backward of the elementwise op in ConvShape.In's Then (an
// activation quantizer whose output only the convolution reads, applied as
// the convolution reads its input), for the convolution's backward pass to
// apply as it writes its input gradient (ConvShape.DxMap): dx then receives
// the gradient of the op's input instead of the convolution's own, and the
// convolution's own is never stored. Grad runs on one plane at a time, in
// the cache, with t the op's input: x read through In without its Then (x
// itself when In has no BatchNormalization).
type GradMap struct {
	// Grad writes to dx the op's input gradient on one plane, from the
	// op's input t and its output gradient dy (dx may be dy), and returns
	// the plane's share of a parameter's gradient.
	Grad func(t, dy, dx []float32) float64
	// Sums receives what Grad returned for plane n·C + c (N·C floats).
	Sums []float64
	// Add adds the op's input gradient into dx instead of overwriting it.
	Add bool
}

// dxOut writes plane (n, c) of the input gradient to dx from dy, the
// convolution's own input gradient of that plane (H·W floats of the
// caller's scratch, which it may overwrite): through pl.DxMap, reading the
// plane of x through pl.In without its Then (mapped into tmp, H·W floats).
func (pl *convPlan) dxOut(x, dy, dx []float32, n, c int, tmp []float32) {
	hw := pl.H * pl.W
	o := (n*pl.C + c) * hw
	t, d := x[o:o+hw], dx[o:o+hw]
	dy = dy[:hw]
	if in := pl.In; in != nil && in.A != nil {
		m := *in
		m.Then = nil
		m.plane(t, tmp[:hw], c)
		t = tmp[:hw]
	}
	gm := pl.DxMap
	if gm.Add {
		gm.Sums[n*pl.C+c] = gm.Grad(t, dy, dy)
		addPlane(d, dy)
		return
	}
	gm.Sums[n*pl.C+c] = gm.Grad(t, dy, d)
}

// addPlane adds src into dst on the calling goroutine.
func addPlane(dst, src []float32) { add(dst, src[:len(dst)], dst) }
