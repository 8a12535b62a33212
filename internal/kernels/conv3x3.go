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
// wasted work. The forward kernel holds a tile of 4 output channels × up to
// 6 vectors in registers and runs over all input channels; the
// weight-gradient kernel holds 3 output channels × 9 taps and runs over a
// whole chunk of samples laid out one after another (the output gradient in
// the same layout without the offset, zero at the wasted positions). The
// input gradient is the forward kernel on the output gradient with the
// flipped, transposed kernel.

// haveConv3x3 is set by init where the micro-kernels can run (amd64 with
// AVX-512F, not built with purego); useConv3x3 lets tests and benchmarks
// turn the path off to compare.
var (
	haveConv3x3 bool
	useConv3x3  = true

	// The micro-kernels by family (conv3x3_decl_amd64.go fills them in):
	// stride 1; stride 2; the four phases of the stride-2 input gradient.
	fwdS1, fwdS2, fwdS2dx00, fwdS2dx01, fwdS2dx10, fwdS2dx11 fwdKernels
	wgradS1, wgradS2                                         wgradKernels
)

// fwdKernels are one family's forward kernels by the number of 16-wide
// vectors of output positions they cover (1…6); wgradKernels its
// weight-gradient kernels by the number of output channels (1…3). Their
// arguments are described in asmgen/main.go.
type (
	fwdKernels   [7]func(x, w, y *float32, nc, xcs, ycs int, offs *int)
	wgradKernels [4]func(x, dy, acc *float32, nv, dycs int, offs *int)
)

// fwdTiles runs a forward family over qv output positions (a multiple of
// 16) for oc4 output channels: x, w and out as the kernels take them, with
// nc input channels of xcs floats and output rows of qv floats.
func fwdTiles(k *fwdKernels, x, wpk, out []float32, nc, xcs, oc4, qv int, offs *[6]int) {
	ntap := len(wpk) / (oc4 * nc)
	for q := 0; q < qv; q += 6 * 16 {
		nv := min(6, (qv-q)/16)
		f := k[nv]
		for ob := 0; ob < oc4; ob += 4 {
			f(&x[q], &wpk[ob*nc*ntap], &out[ob*qv+q], nc, xcs*4, qv*4, &offs[0])
		}
	}
}

// conv3x3L2 is the working set a weight-gradient chunk aims for, in bytes
// (tests lower it to exercise chunking).
var conv3x3L2 = 512 << 10

// c3 is the geometry of the direct 3×3 path for one plan.
type c3 struct {
	wp  int // row pitch of the padded layout, W+1
	qv  int // output positions computed per sample: H·wp rounded up to 16
	s   int // floats per sample in the padded layout, a multiple of 16
	oc4 int // output channels rounded up to 4
	c4  int // input channels rounded up to 4 (the output channels of dx)
	nb3 int // blocks of 3 output channels in the weight gradient
	m   int // samples per weight-gradient chunk
	row int // floats per channel in a weight-gradient chunk
}

// isConv3x3 reports whether the direct path applies to the plan.
func (pl *convPlan) isConv3x3() bool {
	return haveConv3x3 && useConv3x3 && pl.Groups == 1 && pl.KH == 3 && pl.KW == 3 &&
		pl.SH == 1 && pl.SW == 1 && pl.DH == 1 && pl.DW == 1 &&
		pl.PT == 1 && pl.PL == 1 && pl.PB == 1 && pl.PR == 1
}

func (pl *convPlan) geom3() c3 {
	g := c3{wp: pl.W + 1}
	g.qv = roundUp(pl.H*g.wp, 16)
	g.s = roundUp(max((pl.H+2)*g.wp, g.qv+2*g.wp+2), 16)
	g.oc4, g.c4 = roundUp(pl.OC, 4), roundUp(pl.C, 4)
	g.nb3 = (pl.OC + 2) / 3
	g.m = max(1, min(pl.N, conv3x3L2/((pl.C+pl.OC)*g.s*4)))
	g.row = g.m*g.s + roundUp(2*g.wp+2, 16)
	return g
}

func roundUp(n, k int) int { return (n + k - 1) / k * k }

// chunkLen3 is the scratch of one batch worker: the largest of the forward
// (padded sample and output tile), the input gradient (the same with the
// roles of C and OC swapped) and the weight gradient (a chunk of padded
// inputs and output gradients, and the kernel's vector accumulators).
func (pl *convPlan) chunkLen3() int {
	g := pl.geom3()
	return max(pl.C*g.s+g.oc4*g.qv, pl.OC*g.s+g.c4*g.qv,
		(pl.C+pl.OC)*g.row+pl.C*g.nb3*27*16)
}

// preLen3 is the shared scratch for the packed weights.
func (pl *convPlan) preLen3() int {
	g := pl.geom3()
	return max(g.oc4*pl.C, g.c4*pl.OC) * 9
}

// pack3 writes the weights of the forward kernel: for each block of 4
// output channels, [C][9][4] floats, zero beyond OC.
func (pl *convPlan) pack3(w, wpk []float32) {
	C, OC := pl.C, pl.OC
	g := pl.geom3()
	wpk = wpk[:g.oc4*C*9]
	for oc := range g.oc4 {
		b, j := oc/4, oc%4
		for c := range C {
			d := wpk[(b*C+c)*36+j:]
			if oc >= OC {
				for t := range 9 {
					d[t*4] = 0
				}
				continue
			}
			src := w[(oc*C+c)*9:][:9]
			for t, v := range src {
				d[t*4] = v
			}
		}
	}
}

// pack3T writes the weights of the input-gradient kernel (a convolution
// from OC to C channels with the flipped kernel): for each block of 4 input
// channels c, [OC][9][4] floats holding w[o][c][8−t].
func (pl *convPlan) pack3T(w, wpk []float32) {
	C, OC := pl.C, pl.OC
	g := pl.geom3()
	wpk = wpk[:g.c4*OC*9]
	for c := range g.c4 {
		b, j := c/4, c%4
		for o := range OC {
			d := wpk[(b*OC+o)*36+j:]
			if c >= C {
				for t := range 9 {
					d[t*4] = 0
				}
				continue
			}
			src := w[(o*C+c)*9:][:9]
			for t, v := range src {
				d[(8-t)*4] = v
			}
		}
	}
}

// pad3 copies the c channels of one H×W sample x into the padded layout at
// dst (c planes of s floats, offset off = wp+1 for inputs; 0 lays out an
// output gradient at its output positions), writing each float once: the
// rows, the zero gap after each row, and zeros before and after.
func pad3(x []float32, c, h, w, wp, s, off int, dst []float32) {
	for ch := range c {
		plane := dst[ch*s : (ch+1)*s]
		clear(plane[:off])
		copyRows(x[ch*h*w:], plane[off:], h, w, w, wp)
		for r := range h {
			plane[off+r*wp+w] = 0
		}
		clear(plane[off+h*wp:])
	}
}

// fwd3 computes samples n0…n1 of y = conv(x, w) + b for a plan whose input
// has C channels and output OC, from the packed weights wpk.
func (pl *convPlan) fwd3(x, wpk, b, y []float32, n0, n1 int, scratch []float32) {
	g := pl.geom3()
	C, OC, H, W := pl.C, pl.OC, pl.H, pl.W
	xp, out := scratch[:C*g.s], scratch[C*g.s:C*g.s+g.oc4*g.qv]
	offs := [6]int{0, g.wp * 4, 2 * g.wp * 4}
	for n := n0; n < n1; n++ {
		pad3(x[n*C*H*W:], C, H, W, g.wp, g.s, g.wp+1, xp)
		fwdTiles(&fwdS1, xp, wpk[:g.oc4*C*9], out, C, g.s, g.oc4, g.qv, &offs)
		yn := y[n*OC*H*W:]
		for oc := range OC {
			yc := yn[oc*H*W : (oc+1)*H*W]
			copyRows(out[oc*g.qv:], yc, H, W, g.wp, W)
			if b != nil {
				bv := b[oc]
				for i := range yc {
					yc[i] += bv
				}
			}
		}
	}
}

// wgrad3 sets dw to the weight gradient of samples n0…n1.
func (pl *convPlan) wgrad3(x, dy, dw []float32, n0, n1 int, scratch []float32) {
	g := pl.geom3()
	C, OC, H, W := pl.C, pl.OC, pl.H, pl.W
	xr := scratch[:C*g.row]
	dr := scratch[C*g.row : (C+OC)*g.row]
	acc := scratch[(C+OC)*g.row:][:C*g.nb3*27*16]
	clear(acc)
	offs := [6]int{0, g.wp * 4, 2 * g.wp * 4}
	for c0 := n0; c0 < n1; c0 += g.m {
		m := min(g.m, n1-c0)
		for c := range C {
			row := xr[c*g.row : (c+1)*g.row]
			clear(row[m*g.s:])
			for i := range m {
				pad3(x[((c0+i)*C+c)*H*W:], 1, H, W, g.wp, g.s, g.wp+1, row[i*g.s:])
			}
		}
		for o := range OC {
			row := dr[o*g.row : (o+1)*g.row]
			for i := range m {
				pad3(dy[((c0+i)*OC+o)*H*W:], 1, H, W, g.wp, g.s, 0, row[i*g.s:])
			}
		}
		nv := m * g.s / 16
		for c := range C {
			for b := range g.nb3 {
				k := min(3, OC-3*b)
				wgradS1[k](&xr[c*g.row], &dr[3*b*g.row], &acc[(c*g.nb3+b)*27*16], nv, g.row*4, &offs[0])
			}
		}
	}
	reduceWgrad(acc, dw, C, OC, g.nb3)
}

// reduceWgrad sets dw (OC×C×9) to the lane sums of the weight-gradient
// kernels' accumulators: for input channel c and block b of 3 output
// channels, 27 vectors of 16 at acc[(c·nb3 + b)·27·16].
func reduceWgrad(acc, dw []float32, C, OC, nb3 int) {
	for c := range C {
		for b := range nb3 {
			a := acc[(c*nb3+b)*27*16:]
			for j := range min(3, OC-3*b) {
				for t := range 9 {
					dw[((3*b+j)*C+c)*9+t] = sum32(a[(j*9+t)*16:][:16])
				}
			}
		}
	}
}

// dx3 sets dx for samples n0…n1: the forward kernel applied to dy with the
// weights pack3T wrote to wpkT.
func (pl *convPlan) dx3(dy, wpkT, dx []float32, n0, n1 int, scratch []float32) {
	t := *pl
	t.C, t.OC = pl.OC, pl.C
	t.fwd3(dy, wpkT, nil, dx, n0, n1, scratch)
}
