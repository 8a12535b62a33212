package kernels

import "sync"

// The 3×3 stride-1 path computes its products by Winograd's F(2×2, 3×3)
// algorithm where the CPU has the AVX-512 kernels (winograd_amd64.s): each
// 2×2 block of outputs (a tile) comes from the 4×4 block of padded input
// around it as Aᵀ[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]A, 16 multiplications per input and
// output channel instead of the direct path's 36, the transforms costing
// additions only.
//
// It reads the padded layout of conv3x3.go (row pitch wp = W+1, samples
// every sp = (H+1)·wp floats) and works in three steps:
//
//   - winoRows applies Bᵀ down the columns of each tile row (two output
//     rows, four input rows) of each sample, into four rows per channel of
//     P columns (W+1 when W is odd, W+2 when even: an even number, of which
//     those past W−1 only feed outputs never read), each split into its
//     even and odd columns (8 streams per channel, spr = P/2 floats per
//     tile row), so that tile s's columns are the streams' floats s and
//     s+1;
//   - per vector of 16 consecutive tiles (tile s of the chunk, tile rows
//     following each other), winoCols applies B across the columns; the
//     products over the input channels (winoMul) give the 16 transformed
//     outputs of up to three vectors for 16 output channels at a time; and
//     winoOut applies A and stores each tile's 2×2 outputs to the output
//     tile, at pitch P with 2·ntr rows per sample (ntr = ⌈H/2⌉);
//   - unpad3 copies the output tile out as it does the direct path's.
//
// Each sample's tiles start at its own first row, so its outputs do not
// depend on the chunk it is computed in: the same bits for any batch split.
// The results differ from the direct path's in the last bits (the
// transformed weights and inputs are rounded).

// useWinograd lets tests and benchmarks turn the Winograd products off, to
// compare them with the direct path's; winoMinC is the fewest input and
// output channels they are used for, winoMaxCC the most input times output
// channels (tests lower and raise them to reach every shape); winoMinTiles
// the fewest tiles a chunk holds (geom3 takes more samples per chunk than
// the direct path's working set asks for when a sample has fewer), so that
// the transformed weights read for each group of vectors feed enough
// products.
//
// Measured on one core, forward alone, batch 128 or 32 (BenchmarkWinograd):
// 1→16 and 8→8 channels ran up to 3× slower than the direct path on an AMD
// Zen 5 host and 1.1× faster to 2× slower on a Zen 4 (the transforms
// outweigh products of so few channels); 16 to 64 channels 1.1–1.5×
// faster on both, 64 at 56×56 and 128 at 28×28 1.4–1.8×. With the weights
// in one contiguous run per block of 16 output channels and at least 192
// tiles per chunk, 256 at 14×14 ran 1.9× faster and 512 at 7×7 1.35× on
// the Zen 4 (before those two changes 1.6× and 0.6× there, and on the Zen
// 5 no faster and 1.7× slower).
var (
	useWinograd  = true
	winoMinC     = 16
	winoMaxCC    = 512 * 512
	winoMinTiles = 192
)

// winoSet holds the Winograd kernels (winograd_decl_amd64.go fills it in);
// mul[nv][n/4] computes nv vectors of tiles for n output channels.
type winoSet struct {
	rows func(x, t *float32, nrow, ncol, wp, tp, ts int, idx *uint32)
	cols func(t, u *float32, nc, ts, ucs, uijs int)
	mul  [4][3]func(u, w, m *float32, nc, wcs int)
	out  func(m, b *float32, noc, bcs, pb int, segs *winoSeg, nseg int, idx *uint32, mijs int)
}

// winoGroup is the most vectors of tiles the products take at once: each
// weight they load then feeds that many products.
const winoGroup = 3

var winoK winoSet

// winoIdx holds the permutations winoRows and winoOut use (and
// maxPool3s2x16 the first two): even lanes, odd lanes, then the two halves
// of an interleave.
var winoIdx = func() (t [64]uint32) {
	for i := range 16 {
		t[i], t[16+i] = uint32(2*i), uint32(2*i+1)
		t[32+i] = uint32(i/2 + 16*(i%2))
		t[48+i] = uint32(8 + i/2 + 16*(i%2))
	}
	return t
}()

// winoSeg is one tile row's share of a vector of 16 tiles as winoOut
// stores it: the lanes of the two interleaved halves (two bits per tile)
// and the byte offset of the tiles' top-left outputs from the output
// channel's start.
type winoSeg struct {
	lo, hi uint16
	_      uint32
	off    int
}

// winoGeom is the Winograd geometry of a chunk of m samples.
type winoGeom struct {
	p    int // columns of a transformed row, and pitch of the output tile
	spr  int // tiles per tile row, p/2
	ntr  int // tile rows per sample
	nv   int // vectors of 16 tiles
	ncol int // blocks of 32 columns per tile row
	tlen int // floats per stream (half of a transformed row: its even or odd columns)
	bsp  int // floats per sample of the output tile
	blen int // floats per channel of the output tile
}

func (pl *convPlan) winoGeom(m int) winoGeom {
	g := winoGeom{p: pl.W + 1, ntr: (pl.H + 1) / 2}
	if pl.W%2 == 0 {
		g.p = pl.W + 2
	}
	g.spr = g.p / 2
	g.nv = (m*g.ntr*g.spr + 15) / 16
	g.ncol = (g.p + 31) / 32
	// winoRows writes whole vectors past each row's end (the next row
	// overwrites them); winoCols reads floats s…s+16 of a vector from s.
	g.tlen = roundUp(max(m*g.ntr*g.spr+16*g.ncol, 16*g.nv+17), 16)
	g.bsp = 2 * g.ntr * g.p
	g.blen = roundUp(m*g.bsp+g.p+80, 16)
	return g
}

// wino reports whether the plan's 3×3 stride-1 products go through the
// Winograd kernels.
func (pl *convPlan) wino() bool {
	return pl.isConv3x3() && useWinograd && winoK.out != nil &&
		min(pl.C, pl.OC) >= winoMinC && pl.C*pl.OC <= winoMaxCC
}

// winoLen is the Winograd scratch of one batch worker of chunks of m
// samples: the streams, a group of vectors' transformed inputs and
// products, and the output tile.
func (pl *convPlan) winoLen(m int) int {
	g := pl.winoGeom(m)
	nc := max(pl.C, pl.OC)
	return nc*8*g.tlen + 16*nc*16*winoGroup + 16*winoGroup*16*16 + roundUp(nc, 4)*g.blen
}

// packWino writes the transformed weights G·k·Gᵀ of the 3×3 kernels of
// nout output by nin input channels: kernel (o, i) at w[at(o, i)…], taps in
// the order taps lists, to wt[winoAt(o/16, ij, nin, i) + o%16], zero for
// the output channels past nout; input channels in parallel.
//
// The weights are in blocks of 16 output channels, each block's 16
// positions × nin input channels one after the other, so that the products
// for a block read one contiguous run of 64·nin bytes per position (with
// all output channels of a position in a row, as first written, 512
// channels at 7×7 ran at the pace of the TLB: a new page every two loads).
func packWino(w, wt []float32, nout, nin int, at func(o, i int) int, taps []int) {
	parFor(nin, 100*nout, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if r := nout % 16; r != 0 {
				for ij := range 16 {
					a := winoAt(nout/16, ij, nin, i)
					clear(wt[a+r : a+16])
				}
			}
			packWino1(w, wt, i, nout, nin, at, taps)
		}
	})
}

// winoAt is where packWino puts the 16 output channels of block b,
// position ij and input channel i, of nin input channels.
func winoAt(b, ij, nin, i int) int { return ((b*16+ij)*nin + i) * 16 }

// winoWeightsLen is the length of the transformed weights of nout output
// by nin input channels.
func winoWeightsLen(nout, nin int) int { return 16 * nin * roundUp(nout, 16) }

// packWino1 is packWino for input channel i.
func packWino1(w, wt []float32, i, nout, nin int, at func(o, i int) int, taps []int) {
	for o := range nout {
		b := at(o, i)
		var k [9]float32
		for t := range 9 {
			k[t] = w[b+taps[t]]
		}
		// Rows: G·k (4×3), then columns: (G·k)·Gᵀ (4×4).
		var r [4][3]float32
		for c := range 3 {
			k0, k1, k2 := k[c], k[3+c], k[6+c]
			r[0][c] = k0
			r[1][c] = (k0 + k1 + k2) * 0.5
			r[2][c] = (k0 - k1 + k2) * 0.5
			r[3][c] = k2
		}
		for a := range 4 {
			k0, k1, k2 := r[a][0], r[a][1], r[a][2]
			row := [4]float32{k0, (k0 + k1 + k2) * 0.5, (k0 - k1 + k2) * 0.5, k2}
			for j, v := range row {
				wt[winoAt(o/16, a*4+j, nin, i)+o%16] = v
			}
		}
	}
}

// winoSegKey names the segments of a chunk's vectors.
type winoSegKey struct{ p, ntr, m int }

// winoSegCache holds the segments by geometry: they depend only on it.
var winoSegCache sync.Map

// winoSegs returns the segments winoOut stores each vector of 16 tiles by
// (those of vector v are segs[first[v]:first[v+1]]), for m samples of ntr
// tile rows of p/2 tiles.
func winoSegs(p, ntr, m int) (segs []winoSeg, first []int) {
	type entry struct {
		segs  []winoSeg
		first []int
	}
	key := winoSegKey{p, ntr, m}
	if e, ok := winoSegCache.Load(key); ok {
		return e.(entry).segs, e.(entry).first
	}
	spr, n := p/2, m*ntr*p/2
	for s0 := 0; s0 < n; s0 += 16 {
		first = append(first, len(segs))
		for l := 0; l < 16 && s0+l < n; {
			k := (s0 + l) / spr // tile row
			var bits uint32
			for ; l < 16 && s0+l < n && (s0+l)/spr == k; l++ {
				bits |= 3 << (2 * l)
			}
			segs = append(segs, winoSeg{lo: uint16(bits), hi: uint16(bits >> 16), off: (2*s0 + k*p) * 4})
		}
	}
	first = append(first, len(segs))
	winoSegCache.Store(key, entry{segs, first})
	return segs, first
}

// winoTiles computes the products of a chunk of m samples in the padded
// layout xp (nc channels of row floats, the plan's wp and sp) with the
// transformed weights wt of noc output channels, into the output tile of
// scratch ws (winoLen floats), which it returns with the chunk's geometry.
// It takes one step of pf (nil for none) per vector of tiles.
func (pl *convPlan) winoTiles(xp []float32, row int, wt []float32, nc, noc, m int, ws []float32, pf *ahead) ([]float32, winoGeom) {
	g := pl.winoGeom(m)
	wp := pl.W + 1
	sp := (pl.H + 1) * wp
	nmax := max(pl.C, pl.OC)
	t := ws[:nmax*8*g.tlen]
	u := ws[len(t):][:16*nmax*16*winoGroup]
	mm := ws[len(t)+len(u):][:16*winoGroup*16*16]
	b := ws[len(t)+len(u)+len(mm):]
	ts := g.tlen
	end := m * g.ntr * g.spr
	for c := range nc {
		for i := range m {
			winoK.rows(&xp[c*row+i*sp], &t[c*8*ts+i*g.ntr*g.spr], g.ntr, g.ncol, wp*4, g.spr*4, ts*4, &winoIdx[0])
		}
		// The last tile of a row reads the next row's first column, the
		// left pad (0); past the chunk's last row it must be 0 too.
		for k := range 8 {
			clear(t[(c*8+k)*ts+end : (c*8+k+1)*ts])
		}
	}
	segs, first := winoSegs(g.p, g.ntr, m)
	op := roundUp(noc, 4)
	_ = b[op*g.blen-1]
	_ = wt[winoWeightsLen(noc, nc)-1]
	// Vectors v0…v0+nv−1 at a time: their transformed inputs at u, vector
	// v of position ij and channel c at ((ij·nc + c)·nv + v)·16; their
	// products at mm, channel k of vector v at ((ij·nv + v)·16 + k)·16,
	// 16 output channels at a time.
	for v0 := 0; v0 < g.nv; v0 += winoGroup {
		nv := min(winoGroup, g.nv-v0)
		pf.step()
		for v := range nv {
			winoK.cols(&t[16*(v0+v)], &u[16*v], nc, ts*4, 64*nv, 64*nv*nc)
		}
		for ob := 0; ob < op; ob += 16 {
			n := min(16, op-ob)
			for k := 0; k < n; k += 8 {
				winoK.mul[nv][min(8, n-k)/4](&u[0], &wt[ob*16*nc+k], &mm[16*k], nc, 64)
			}
			for v := range nv {
				sg := segs[first[v0+v]:first[v0+v+1]]
				winoK.out(&mm[256*v], &b[ob*g.blen], n, g.blen*4, g.p*4, &sg[0], len(sg), &winoIdx[0], 1024*nv)
			}
		}
	}
	return b, g
}
