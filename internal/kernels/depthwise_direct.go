package kernels

// Depthwise convolutions (one filter per channel) with a square odd kernel
// K ≤ 7, pads of K/2 on every side, dilation 1 and stride 1 (or 2 up to
// 5×5) — MobileNets', EfficientNets' and ConvNeXt's — have a direct path
// on the CPUs and builds of the 3×3 path: AVX-512 micro-kernels generated
// by asmgen (depthwise_amd64.s) over padded copies of a chunk of samples
// of one channel.
//
// Stride 1 uses the layout of the 3×3 path with pads of p = K/2: row pitch
// W+p, the p zeros between rows serving as the right pad of one row and
// the left pad of the next, samples every (H+p)·(W+p) floats (padPlanes).
// Output position q = oh·(W+p) + ow reads tap (kh, kw) at q + kh·(W+p) +
// kw, so a chunk is one 1-D correlation, 16 positions per vector, with
// the filter's K² weights held in registers (broadcast from memory for
// 7×7). Stride 2 splits the padded input into its four phases (even/odd
// rows × even/odd columns, phases) of pitch OW+p; tap (kh, kw) then reads
// phase (kh mod 2, kw mod 2) at row kh/2, column kw/2.
//
// Backward, each channel is a task of its own over the whole batch: the
// weight-gradient kernel keeps one sum per tap in a register over a chunk
// (the output gradient read at q from its padded copy, where the pads make
// it 0 at the wasted positions); the input gradient is, at stride 1, the
// forward kernel over the padded output gradient with the flipped filter,
// and at stride 2 four such correlations, one per phase of the padded
// input with the taps of that parity, interleaved back into rows.

// dwKernel is one depthwise micro-kernel (forward form or weight-gradient
// form, see asmgen/main.go for their arguments) and the weight index kh·K
// + kw of each of its taps, in the order it takes them.
type dwKernel struct {
	fwd   func(x, w, y *float32, nv, pitch int, offs *int)
	wgrad func(x, dy, acc *float32, nv, pitch int, offs *int)
	k     []int
}

// dwKernels are the micro-kernels of one kernel size and stride: forward,
// weight gradient (in groups of at most 25 taps) and, at stride 2, the
// input gradient by phase (a, b) of the padded input, at dx[2a+b].
type dwKernels struct {
	fwd   dwKernel
	wgrad []dwKernel
	dx    [4]dwKernel
}

// dwSets holds the depthwise micro-kernels by K/2 and stride
// (depthwise_decl_amd64.go fills it in).
var dwSets [4][3]*dwKernels

// dwChunk is the size in floats a chunk's padded input (one phase of it at
// stride 2) aims for.
var dwChunk = 4096

// dwKernelSet returns the micro-kernels of the plan's direct depthwise
// path, or nil if it has none.
func (pl *convPlan) dwKernelSet() *dwKernels {
	K := pl.KH
	if !haveConv3x3 || !useConv3x3 || !pl.Depthwise() || pl.OC != pl.C || pl.KW != K || K%2 == 0 || K > 7 ||
		pl.SW != pl.SH || pl.SH > 2 || pl.DH != 1 || pl.DW != 1 ||
		pl.PT != K/2 || pl.PL != K/2 || pl.PB != K/2 || pl.PR != K/2 {
		return nil
	}
	return dwSets[K/2][pl.SH]
}

// dwg is the geometry of the direct depthwise path for one plan.
type dwg struct {
	p     int // pads, K/2
	kk    int // taps, K²
	pitch int // row pitch of the padded planes: W+p at stride 1; at stride 2 OW+p, of the phases and of the padded output gradient
	sp    int // floats per sample of a padded plane (of a phase at stride 2): (H+p)·pitch or (OH+p)·pitch
	m     int // samples per chunk
	qv    int // positions computed per chunk: m·sp rounded up to 16
	xl    int // floats of a chunk's padded input (of each phase at stride 2)
	dyl   int // floats of a chunk's padded output gradient
	nx    int // padded input buffers: 1, or 4 phases
}

func (pl *convPlan) dwGeom() dwg {
	g := dwg{p: pl.KH / 2, kk: pl.KH * pl.KW, nx: 1}
	if pl.SH == 1 {
		g.pitch = pl.W + g.p
		g.sp = (pl.H + g.p) * g.pitch
	} else {
		g.pitch = pl.ow + g.p
		g.sp = (pl.oh + g.p) * g.pitch
		g.nx = 4
	}
	g.m = max(1, min(pl.N, dwChunk/g.sp))
	g.qv = roundUp(g.m*g.sp, 16)
	// The farthest tap is 2p rows and columns away at stride 1, p at
	// stride 2 (and for the output gradient's reads at either).
	g.xl = roundUp(g.qv+2*g.p/pl.SH*(g.pitch+1), 16)
	g.dyl = roundUp(g.qv+2*g.p*(g.pitch+1), 16)
	return g
}

// dwWeights is the scratch of a worker's packed weights (at most four sets
// of 49) and weight-gradient sums (49).
const dwWeights = 4*49 + 49

// dwChunkLen is the scratch of one worker: the padded input and output
// gradient of a chunk, its output (or, at stride 2, the four phases of
// its input gradient), one plane of output gradient or of mapped input
// (ConvShape.In), one of input gradient (ConvShape.DxMap), and the packed
// weights and weight-gradient sums of a channel.
func (pl *convPlan) dwChunkLen() int {
	g := pl.dwGeom()
	return g.nx*g.xl + g.dyl + g.nx*g.qv + max(pl.oh*pl.ow, pl.H*pl.W) + pl.H*pl.W + dwWeights
}

// dwTmp is a worker's plane of output gradient or mapped input in its
// scratch scr.
func (pl *convPlan) dwTmp(g *dwg, scr []float32) []float32 {
	return scr[g.nx*g.xl+g.dyl+g.nx*g.qv:][:max(pl.oh*pl.ow, pl.H*pl.W)]
}

// pack writes the weights of the taps of k from the filter w (K² floats),
// flipped (tap k reads w[K²−1−k]) when flip is set.
func (k *dwKernel) pack(w []float32, flip bool, dst []float32) {
	for t, i := range k.k {
		if flip {
			i = len(w) - 1 - i
		}
		dst[t] = w[i]
	}
}

// dwOffsets returns the byte offsets of the kernels' pointers from the
// start of a padded input (forward and weight-gradient kernels, in) and of
// a padded output gradient (input-gradient kernels, dy).
func (pl *convPlan) dwOffsets(g *dwg) (in, dy *[4]int) {
	rows := [4]int{0, 3 * g.pitch * 4, 6 * g.pitch * 4}
	if pl.SH == 1 {
		return &rows, &rows
	}
	return &[4]int{0, g.xl * 4, 2 * g.xl * 4, 3 * g.xl * 4}, &[4]int{}
}

// dwPad writes samples n0…n0+m of channel c of x in the padded layout of
// the plan's stride into xp (through the plan's input map, into tmp, when
// it has one).
func (pl *convPlan) dwPad(g *dwg, x []float32, c, n0, m int, xp, tmp []float32) {
	H, W := pl.H, pl.W
	get, preX := pl.inputPlanes(x, n0, tmp)
	plane := func(i, _ int) []float32 { return get(i, c) }
	pre := func(i, _ int) { preX(i, c) }
	if pl.SH == 1 {
		padPlanes(plane, pre, m, 1, H, W, g.p, g.xl, xp)
		return
	}
	for i := range m {
		prefetchNext(pre, i, 0, m, 1)
		phases(plane(i, 0), H, W, g.p, g.pitch, g.sp, g.xl, xp[i*g.sp:])
	}
	for ph := range 4 {
		clear(xp[ph*g.xl+m*g.sp : (ph+1)*g.xl])
	}
}

// dwForward computes y = conv(x, w) + b on the micro-kernels ks, recording
// the moments of y in mom (nil for none; the caller finishes them). Each
// task is a chunk of samples of one channel.
func (pl *convPlan) dwForward(ks *dwKernels, x, w, b, y, scratch []float32, mom *Moments) {
	g := pl.dwGeom()
	C, P := pl.C, pl.oh*pl.ow
	nch := (pl.N + g.m - 1) / g.m
	offs, _ := pl.dwOffsets(&g)
	pl.runWorkers(pl.workers(len(scratch)), C*nch, scratch, func(t int, scr []float32) {
		c, n0 := t/nch, t%nch*g.m
		m := min(g.m, pl.N-n0)
		wk := scr[len(scr)-dwWeights:]
		ks.fwd.pack(w[c*g.kk:(c+1)*g.kk], false, wk)
		xp, out := scr[:g.nx*g.xl], scr[g.nx*g.xl:][:g.qv]
		pl.dwPad(&g, x, c, n0, m, xp, pl.dwTmp(&g, scr))
		ks.fwd.fwd(&xp[0], &wk[0], &out[0], roundUp(m*g.sp, 16)/16, g.pitch*4, &offs[0])
		for i := range m {
			n := n0 + i
			unpadPlane(out[i*g.sp:], y[(n*C+c)*P:(n*C+c+1)*P], pl.oh, pl.ow, g.pitch, b, c, pl.act, mom, n)
		}
	})
}

// dwBackward computes dx and dw (either may be nil) on the micro-kernels
// ks. Each channel is a task: it pads its output gradient once per chunk
// for both gradients.
func (pl *convPlan) dwBackward(ks *dwKernels, x, w []float32, dy dySrc, dx, dw, scratch []float32) {
	g := pl.dwGeom()
	C, H, W, OH, OW := pl.C, pl.H, pl.W, pl.oh, pl.ow
	offs, dyOffs := pl.dwOffsets(&g)
	pl.runWorkers(pl.workers(len(scratch)), C, scratch, func(c int, scr []float32) {
		xp := scr[:g.nx*g.xl]
		dp := scr[g.nx*g.xl:][:g.dyl]
		out := scr[g.nx*g.xl+g.dyl:][:g.nx*g.qv]
		tmp := pl.dwTmp(&g, scr)
		plane := scr[g.nx*g.xl+g.dyl+g.nx*g.qv+len(tmp):][:H*W]
		wc := w[c*g.kk : (c+1)*g.kk]
		// The input-gradient weights, flipped (stride 1) or by phase, and
		// the weight-gradient sums in the order of ks.wgrad's taps.
		wk := scr[len(scr)-dwWeights:][:4*49]
		acc := scr[len(scr)-49:]
		clear(acc)
		if dx != nil {
			if pl.SH == 1 {
				ks.fwd.pack(wc, true, wk)
			} else {
				for ph := range ks.dx {
					ks.dx[ph].pack(wc, false, wk[ph*49:])
				}
			}
		}
		for n0 := 0; n0 < pl.N; n0 += g.m {
			m := min(g.m, pl.N-n0)
			nv := roundUp(m*g.sp, 16) / 16
			preDy := dy.pre(n0)
			padPlanes(func(i, _ int) []float32 { return dy.plane(n0+i, c, tmp) }, func(i, _ int) { preDy(i, c) }, m, 1, OH, OW, g.p, g.dyl, dp)
			if dw != nil {
				pl.dwPad(&g, x, c, n0, m, xp, tmp)
				// The output gradient at position q, as the forward pass
				// numbers them, is the padded one at q + p·pitch + p.
				a := acc
				for _, k := range ks.wgrad {
					k.wgrad(&xp[0], &dp[g.p*g.pitch+g.p], &a[0], nv, g.pitch*4, &offs[0])
					a = a[len(k.k):]
				}
			}
			if dx == nil {
				continue
			}
			if pl.SH == 1 {
				ks.fwd.fwd(&dp[0], &wk[0], &out[0], nv, g.pitch*4, &dyOffs[0])
				for i := range m {
					n := n0 + i
					if pl.DxMap != nil {
						d := pl.dxPlane(dx, plane, n, c)
						unpadPlane(out[i*g.sp:], d, H, W, g.pitch, nil, c, clamp{}, nil, n)
						pl.dxOut(x, d, dx, n, c, tmp)
						continue
					}
					unpadPlane(out[i*g.sp:], dx[(n*C+c)*H*W:(n*C+c+1)*H*W], H, W, g.pitch, nil, c, clamp{}, nil, n)
				}
				if pl.DxMap != nil {
					pl.dxLanes(x, dx, n0, m, c, c+1)
				}
				continue
			}
			for ph := range ks.dx {
				ks.dx[ph].fwd(&dp[0], &wk[ph*49], &out[ph*g.qv], nv, g.pitch*4, &dyOffs[0])
			}
			// Row r of dx is row r+p of the padded input: phase rows of
			// parity a = (r+p) mod 2, its even columns from phase b = p
			// mod 2 and its odd ones from the other (as phases lays
			// them out).
			for i := range m {
				dxp := dx[((n0+i)*C+c)*H*W:][:H*W]
				if pl.DxMap != nil {
					dxp = pl.dxPlane(dx, plane, n0+i, c)
				}
				for r0 := range min(2, H) { // the rows of each parity in one call
					a, o := (r0+g.p)%2, i*g.sp+(r0+g.p)/2*g.pitch
					even := out[(2*a+g.p%2)*g.qv+o+g.p/2:]
					odd := out[(2*a+(g.p+1)%2)*g.qv+o+(g.p+1)/2:]
					interleaveRows(even, odd, dxp[r0*W:], (H-r0+1)/2, W, g.pitch, g.pitch, 2*W)
				}
				if pl.DxMap != nil {
					pl.dxOut(x, dxp, dx, n0+i, c, tmp)
				}
			}
			if pl.DxMap != nil {
				pl.dxLanes(x, dx, n0, m, c, c+1)
			}
		}
		if dw != nil {
			a := acc
			for _, k := range ks.wgrad {
				for t, i := range k.k {
					dw[c*g.kk+i] = a[t]
				}
				a = a[len(k.k):]
			}
		}
	})
}
