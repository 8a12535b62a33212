package kernels

// depthwiseForward is Conv2D for Groups == C: output channel oc = c·mult+j
// filters input channel c alone. Each (sample, channel) plane is one task;
// the loops run tap by tap over the whole output plane, which stays in L1.
func depthwiseForward(pl *convPlan, x, w, b, y []float32) {
	C, OC, P, HW, KK := pl.C, pl.OC, pl.p, pl.H*pl.W, pl.KH*pl.KW
	mult := OC / C
	parFor(pl.N*C, mult*KK*P, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			n, c := t/C, t%C
			xp := x[(n*C+c)*HW:][:HW]
			for j := range mult {
				oc := c*mult + j
				yp := y[(n*OC+oc)*P:][:P]
				bv := float32(0)
				if b != nil {
					bv = b[oc]
				}
				for i := range yp {
					yp[i] = bv
				}
				for k, wv := range w[oc*KK : (oc+1)*KK] {
					tp := pl.tap(k)
					for oh := tp.rlo; oh < tp.rhi; oh++ {
						axpy(wv, xp[tp.in(pl, oh):], pl.SW, yp[oh*pl.ow+tp.clo:oh*pl.ow+tp.chi])
					}
				}
			}
		}
	})
}

// depthwiseBackward computes dx and dw (either may be nil) of a depthwise
// convolution. Each input channel is one task, so the tasks write disjoint
// parts of dx and dw.
func depthwiseBackward(pl *convPlan, x, w, dy, dx, dw []float32) {
	C, OC, P, HW, KK := pl.C, pl.OC, pl.p, pl.H*pl.W, pl.KH*pl.KW
	mult := OC / C
	parFor(C, pl.N*mult*KK*P*2, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			if dw != nil {
				clear(dw[c*mult*KK : (c+1)*mult*KK])
			}
			for n := range pl.N {
				xp := x[(n*C+c)*HW:][:HW]
				var dxp []float32
				if dx != nil {
					dxp = dx[(n*C+c)*HW:][:HW]
					clear(dxp)
				}
				for j := range mult {
					oc := c*mult + j
					dyp := dy[(n*OC+oc)*P:][:P]
					for k := range KK {
						tp := pl.tap(k)
						wv := w[oc*KK+k]
						var s float32
						for oh := tp.rlo; oh < tp.rhi; oh++ {
							in, dyr := tp.in(pl, oh), dyp[oh*pl.ow+tp.clo:oh*pl.ow+tp.chi]
							if dx != nil {
								axpyTo(wv, dyr, dxp[in:], pl.SW)
							}
							if dw != nil {
								s += dotStrided(xp[in:], pl.SW, dyr)
							}
						}
						if dw != nil {
							dw[oc*KK+k] += s
						}
					}
				}
			}
		}
	})
}

// tapSpan is where kernel tap k reaches: output rows [rlo, rhi) and
// columns [clo, chi) meet the input (not the padding).
type tapSpan struct {
	kh, kw, rlo, rhi, clo, chi int
}

func (pl *convPlan) tap(k int) tapSpan {
	t := tapSpan{kh: k / pl.KW, kw: k % pl.KW}
	t.rlo, t.rhi = span(pl.oh, pl.H, pl.SH, t.kh*pl.DH-pl.PT)
	t.clo, t.chi = span(pl.ow, pl.W, pl.SW, t.kw*pl.DW-pl.PL)
	if t.clo == t.chi {
		t.rhi = t.rlo
	}
	return t
}

// in returns the plane offset of the input pixel the tap meets at output
// (oh, clo).
func (t *tapSpan) in(pl *convPlan, oh int) int {
	ih := oh*pl.SH + t.kh*pl.DH - pl.PT
	return ih*pl.W + t.clo*pl.SW + t.kw*pl.DW - pl.PL
}

// axpy adds a·x[i·stride] to y[i].
func axpy(a float32, x []float32, stride int, y []float32) {
	if stride == 1 {
		x = x[:len(y)]
		for i, v := range x {
			y[i] += a * v
		}
		return
	}
	for i := range y {
		y[i] += a * x[i*stride]
	}
}

// axpyTo adds a·y[i] to x[i·stride], the adjoint of axpy.
func axpyTo(a float32, y, x []float32, stride int) {
	if stride == 1 {
		x = x[:len(y)]
		for i, v := range y {
			x[i] += a * v
		}
		return
	}
	for i, v := range y {
		x[i*stride] += a * v
	}
}

// dotStrided returns Σ x[i·stride]·y[i].
func dotStrided(x []float32, stride int, y []float32) float32 {
	var s0, s1 float32
	if stride == 1 {
		x = x[:len(y)]
		i := 0
		for ; i+2 <= len(y); i += 2 {
			s0 += x[i] * y[i]
			s1 += x[i+1] * y[i+1]
		}
		if i < len(y) {
			s0 += x[i] * y[i]
		}
		return s0 + s1
	}
	for i, v := range y {
		s0 += x[i*stride] * v
	}
	return s0
}
