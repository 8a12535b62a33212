package kernels

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Pointwise (1×1) convolutions with stride 1 or 2 and no padding have a
// direct path too. A chunk of samples is laid out channel by channel, each
// channel one row of the chunk's output positions (the input subsampled for
// stride 2), so that the convolution is a product of the OC×C weight with
// a C×(positions) matrix: the forward and input-gradient products run on
// the P1 micro-kernels (the same 4-channel × 96-position register tile as
// the 3×3 kernels, with one tap), and the weight gradient, a product with
// a long inner dimension, on kernels that keep a 4 × 6 tile of dw in
// registers over a whole chunk (4 + 6 vector loads per 24 FMAs) when
// chunks are long enough to pay for summing the tile's lanes at the end
// (wgradP1MinVectors), else on the BLAS. No lane is wasted but the last
// vector's tail.

// wgradP1MinVectors is the least number of 16-float vectors per chunk for
// which the pointwise weight gradient runs on the micro-kernels rather
// than the BLAS: with MobileNetV2's layers at 224×224 the kernels took
// 0.6–0.75 of OpenBLAS's time from 25 vectors up, the same around 10, and
// up to 1.4 times as long at 4–7 (7×7 layers with hundreds of channels,
// one sample a chunk).
const wgradP1MinVectors = 12

// isConv1x1 reports whether the pointwise direct path applies.
func (pl *convPlan) isConv1x1() bool {
	return haveConv3x3 && useConv3x3 && pl.Groups == 1 && pl.KH == 1 && pl.KW == 1 &&
		pl.SH == pl.SW && (pl.SH == 1 || pl.SH == 2) &&
		pl.PT == 0 && pl.PL == 0 && pl.PB == 0 && pl.PR == 0
}

// c1 is the geometry of the pointwise path.
type c1 struct {
	m        int // samples per chunk
	qv       int // positions per channel row: m·OH·OW rounded up to 16
	oc4, c4  int
	tileLen  int // the output tile: max(oc4, c4) rows of qv
	chunkLen int
}

func (pl *convPlan) geom1() c1 {
	g := c1{}
	g.m = max(1, min(pl.N, conv3x3L2/((pl.C+pl.OC)*pl.p*4)))
	g.qv = roundUp(g.m*pl.p, 16)
	g.oc4, g.c4 = roundUp(pl.OC, 4), roundUp(pl.C, 4)
	g.tileLen = max(g.oc4, g.c4) * g.qv
	// inputs, output gradients, the tile, a plane of input (mapped, see
	// ConvShape.In) or of output gradient, the odd columns a stride-2
	// subsampling discards, and a plane of input gradient (ConvShape.DxMap)
	g.chunkLen = (pl.C+pl.OC)*g.qv + g.tileLen + pl.H*pl.W + pl.W + pl.H*pl.W
	return g
}

// pack1 writes samples n0…n0+m of x (c channels of h×w) subsampled by
// stride s into rows of qv floats (channel ch at dst[ch·qv:], sample i at
// i·oh·ow), zero after the last sample; odd is scratch of w floats.
func pack1(get func(i, ch int) []float32, pre func(i, ch int), m, c, h, w, s, qv int, dst, odd []float32) {
	oh, ow := (h-1)/s+1, (w-1)/s+1
	for ch := range c {
		row := dst[ch*qv : (ch+1)*qv]
		for i := range m {
			prefetchNext(pre, i, ch, m, c)
			src, out := get(i, ch), row[i*oh*ow:(i+1)*oh*ow]
			if s == 1 {
				copy(out, src)
				continue
			}
			deinterleaveRows(src, out, odd, oh, w, 2*w, ow, 0)
		}
		clear(row[m*oh*ow:])
	}
}

// fwd1 computes samples n0…n1 of y = conv(x, w) + b from the weights
// packTiles wrote to wpk.
func (pl *convPlan) fwd1(x, wpk, b, y []float32, n0, n1 int, scratch []float32, mom *Moments) {
	g := pl.geom1()
	C, OC, HW, P := pl.C, pl.OC, pl.H*pl.W, pl.p
	xs := scratch[:C*g.qv]
	out := scratch[(C+OC)*g.qv:][:g.oc4*g.qv]
	tmp := scratch[(C+OC)*g.qv+g.tileLen:][:pl.H*pl.W]
	odd := scratch[(C+OC)*g.qv+g.tileLen+pl.H*pl.W:][:pl.W]
	var offs [6]int
	for c0 := n0; c0 < n1; c0 += g.m {
		m := min(g.m, n1-c0)
		get, pre := pl.inputPlanes(x, c0, tmp)
		pack1(get, pre, m, C, pl.H, pl.W, pl.SH, g.qv, xs, odd)
		qv := roundUp(m*P, 16)
		var pf ahead
		pf.add(x[(c0+m)*C*HW:min(n1, c0+2*m)*C*HW], false)
		pf.add(y[c0*OC*P:(c0+m)*OC*P], true)
		pf.spread(tileCalls(g.oc4, qv))
		fwdTiles(&fwdP1, xs, wpk[:g.oc4*C], out, C, g.qv, g.oc4, qv, g.qv, &offs, &pf)
		unpad3(out, m, OC, pl.oh, pl.ow, pl.ow, P, g.qv, b, y[c0*OC*P:], pl.act, mom, c0)
	}
}

// back1 computes, for samples n0…n1, the weight gradient dw and the input
// gradient dx (either may be nil) from the weights packTiles wrote to wpkT
// (the transposed weight).
func (pl *convPlan) back1(x []float32, dy dySrc, wpkT, dx, dw []float32, n0, n1 int, scratch []float32) {
	g := pl.geom1()
	C, OC, H, W, P := pl.C, pl.OC, pl.H, pl.W, pl.p
	xs := scratch[:C*g.qv]
	ds := scratch[C*g.qv:][:OC*g.qv]
	out := scratch[(C+OC)*g.qv:][:g.c4*g.qv]
	tmp := scratch[(C+OC)*g.qv+g.tileLen:][:H*W]
	odd := scratch[(C+OC)*g.qv+g.tileLen+H*W:][:W]
	plane := scratch[(C+OC)*g.qv+g.tileLen+H*W+W:][:H*W]
	var offs [6]int
	onKernels := g.qv/16 >= wgradP1MinVectors
	if dw != nil && onKernels {
		clear(dw)
	}
	for c0 := n0; c0 < n1; c0 += g.m {
		m := min(g.m, n1-c0)
		pack1(func(i, ch int) []float32 { return dy.plane(c0+i, ch, tmp) }, dy.pre(c0), m, OC, pl.oh, pl.ow, 1, g.qv, ds, odd)
		pf := backAhead(dy, x, dx, dw != nil, c0, m, n1, C*H*W)
		steps := 0
		if dw != nil && onKernels {
			steps += (OC + 3) / 4 * ((C + 5) / 6)
		}
		if dx != nil {
			steps += tileCalls(g.c4, roundUp(m*P, 16))
		}
		pf.spread(steps)
		if dw != nil {
			get, pre := pl.inputPlanes(x, c0, tmp)
			pack1(get, pre, m, C, H, W, pl.SH, g.qv, xs, odd)
			if onKernels {
				// Past m·P positions both rows are 0.
				nv := roundUp(m*P, 16) / 16
				for o := 0; o < OC; o += 4 {
					for c := 0; c < C; c += 6 {
						pf.step()
						wgradP1[min(4, OC-o)][min(6, C-c)](&xs[c*g.qv], &ds[o*g.qv], &dw[o*C+c], nv, g.qv*4, g.qv*4, C*4)
					}
				}
			} else {
				beta := float32(1)
				if c0 == n0 {
					beta = 0
				}
				blas32.Gemm(blas.NoTrans, blas.Trans, 1,
					general(OC, m*P, g.qv, ds), general(C, m*P, g.qv, xs), beta, general(OC, C, C, dw))
			}
		}
		if dx == nil {
			continue
		}
		fwdTiles(&fwdP1, ds, wpkT[:g.c4*OC], out, OC, g.qv, g.c4, roundUp(m*P, 16), g.qv, &offs, &pf)
		if pl.SH == 1 && pl.DxMap == nil {
			unpad3(out, m, C, H, W, W, P, g.qv, nil, dx[c0*C*P:], clamp{}, nil, 0)
			continue
		}
		if pl.SH == 1 {
			for i := range m {
				for c := range C {
					d := pl.dxPlane(dx, plane, c0+i, c)
					unpadPlane(out[c*g.qv+i*P:], d, H, W, W, nil, c, clamp{}, nil, 0)
					pl.dxOut(x, d, dx, c0+i, c, tmp)
				}
			}
			pl.dxLanes(x, dx, c0, m, 0, C)
			continue
		}
		clear(odd) // the odd columns of dx
		// Stride 2: the even rows get the values at even columns, the rest
		// of dx is 0.
		for i := range m {
			for c := range C {
				src := out[c*g.qv+i*P:][:P]
				d := dx[((c0+i)*C+c)*H*W:][:H*W]
				if pl.DxMap != nil {
					d = pl.dxPlane(dx, plane, c0+i, c)
				}
				for r := 1; r < H; r += 2 {
					clear(d[r*W : (r+1)*W])
				}
				interleaveRows(src, odd, d, (H+1)/2, W, pl.ow, 0, 2*W)
				if pl.DxMap != nil {
					pl.dxOut(x, d, dx, c0+i, c, tmp)
				}
			}
		}
		if pl.DxMap != nil {
			pl.dxLanes(x, dx, c0, m, 0, C)
		}
	}
}
