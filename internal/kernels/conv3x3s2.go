package kernels

// The 3×3 stride-2 convolution with pads of 1 (the downsampling layers of
// ResNets) takes a direct path too, by phases. Split the padded input P
// into four phase planes Q_ab[i][j] = P[2i+a][2j+b]; then tap (kh, kw) of
// output (oh, ow) reads Q at phase (kh mod 2, kw mod 2), row oh + kh/2,
// column ow + kw/2: a stride-1 correlation over each phase plane, which the
// S2 micro-kernels run with all four planes of a channel behind six
// pointers. The weight gradient reads the same layout. The input gradient
// splits the other way: each phase of the padded input gathers the taps of
// its parity from the output gradient (4, 2, 2 and 1 taps), a stride-1
// correlation again (the S2dx kernels), whose results are then interleaved
// into dx.

// isConv3x3s2 reports whether the stride-2 direct path applies.
func (pl *convPlan) isConv3x3s2() bool {
	return haveConv3x3 && useConv3x3 && pl.Groups == 1 && pl.KH == 3 && pl.KW == 3 &&
		pl.SH == 2 && pl.SW == 2 && pl.DH == 1 && pl.DW == 1 &&
		pl.PT == 1 && pl.PL == 1 && pl.PB == 1 && pl.PR == 1
}

// c3s2 is the geometry of the stride-2 path.
type c3s2 struct {
	hq, wq   int // phase plane rows and columns
	pf       int // row pitch of the phase planes (wq)
	qv       int // output positions computed per sample: OH·pf rounded up to 16
	ps       int // floats per phase plane
	pd       int // row pitch of the padded output gradient (OW+1)
	qvd      int // input-gradient positions computed per phase: hq·pd rounded up
	sd       int // floats per channel of the padded output gradient
	oc4, c4  int // channels rounded up to 4
	nb3      int // blocks of 3 output channels
	m        int // samples per weight-gradient chunk
	row, rdy int // floats per input channel and per output channel in a weight-gradient chunk
}

func (pl *convPlan) geom3s2() c3s2 {
	g := c3s2{hq: pl.H/2 + 1, wq: pl.W/2 + 1}
	g.pf = g.wq
	g.qv = roundUp(pl.oh*g.pf, 16)
	g.ps = roundUp(max(g.hq*g.pf, g.qv+g.pf+1), 16)
	g.pd = pl.ow + 1
	g.qvd = roundUp(g.hq*g.pd, 16)
	g.sd = roundUp(max((pl.oh+2)*g.pd, g.qvd+g.pd+1), 16)
	g.oc4, g.c4 = roundUp(pl.OC, 4), roundUp(pl.C, 4)
	g.nb3 = (pl.OC + 2) / 3
	g.m = max(1, min(pl.N, conv3x3L2/((4*pl.C+pl.OC)*g.ps*4)))
	g.row = 4*g.m*g.ps + roundUp(g.pf+1, 16)
	g.rdy = g.m * g.ps
	return g
}

func (pl *convPlan) chunkLen3s2() int {
	g := pl.geom3s2()
	return max(pl.C*4*g.ps+g.oc4*g.qv, pl.OC*g.sd+2*g.c4*g.qvd,
		pl.C*g.row+pl.OC*g.rdy+pl.C*g.nb3*27) + pl.oh*pl.ow
}

// s2dxTaps lists, for each phase (a, b) of the padded input, the taps kh·3
// + kw that reach it (kh ≡ a, kw ≡ b mod 2) in the order the S2dx kernels
// take them, and s2dxAt where each phase's packed weights start (in units
// of c4·OC).
var (
	s2dxTaps = [4][]int{{0, 2, 6, 8}, {1, 7}, {3, 5}, {4}}
	s2dxAt   = [4]int{0, 4, 6, 8}
)

// pack3s2T writes the weights of the four input-gradient kernels: for phase
// p, at s2dxAt[p]·c4·OC, blocks of 4 input channels of [OC][taps][4].
func (pl *convPlan) pack3s2T(w, wpk []float32) {
	C, OC := pl.C, pl.OC
	c4 := roundUp(C, 4)
	for p, taps := range s2dxTaps {
		packTiles(w, wpk[s2dxAt[p]*c4*OC:], C, OC, func(c, o int) int { return (o*C + c) * 9 }, taps)
	}
}

// phases writes one h×w channel x, padded by p on every side, as its four
// phase planes: phase (a, b) holds the padded pixels (2i+a, 2j+b) at row i,
// column j; it is written at dst[(2a+b)·stride:] at pitch pf, zero
// elsewhere in the first ps floats. Row r of x is row r+p of the padded
// input: phase a = (r+p) mod 2, plane row (r+p)/2; its even columns 2k go
// to phase b = p mod 2, column k + p/2, and its odd ones to the other
// phase, column k + (p+1)/2.
func phases(x []float32, h, w, p, pf, ps, stride int, dst []float32) {
	for ph := range 4 {
		clear(dst[ph*stride:][:ps])
	}
	// The rows of each parity a go to phases (a, ·) in one call.
	for r0 := range min(2, h) {
		a, i := (r0+p)%2, (r0+p)/2
		even := dst[(2*a+p%2)*stride+i*pf+p/2:]
		odd := dst[(2*a+(p+1)%2)*stride+i*pf+(p+1)/2:]
		deinterleaveRows(x[r0*w:], even, odd, (h-r0+1)/2, w, 2*w, pf, pf)
	}
}

// fwd3s2 computes samples n0…n1 of y = conv(x, w) + b from the weights
// pack3 wrote.
func (pl *convPlan) fwd3s2(x, wpk, b, y []float32, n0, n1 int, scratch []float32, mom *Moments) {
	g := pl.geom3s2()
	C, OC, H, W, OH, OW := pl.C, pl.OC, pl.H, pl.W, pl.oh, pl.ow
	xp, out := scratch[:C*4*g.ps], scratch[C*4*g.ps:][:g.oc4*g.qv]
	P := g.ps * 4
	offs := [6]int{0, P, 2 * P, 3 * P, g.pf * 4, P + g.pf*4}
	for n := n0; n < n1; n++ {
		for c := range C {
			prefetchAt(x, (n*C+c+1)*H*W, H*W)
			phases(x[(n*C+c)*H*W:][:H*W], H, W, 1, g.pf, g.ps, g.ps, xp[c*4*g.ps:])
		}
		fwdTiles(&fwdS2, xp, wpk[:g.oc4*C*9], out, C, 4*g.ps, g.oc4, g.qv, g.qv, &offs, nil)
		unpad3(out, 1, OC, OH, OW, g.pf, 0, g.qv, b, y[n*OC*OH*OW:], pl.act, mom, n)
	}
}

// wgrad3s2 sets dw to the weight gradient of samples n0…n1.
func (pl *convPlan) wgrad3s2(x []float32, dy dySrc, dw []float32, n0, n1 int, scratch []float32) {
	g := pl.geom3s2()
	C, OC, H, W, OH, OW := pl.C, pl.OC, pl.H, pl.W, pl.oh, pl.ow
	xr := scratch[:C*g.row]
	dr := scratch[C*g.row:][:OC*g.rdy]
	acc := scratch[C*g.row+OC*g.rdy:][:C*g.nb3*27]
	tmp := scratch[C*g.row+OC*g.rdy+C*g.nb3*27:][:OH*OW]
	clear(acc)
	for c0 := n0; c0 < n1; c0 += g.m {
		m := min(g.m, n1-c0)
		P := m * g.ps // floats per phase in this chunk
		get, pre := xPlanes(x, c0, C, H*W)
		for c := range C {
			row := xr[c*g.row : (c+1)*g.row]
			clear(row[4*P:])
			for i := range m {
				prefetchNext(pre, i, c, m, C)
				phases(get(i, c), H, W, 1, g.pf, g.ps, P, row[i*g.ps:])
			}
		}
		preDy := dy.pre(c0)
		for o := range OC {
			row := dr[o*g.rdy:]
			for i := range m {
				prefetchNext(preDy, i, o, m, OC)
				plane := row[i*g.ps : (i+1)*g.ps]
				clear(plane)
				copyRows(dy.plane(c0+i, o, tmp), plane, OH, OW, OW, g.pf)
			}
		}
		offs := [6]int{0, P * 4, 2 * P * 4, 3 * P * 4, g.pf * 4, P*4 + g.pf*4}
		nv := P / 16
		for c := range C {
			for b := range g.nb3 {
				k := min(3, OC-3*b)
				wgradS2[k](&xr[c*g.row], &dr[3*b*g.rdy], &acc[(c*g.nb3+b)*27], nv, g.rdy*4, &offs[0])
			}
		}
	}
	reduceWgrad(acc, dw, C, OC, g.nb3)
}

// dx3s2 sets dx for samples n0…n1 from the weights pack3s2T wrote.
func (pl *convPlan) dx3s2(dy dySrc, wpkT, dx []float32, n0, n1 int, scratch []float32) {
	g := pl.geom3s2()
	C, OC, H, W, OH, OW := pl.C, pl.OC, pl.H, pl.W, pl.oh, pl.ow
	dp := scratch[:OC*g.sd]
	out := [2][]float32{scratch[OC*g.sd:][:g.c4*g.qvd], scratch[OC*g.sd+g.c4*g.qvd:][:g.c4*g.qvd]}
	tmp := scratch[OC*g.sd+2*g.c4*g.qvd:][:OH*OW]
	offs := [6]int{0, g.pd * 4}
	ks := [4]*fwdKernels{&fwdS2dx00, &fwdS2dx01, &fwdS2dx10, &fwdS2dx11}
	for n := n0; n < n1; n++ {
		padPlanes(func(_, ch int) []float32 { return dy.plane(n, ch, tmp) }, dy.pre(n), 1, OC, OH, OW, 1, g.sd, dp)
		dxn := dx[n*C*H*W : (n+1)*C*H*W]
		for a := range 2 {
			// Phases (a, 0) and (a, 1) give the odd and even columns of
			// the rows of dx of parity a+1.
			for b := range 2 {
				p := 2*a + b
				wp := wpkT[s2dxAt[p]*g.c4*OC:][:len(s2dxTaps[p])*g.c4*OC]
				fwdTiles(ks[p], dp, wp, out[b], OC, g.sd, g.c4, g.qvd, g.qvd, &offs, nil)
			}
			// Phase row i gives row r = 2i + a − 1 of dx: rows r0, r0+2, …
			// from i0 = (r0 + 1 − a)/2 on.
			r0 := 1 - a
			if r0 >= H {
				continue
			}
			i0 := (r0 + 1 - a) / 2
			for c := range C {
				o := c*g.qvd + i0*g.pd
				interleaveRows(out[1][o:], out[0][o+1:], dxn[(c*H+r0)*W:], (H-r0+1)/2, W, g.pd, g.pd, 2*W)
			}
		}
	}
}
