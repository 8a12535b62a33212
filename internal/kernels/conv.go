package kernels

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// ConvShape describes a 2-D convolution (ONNX Conv) over NCHW data. The
// input is N×C×H×W, the weight OC×(C/Groups)×KH×KW, the bias OC and the
// output N×OC×OH×OW. Zero strides, dilations and Groups mean 1.
type ConvShape struct {
	N, C, H, W     int // input batch, channels, height, width
	OC, KH, KW     int // output channels, kernel height and width
	SH, SW         int // strides
	PT, PL, PB, PR int // pads: top, left, bottom, right
	DH, DW         int // dilations
	Groups         int
	// In, when set, is a per-channel map the convolution reads its input
	// through (see InputMap; the direct paths have it, MapsInput), and
	// AddDx makes the backward pass add the input gradient into dx instead
	// of overwriting it, for an input whose gradient another reader already
	// wrote (the direct 3×3 stride-1 path has it, AddsDx).
	In    *InputMap
	AddDx bool
	// DxMap, when set, is the backward of In's Then, applied to the input
	// gradient as the backward pass writes it (see GradMap; the paths with
	// In have it).
	DxMap *GradMap
}

// InputMap is what lies between a layer and the convolution that reads its
// output, applied by that convolution as it reads its input instead of in a
// pass of its own. With A set it is the BatchNormalization (with the ReLU
// fused into it) there: input channel c is read as x·A[c] + B[c], then,
// with ReLU, max(·, 0) and min(·, ReLUMax) when ReLUMax > 0 — the
// expression and rounding of the BatchNormalization's own output
// (BatchNormTrainDeferred fills it in). Then, when set, follows: an
// elementwise function y = f(x) (x may be y), such as the fake
// quantization of an activation quantizer.
type InputMap struct {
	A, B    []float32 // nil for no BatchNormalization
	ReLU    bool
	ReLUMax float32
	Then    func(x, y []float32)
}

// hi is the upper bound of the ReLU: ReLUMax, or +Inf.
func (in *InputMap) hi() float32 { return BNParams{ReLUMax: in.ReLUMax}.hi() }

// Apply writes to dst the map of x, the elements off… of NCHW data of c
// channels of hw floats per plane (x may start and end inside planes):
// what the layers mapped would have stored there.
func (in *InputMap) Apply(x []float32, off, c, hw int, dst []float32) {
	need("dst", dst, len(x))
	in.check(c)
	for i := 0; i < len(x); {
		p := (off + i) / hw
		n := min(len(x)-i, (p+1)*hw-(off+i))
		in.plane(x[i:i+n], dst[i:i+n], p%c)
		i += n
	}
}

// plane writes to dst the map of x, elements of channel ch.
func (in *InputMap) plane(x, dst []float32, ch int) {
	switch {
	case in.A != nil:
		bnAffine(x, dst, in.A[ch], in.B[ch], in.hi(), in.ReLU)
		if in.Then != nil {
			in.Then(dst, dst)
		}
	case in.Then != nil:
		in.Then(x, dst)
	default:
		copy(dst, x)
	}
}

// check panics unless the map's BatchNormalization, if any, has c channels.
func (in *InputMap) check(c int) {
	if in.A != nil || in.B != nil {
		need("map A", in.A, c)
		need("map B", in.B, c)
	}
}

// MapsInput reports whether the convolution can read its input through an
// InputMap (ConvShape.In): the direct 3×3 stride-1, pointwise and
// depthwise paths.
func (s ConvShape) MapsInput() bool {
	switch s.pathOf() {
	case via3x3, via1x1, viaDW:
		return true
	}
	return false
}

// AddsDx reports whether the convolution can add its input gradient into dx
// (ConvShape.AddDx): the direct 3×3 stride-1 path.
func (s ConvShape) AddsDx() bool { return s.pathOf() == via3x3 }

// pathOf returns the path s takes (viaBLAS when s is not valid).
func (s ConvShape) pathOf() int {
	if s.Validate() != nil {
		return viaBLAS
	}
	s.In, s.AddDx, s.DxMap = nil, false, nil
	pl := s.plan()
	return pl.path()
}

func (s ConvShape) norm() ConvShape {
	for _, p := range []*int{&s.SH, &s.SW, &s.DH, &s.DW, &s.Groups} {
		if *p == 0 {
			*p = 1
		}
	}
	return s
}

// OH returns the output height.
func (s ConvShape) OH() int {
	s = s.norm()
	return (s.H+s.PT+s.PB-s.DH*(s.KH-1)-1)/s.SH + 1
}

// OW returns the output width.
func (s ConvShape) OW() int {
	s = s.norm()
	return (s.W+s.PL+s.PR-s.DW*(s.KW-1)-1)/s.SW + 1
}

// XLen returns the length of the input, N·C·H·W.
func (s ConvShape) XLen() int { return s.N * s.C * s.H * s.W }

// WLen returns the length of the weight, OC·(C/Groups)·KH·KW.
func (s ConvShape) WLen() int { return s.OC * s.C / s.norm().Groups * s.KH * s.KW }

// YLen returns the length of the output, N·OC·OH·OW.
func (s ConvShape) YLen() int { return s.N * s.OC * s.OH() * s.OW() }

// MACs returns the multiply-adds of the forward pass for the whole batch.
func (s ConvShape) MACs() int { return s.N * s.OH() * s.OW() * s.WLen() }

// Depthwise reports whether the convolution takes the direct depthwise
// path: Groups == C > 1 and OC a multiple of C.
func (s ConvShape) Depthwise() bool {
	s = s.norm()
	return s.Groups > 1 && s.Groups == s.C && s.OC%s.C == 0
}

// Validate reports whether the shape describes a convolution with a
// non-empty output.
func (s ConvShape) Validate() error {
	s = s.norm()
	switch {
	case s.N < 1 || s.C < 1 || s.H < 1 || s.W < 1 || s.OC < 1 || s.KH < 1 || s.KW < 1:
		return fmt.Errorf("conv: sizes must be positive: %+v", s)
	case s.SH < 1 || s.SW < 1 || s.DH < 1 || s.DW < 1 || s.Groups < 1:
		return errors.New("conv: strides, dilations and groups must be positive")
	case s.PT < 0 || s.PL < 0 || s.PB < 0 || s.PR < 0:
		return errors.New("conv: pads must not be negative")
	case s.C%s.Groups != 0 || s.OC%s.Groups != 0:
		return fmt.Errorf("conv: groups %d must divide channels %d and output channels %d", s.Groups, s.C, s.OC)
	case s.OH() < 1 || s.OW() < 1:
		return fmt.Errorf("conv: kernel %dx%d (dilation %dx%d) is larger than the padded input %dx%d",
			s.KH, s.KW, s.DH, s.DW, s.H+s.PT+s.PB, s.W+s.PL+s.PR)
	case s.In != nil && (s.In.A != nil || s.In.B != nil) && (len(s.In.A) != s.C || len(s.In.B) != s.C):
		return fmt.Errorf("conv: input map of %d and %d channels for %d", len(s.In.A), len(s.In.B), s.C)
	}
	return nil
}

// convMinCols is the least number of output pixels a chunk of samples
// gives the GEMM; layers with smaller images batch several samples into one
// column matrix. On ResNet-20's layers anything from 1 to 2048 is within
// noise on one thread; with two batch workers 512 was among the best.
var convMinCols = 512

// convDxConv enables the stride-1 input gradient by convolution (tests and
// benchmarks turn it off to compare).
var convDxConv = true

// convPlan is a normalized, validated ConvShape with derived sizes.
type convPlan struct {
	ConvShape
	oh, ow, p int  // output height, width and pixels per channel
	ocg, kg   int  // output channels and im2col rows per group
	nb        int  // samples per GEMM chunk
	direct    bool // 1×1, stride 1, no pad: each sample is its own column matrix
	serial    bool // inside a batch worker: no further goroutines
	// dxConv: stride 1 and pads within the kernel's reach, so that dx is
	// computed as the convolution of dy with the flipped, transposed kernel
	// (the plan tp) instead of a GEMM into columns followed by col2im:
	// im2col copies runs where col2im adds them, and the GEMM's inner
	// dimension is OC·KH·KW instead of OC. On ResNet-20's layers that was
	// 1.1–1.2× faster at 16 and 32 channels (1.4× on a loaded machine) and
	// even at 64.
	dxConv bool
	act    clamp // applied to the output (Conv2DReLU)
}

func (s ConvShape) plan() convPlan {
	if err := s.Validate(); err != nil {
		panic("kernels: " + err.Error())
	}
	s = s.norm()
	pl := convPlan{ConvShape: s, oh: s.OH(), ow: s.OW()}
	pl.p = pl.oh * pl.ow
	pl.ocg = s.OC / s.Groups
	pl.kg = s.C / s.Groups * s.KH * s.KW
	pl.nb = min(s.N, max(1, (convMinCols+pl.p-1)/pl.p))
	pl.direct = s.KH == 1 && s.KW == 1 && s.SH == 1 && s.SW == 1 &&
		s.PT == 0 && s.PL == 0 && s.PB == 0 && s.PR == 0
	rh, rw := s.DH*(s.KH-1), s.DW*(s.KW-1)
	pl.dxConv = convDxConv && !pl.direct && !pl.Depthwise() && s.SH == 1 && s.SW == 1 &&
		s.PT <= rh && s.PB <= rh && s.PL <= rw && s.PR <= rw
	switch path := pl.path(); {
	case s.In != nil && path != via3x3 && path != via1x1 && path != viaDW:
		panic("kernels: an input map (ConvShape.In) on a convolution without a direct path")
	case s.AddDx && path != via3x3:
		panic("kernels: an added input gradient (ConvShape.AddDx) on a convolution without the direct 3×3 path")
	case s.DxMap != nil && path != via3x3 && path != via1x1 && path != viaDW:
		panic("kernels: an input-gradient map (ConvShape.DxMap) on a convolution without a direct path")
	case s.DxMap != nil && s.AddDx:
		panic("kernels: ConvShape.AddDx with DxMap (GradMap.Add adds)")
	}
	return pl
}

// tp returns the plan of the convolution that maps dy to dx when dxConv
// is set: input OC×OH×OW, output C×H×W, flipped pads, same chunking.
func (pl *convPlan) tp() convPlan {
	rh, rw := pl.DH*(pl.KH-1), pl.DW*(pl.KW-1)
	t := pl.ConvShape
	t.In, t.AddDx, t.DxMap = nil, false, nil
	t.C, t.H, t.W, t.OC = pl.OC, pl.oh, pl.ow, pl.C
	t.PT, t.PB, t.PL, t.PR = rh-pl.PT, rh-pl.PB, rw-pl.PL, rw-pl.PR
	tp := t.plan()
	tp.nb, tp.serial, tp.dxConv = pl.nb, pl.serial, false
	return tp
}

// sizes returns the scratch lengths of the column matrix and of the
// output (or output-gradient) staging matrix of one chunk.
func (pl *convPlan) sizes() (col, stage int) {
	if pl.Depthwise() {
		return 0, 0
	}
	cols := pl.nb * pl.p
	if !pl.direct || pl.nb > 1 {
		col = pl.C * pl.KH * pl.KW * cols
	}
	if pl.nb > 1 {
		stage = pl.OC * cols
	}
	if pl.dxConv {
		tp := pl.tp()
		c, s := tp.sizes()
		col, stage = max(col, c), max(stage, s)
	}
	return col, stage
}

// Which of the paths with our own micro-kernels a plan takes.
const (
	viaBLAS  = iota // none: im2col (or depthwise) and BLAS
	via3x3          // 3×3 stride 1 (conv3x3.go)
	via3x3s2        // 3×3 stride 2 (conv3x3s2.go)
	via1x1          // pointwise, stride 1 or 2 (conv1x1.go)
	viaDW           // depthwise (depthwise_direct.go)
)

// path returns the plan's micro-kernel path, or viaBLAS.
func (pl *convPlan) path() int {
	switch {
	case pl.isConv3x3():
		return via3x3
	case pl.isConv3x3s2():
		return via3x3s2
	case pl.isConv1x1():
		return via1x1
	case pl.dwKernelSet() != nil:
		return viaDW
	}
	return viaBLAS
}

// chunkLen is the scratch one batch worker needs.
func (pl *convPlan) chunkLen() int {
	switch pl.path() {
	case via3x3:
		return pl.chunkLen3()
	case via3x3s2:
		return pl.chunkLen3s2()
	case via1x1:
		return pl.geom1().chunkLen
	case viaDW:
		return pl.dwChunkLen()
	}
	c, o := pl.sizes()
	return c + o
}

// batchWorkers returns how many goroutines split the batch. When
// splitByCaller (OpenBLAS with one thread, or gonum) the batch is split over
// GOMAXPROCS workers, each running its whole pipeline (im2col, GEMM,
// col2im) on its own samples: on two cores that scaled 1.7–2.0×. Otherwise
// there is one pipeline whose GEMMs the BLAS threads and whose data
// movement parFor spreads; with OpenBLAS's threads that measured 2–5×
// slower, as its idle workers spin on the core the goroutines need.
func (pl *convPlan) batchWorkers() int {
	if (pl.Depthwise() && pl.path() != viaDW) || !splitByCaller() {
		return 1
	}
	return max(1, min(runtime.GOMAXPROCS(0), pl.N))
}

// Scratch layout: the transposed kernel when dxConv, then one chunk per
// batch worker, then a weight-gradient partial per batch worker but the
// first.

func (pl *convPlan) preLen() int {
	switch pl.path() {
	case via3x3, via3x3s2:
		return pl.preLen3()
	case via1x1:
		return max(roundUp(pl.OC, 4)*pl.C, roundUp(pl.C, 4)*pl.OC)
	}
	if pl.dxConv {
		return pl.WLen()
	}
	return 0
}

func (pl *convPlan) scratchFor(w int) int {
	switch pl.path() {
	case viaBLAS:
		return pl.preLen() + w*pl.chunkLen() + (w-1)*pl.WLen()
	case viaDW:
		return w * pl.chunkLen()
	}
	nc, _ := pl.sched()
	return pl.preLen() + w*pl.chunkLen() + (nc-1)*pl.WLen()
}

// maxParts bounds the weight-gradient partials the direct paths keep, in
// floats.
const maxParts = 4 << 20

// sched returns how the direct paths cut the batch: nc chunks of mc
// samples (the last one shorter), which runChunks hands to the batch
// workers as they become free, so a worker that starts late or is slowed
// down by another process does not hold the others up. Each chunk's weight
// gradient is a partial of its own, and the partials are summed in chunk
// order: the result depends neither on which worker took which chunk nor
// on the number of workers. Chunks hold at most the path's cache-sized
// chunk and about a sixteenth of the batch, and grow when needed to keep
// the partials within maxParts.
func (pl *convPlan) sched() (nc, mc int) {
	var m int
	switch pl.path() {
	case via3x3:
		m = pl.geom3().m
	case via3x3s2:
		m = pl.geom3s2().m
	default:
		m = pl.geom1().m
	}
	mc = max(1, min(m, pl.N/16))
	if WL := pl.WLen(); WL*((pl.N+mc-1)/mc-1) > maxParts {
		p := maxParts/WL + 1 // chunks the partials allow
		mc = (pl.N + p - 1) / p
	}
	return (pl.N + mc - 1) / mc, mc
}

// runChunks runs f over the nc chunks of mc samples of the batch, handed
// out in order to W workers (the caller and W−1 goroutines) as they become
// free; f gets the chunk index, its samples and the worker's scratch.
func (pl *convPlan) runChunks(W, nc, mc int, chunks []float32, f func(k, n0, n1 int, scr []float32)) {
	pl.runWorkers(W, nc, chunks, func(k int, scr []float32) { f(k, k*mc, min((k+1)*mc, pl.N), scr) })
}

// runWorkers runs f over the tasks [0, n), handed out in order to W workers
// (the caller and W−1 goroutines) as they become free; f gets the task and
// the worker's scratch, chunkLen floats of chunks.
func (pl *convPlan) runWorkers(W, n int, chunks []float32, f func(k int, scr []float32)) {
	cl := pl.chunkLen()
	var next atomic.Int64
	work := func(w int) {
		scr := chunks[w*cl : (w+1)*cl]
		for {
			k := int(next.Add(1) - 1)
			if k >= n {
				return
			}
			f(k, scr)
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < W; w++ {
		wg.Go(func() { work(w) })
	}
	work(0)
	wg.Wait()
}

// ScratchLen returns the scratch length Conv2D and Conv2DBackward need.
// On the im2col path: per batch worker, the im2col matrix of a chunk of
// samples (sized so that the GEMM sees at least 512 columns) and, when a
// chunk holds several samples, a staging matrix for its output; batch
// workers after the first also keep a weight-gradient partial, and
// stride-1 convolutions a transposed copy of the weight. On the direct
// paths: packed weights, per batch worker the padded copies of a chunk and
// an output tile, and a weight-gradient partial per chunk but the first.
// It provides for GOMAXPROCS batch workers (as of the call) whatever
// blas.SplitByCaller says, so blas.SetThreads may still change afterwards;
// a shorter scratch (at least one worker's share) just means fewer
// workers. The direct depthwise path needs a padded chunk per worker;
// depthwise convolutions without it and single-sample 1×1 convolutions on
// the im2col path need none.
func (s ConvShape) ScratchLen() int {
	pl := s.plan()
	if pl.Depthwise() && pl.path() == viaBLAS {
		return 0
	}
	return pl.scratchFor(max(1, min(runtime.GOMAXPROCS(0), pl.N)))
}

func (pl *convPlan) check(x, w, b, y, scratch []float32) {
	need("x", x, pl.XLen())
	need("w", w, pl.WLen())
	needOpt("b", b, pl.OC)
	needOpt("y", y, pl.YLen())
	if c := pl.scratchFor(1); len(scratch) < c {
		panic(fmt.Sprintf("kernels: len(scratch) = %d, want at least %d", len(scratch), c))
	}
}

// general views a row-major rows×cols matrix with the given stride at the
// start of data.
func general(rows, cols, stride int, data []float32) blas32.General {
	return blas32.General{Rows: rows, Cols: cols, Stride: stride, Data: data}
}

// workers returns how many batch workers a scratch of length n affords.
func (pl *convPlan) workers(n int) int {
	W := pl.batchWorkers()
	for W > 1 && pl.scratchFor(W) > n {
		W--
	}
	return W
}

// split runs f over the batch: on W contiguous sample ranges in parallel,
// each with its own scratch chunk (taken from chunks), or once over the
// whole batch if W = 1.
func (pl *convPlan) split(W int, chunks []float32, f func(serial bool, w, n0, n1 int, scr []float32)) {
	cl := pl.chunkLen()
	if W == 1 {
		f(pl.serial, 0, 0, pl.N, chunks[:cl])
		return
	}
	var wg sync.WaitGroup
	for i := 1; i < W; i++ {
		wg.Go(func() { f(true, i, i*pl.N/W, (i+1)*pl.N/W, chunks[i*cl:(i+1)*cl]) })
	}
	f(true, 0, 0, pl.N/W, chunks[:cl])
	wg.Wait()
}

// par is parFor, or a plain call inside a batch worker.
func (pl *convPlan) par(n, cost int, fn func(lo, hi int)) {
	if !pl.serial {
		parFor(n, cost, fn)
	} else if n > 0 {
		fn(0, n)
	}
}

// gemm is blas32.Gemm, split over goroutines by gemm outside batch workers.
func (pl *convPlan) gemm(tA, tB blas.Transpose, a, b blas32.General, beta float32, c blas32.General) {
	if pl.serial {
		blas32.Gemm(tA, tB, 1, a, b, beta, c)
	} else {
		gemm(tA, tB, a, b, beta, c)
	}
}

// Conv2D computes y = conv(x, w) + b. b may be nil. The general case is
// im2col followed by one GEMM per group and chunk of samples; depthwise
// convolutions use direct kernels (AVX-512 ones where they apply, see
// depthwise_direct.go, else plain loops).
func Conv2D(s ConvShape, x, w, b, y, scratch []float32) { conv2D(s.plan(), x, w, b, y, scratch, nil) }

// conv2D is Conv2D, gathering the output's moments into m (when not nil)
// on the direct paths.
func conv2D(pl convPlan, x, w, b, y, scratch []float32, m *Moments) {
	pl.check(x, w, b, y, scratch)
	path := pl.path()
	switch {
	case path == viaDW:
		pl.dwForward(pl.dwKernelSet(), x, w, b, y, scratch, m)
		if m != nil {
			m.finish()
		}
		return
	case pl.Depthwise():
		depthwiseForward(&pl, x, w, b, y)
		if pl.act.on {
			Clip(y, y, 0, pl.act.hi)
		}
		return
	}
	W := pl.workers(len(scratch))
	if path != viaBLAS {
		wpk := scratch[:pl.preLen()]
		if path == via1x1 {
			C := pl.C
			packTiles(w, wpk, pl.OC, C, func(o, c int) int { return o*C + c }, taps1)
		} else {
			pl.pack3(w, wpk)
		}
		nc, mc := pl.sched()
		pl.runChunks(W, nc, mc, scratch[len(wpk):], func(_, n0, n1 int, scr []float32) {
			switch path {
			case via3x3:
				pl.fwd3(x, wpk, b, y, n0, n1, scr, m)
			case via3x3s2:
				pl.fwd3s2(x, wpk, b, y, n0, n1, scr, m)
			case via1x1:
				pl.fwd1(x, wpk, b, y, n0, n1, scr, m)
			}
		})
		if m != nil {
			m.finish()
		}
		return
	}
	pl.split(W, scratch[pl.preLen():], func(serial bool, _, n0, n1 int, scr []float32) {
		q := pl
		q.serial = serial
		q.forward(x, w, b, y, n0, n1, scr)
	})
}

// forward computes samples n0…n1 of Conv2D.
func (pl *convPlan) forward(x, w, b, y []float32, n0, n1 int, scratch []float32) {
	colLen, _ := pl.sizes()
	col, stage := scratch[:colLen], scratch[colLen:]
	G, C, OC, P, kg, ocg := pl.Groups, pl.C, pl.OC, pl.p, pl.kg, pl.ocg
	for c0 := n0; c0 < n1; c0 += pl.nb {
		m := min(pl.nb, n1-c0)
		cols := m * P
		xc := x[c0*C*pl.H*pl.W:]
		if pl.nb == 1 && pl.direct {
			col = xc
		} else {
			pl.im2col(xc, m, col[:C*pl.KH*pl.KW*cols])
		}
		out := y[c0*OC*P:]
		if pl.nb > 1 {
			out = stage
		}
		for g := range G {
			pl.gemm(blas.NoTrans, blas.NoTrans,
				general(ocg, kg, kg, w[g*ocg*kg:]),
				general(kg, cols, cols, col[g*kg*cols:]),
				0, general(ocg, cols, cols, out[g*ocg*cols:]))
		}
		if pl.nb > 1 {
			pl.scatter(stage, y, b, c0, m)
		} else if b != nil {
			pl.par(OC, P, func(lo, hi int) {
				for oc := lo; oc < hi; oc++ {
					bv := b[oc]
					row := out[oc*P : oc*P+P]
					for i := range row {
						row[i] += bv
					}
				}
			})
		}
		if pl.act.on {
			pl.par(m*OC, P, func(lo, hi int) { pl.act.apply(y[(c0*OC+lo)*P : (c0*OC+hi)*P]) })
		}
	}
}

// Conv2DReLU is Conv2D followed by a ReLU clipped above at hi (+Inf: a
// plain ReLU, 6: ReLU6), applied to each chunk of y as it is written
// instead of in a pass of its own.
func Conv2DReLU(s ConvShape, x, w, b, y, scratch []float32, hi float32) {
	pl := s.plan()
	pl.act = clamp{on: true, hi: hi}
	conv2D(pl, x, w, b, y, scratch, nil)
}

// Conv2DBackwardReLU is Conv2DBackward for Conv2DReLU: y is its output and
// dy the gradient of y, which it overwrites with the convolution's output
// gradient (dy where 0 < y < hi, else 0), computing db from each plane as
// it masks it.
func Conv2DBackwardReLU(s ConvShape, x, w, y, dy, dx, dw, db, scratch []float32, hi float32) {
	pl := s.plan()
	need("y", y, pl.YLen())
	need("dy", dy, pl.YLen())
	needOpt("db", db, pl.OC)
	n, c, hw := pl.N, pl.OC, pl.p
	parFor(c, 2*n*hw, func(c0, c1 int) {
		for ch := c0; ch < c1; ch++ {
			var s float64
			for i := range n {
				o := (i*c + ch) * hw
				g := dy[o : o+hw]
				if math.IsInf(float64(hi), 1) {
					reluBackward(y[o:o+hw], g, g)
				} else {
					clipBackward(y[o:o+hw], g, g, 0, hi)
				}
				if db != nil {
					s += float64(sum32(g))
				}
			}
			if db != nil {
				db[ch] = float32(s)
			}
		}
	})
	pl.backward(x, w, dySrc{dy: dy, c: pl.OC, hw: pl.p}, dx, dw, nil, scratch)
}

// Conv2DBackward computes the gradients of Conv2D's input (dx), weight (dw)
// and bias (db) from the output gradient dy; any of them may be nil. The
// columns of x are recomputed rather than kept from the forward pass. For
// stride 1, dx is computed as the convolution of dy with the flipped
// kernel; otherwise as a GEMM into columns followed by col2im.
func Conv2DBackward(s ConvShape, x, w, dy, dx, dw, db, scratch []float32) {
	pl := s.plan()
	need("dy", dy, pl.YLen())
	if db != nil {
		biasGrad(pl.N, pl.OC, pl.p, dy, db)
	}
	pl.backward(x, w, dySrc{dy: dy, c: pl.OC, hw: pl.p}, dx, dw, db, scratch)
}

// Direct reports whether the convolution takes one of the direct paths (on
// CPUs with AVX-512: 3×3 with pads of 1 and stride 1 or 2, and 1×1 without
// pads with stride 1 or 2, one group; depthwise K×K with pads of K/2, K
// odd up to 7, stride 1, or 2 up to 5×5), which Conv2DBackwardBN requires.
func (s ConvShape) Direct() bool {
	if s.Validate() != nil {
		return false
	}
	pl := s.plan()
	return pl.path() != viaBLAS
}

// Conv2DBackwardBN is Conv2DBackward for a convolution without bias whose
// output gradient is the input gradient g of the BatchNorm it feeds,
// computed plane by plane as the backward pass reads it instead of stored.
// s must be Direct.
func Conv2DBackwardBN(s ConvShape, x, w []float32, g *BNInputGrad, dx, dw, scratch []float32) {
	pl := s.plan()
	if pl.path() == viaBLAS {
		panic("kernels: Conv2DBackwardBN on a convolution without a direct path")
	}
	if g.p.C != pl.OC || g.p.N != pl.N || g.p.HW != pl.p {
		panic("kernels: BNInputGrad of the wrong shape")
	}
	pl.backward(x, w, dySrc{bn: g, c: pl.OC, hw: pl.p}, dx, dw, nil, scratch)
}

// backward computes dx and dw (either may be nil) from the output gradient dy.
func (pl *convPlan) backward(x, w []float32, dy dySrc, dx, dw, db, scratch []float32) {
	pl.check(x, w, db, nil, scratch)
	needOpt("dx", dx, pl.XLen())
	needOpt("dw", dw, pl.WLen())
	if dx == nil && dw == nil {
		return
	}
	if gm := pl.DxMap; gm != nil {
		if dx == nil {
			panic("kernels: an input-gradient map (ConvShape.DxMap) without dx")
		}
		if gm.Grad != nil && len(gm.Sums) < pl.N*pl.C {
			panic(fmt.Sprintf("kernels: DxMap sums has %d floats, want %d", len(gm.Sums), pl.N*pl.C))
		}
		if b := gm.BN; b != nil {
			switch {
			case !BNLanesAvailable():
				panic("kernels: BatchNorm lanes (GradMap.BN) without the AVX-512 loops")
			case gm.Add || b.P.N != pl.N || b.P.C != pl.C || b.P.HW != pl.H*pl.W || len(b.Lanes) < 32*pl.N*pl.C:
				panic("kernels: BatchNorm lanes (GradMap.BN) of the wrong shape, or added")
			}
		}
	}
	if dy.bn != nil && pl.path() == viaBLAS {
		panic("kernels: lazy output gradient on a convolution without a direct path")
	}
	if pl.path() == viaDW {
		pl.dwBackward(pl.dwKernelSet(), x, w, dy, dx, dw, scratch)
		return
	}
	if pl.Depthwise() {
		depthwiseBackward(pl, x, w, dy.dy, dx, dw)
		return
	}
	W, pre, cl, WL := pl.workers(len(scratch)), pl.preLen(), pl.chunkLen(), pl.WLen()
	chunks, parts := scratch[pre:], scratch[pre+W*cl:]
	if path := pl.path(); path != viaBLAS {
		wpkT := scratch[:pre]
		if dx != nil {
			switch path {
			case via3x3:
				pl.pack3T(w, wpkT)
			case via3x3s2:
				pl.pack3s2T(w, wpkT)
			case via1x1:
				C := pl.C
				packTiles(w, wpkT, C, pl.OC, func(c, o int) int { return o*C + c }, taps1)
			}
		}
		nc, mc := pl.sched()
		pl.runChunks(W, nc, mc, chunks, func(k, n0, n1 int, scr []float32) {
			dwi := dw
			if dw != nil && k > 0 {
				dwi = parts[(k-1)*WL : k*WL]
			}
			switch path {
			case via3x3:
				pl.back3(x, dy, wpkT, dx, dwi, n0, n1, scr)
			case via1x1:
				pl.back1(x, dy, wpkT, dx, dwi, n0, n1, scr)
			case via3x3s2:
				if dw != nil {
					pl.wgrad3s2(x, dy, dwi, n0, n1, scr)
				}
				if dx != nil {
					pl.dx3s2(dy, wpkT, dx, n0, n1, scr)
				}
			}
		})
		pl.sumParts(dw, parts, nc)
		return
	}
	var tp convPlan
	var wt []float32
	if dx != nil && pl.dxConv {
		tp, wt = pl.tp(), scratch[:pre]
		pl.flipKernel(w, wt)
	}
	pl.split(W, chunks, func(serial bool, i, n0, n1 int, scr []float32) {
		q := *pl
		q.serial = serial
		if dw != nil {
			dwi := dw
			if i > 0 {
				dwi = parts[(i-1)*WL : i*WL]
			}
			q.weightGrad(x, dy.dy, dwi, n0, n1, scr)
		}
		if dx != nil && pl.dxConv {
			t := tp
			t.serial = serial
			t.forward(dy.dy, wt, nil, dx, n0, n1, scr)
		} else if dx != nil {
			q.inputGrad(w, dy.dy, dx, n0, n1, scr)
		}
	})
	pl.sumParts(dw, parts, W)
}

// sumParts adds the weight-gradient partials 1…W−1 (of batch workers, or
// of chunks on the direct paths), in order, into dw (nil when not wanted).
func (pl *convPlan) sumParts(dw, parts []float32, W int) {
	WL := pl.WLen()
	if dw != nil && W > 1 {
		parFor(WL, W, func(lo, hi int) {
			for i := 1; i < W; i++ {
				add(dw[lo:hi], parts[(i-1)*WL+lo:(i-1)*WL+hi], dw[lo:hi])
			}
		})
	}
}

// flipKernel writes to wt the weight of the convolution that maps dy to dx:
// wt[c][j][kh][kw] = w[g·OCg + j][c − g·Cg][KH−1−kh][KW−1−kw] for input
// channel c of group g.
func (pl *convPlan) flipKernel(w, wt []float32) {
	KK, cg, ocg := pl.KH*pl.KW, pl.C/pl.Groups, pl.ocg
	parFor(pl.C, ocg*KK, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			g, ic := c/cg, c%cg
			for j := range ocg {
				src := w[((g*ocg+j)*cg+ic)*KK:][:KK]
				dst := wt[(c*ocg+j)*KK:][:KK]
				for k, v := range src {
					dst[KK-1-k] = v
				}
			}
		}
	})
}

// weightGrad sets dw to the weight gradient of samples n0…n1.
func (pl *convPlan) weightGrad(x, dy, dw []float32, n0, n1 int, scratch []float32) {
	colLen, _ := pl.sizes()
	col, stage := scratch[:colLen], scratch[colLen:]
	G, C, P, kg, ocg := pl.Groups, pl.C, pl.p, pl.kg, pl.ocg
	HW := pl.H * pl.W
	for c0 := n0; c0 < n1; c0 += pl.nb {
		m := min(pl.nb, n1-c0)
		cols := m * P
		dyc := pl.dyChunk(dy, stage, c0, m)
		xcol := col
		if pl.nb == 1 && pl.direct {
			xcol = x[c0*C*HW:]
		} else {
			pl.im2col(x[c0*C*HW:], m, col[:C*pl.KH*pl.KW*cols])
		}
		beta := float32(1)
		if c0 == n0 {
			beta = 0
		}
		for g := range G {
			pl.gemm(blas.NoTrans, blas.Trans,
				general(ocg, cols, cols, dyc[g*ocg*cols:]),
				general(kg, cols, cols, xcol[g*kg*cols:]),
				beta, general(ocg, kg, kg, dw[g*ocg*kg:]))
		}
	}
}

// inputGrad sets dx for samples n0…n1 by a GEMM into columns (straight
// into dx for a 1×1 convolution) and col2im.
func (pl *convPlan) inputGrad(w, dy, dx []float32, n0, n1 int, scratch []float32) {
	colLen, _ := pl.sizes()
	col, stage := scratch[:colLen], scratch[colLen:]
	G, C, P, kg, ocg := pl.Groups, pl.C, pl.p, pl.kg, pl.ocg
	HW := pl.H * pl.W
	for c0 := n0; c0 < n1; c0 += pl.nb {
		m := min(pl.nb, n1-c0)
		cols := m * P
		dyc := pl.dyChunk(dy, stage, c0, m)
		direct := pl.nb == 1 && pl.direct
		dcol := col
		if direct {
			dcol = dx[c0*C*HW:]
		}
		for g := range G {
			pl.gemm(blas.Trans, blas.NoTrans,
				general(ocg, kg, kg, w[g*ocg*kg:]),
				general(ocg, cols, cols, dyc[g*ocg*cols:]),
				0, general(kg, cols, cols, dcol[g*kg*cols:]))
		}
		if !direct {
			pl.col2im(col[:C*pl.KH*pl.KW*cols], m, dx[c0*C*HW:])
		}
	}
}

// biasGrad sets db[c] to the sum of dy over the batch and the hw pixels of
// channel c.
func biasGrad(n, c, hw int, dy, db []float32) {
	parFor(c, n*hw, func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			var s float64
			for i := range n {
				s += float64(sum32(dy[(i*c+ch)*hw : (i*c+ch+1)*hw]))
			}
			db[ch] = float32(s)
		}
	})
}

// sum32 sums v with four partial sums.
func sum32(v []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(v); i += 4 {
		s0 += v[i]
		s1 += v[i+1]
		s2 += v[i+2]
		s3 += v[i+3]
	}
	for ; i < len(v); i++ {
		s0 += v[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// im2col writes the column matrix of m samples starting at x: row
// (c, kh, kw), column (sample, oh, ow) holds the input pixel that kernel tap
// meets at that output position, or 0 in the padding.
func (pl *convPlan) im2col(x []float32, m int, col []float32) {
	K, P, HW := pl.C*pl.KH*pl.KW, pl.p, pl.H*pl.W
	cols := m * P
	pl.par(K*m, P, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			r, i := t/m, t%m
			c, k := r/(pl.KH*pl.KW), r%(pl.KH*pl.KW)
			pl.im2colRow(x[(i*pl.C+c)*HW:][:HW], k/pl.KW, k%pl.KW, col[r*cols+i*P:][:P])
		}
	})
}

// im2colRow fills dst (OH·OW) with the pixels of one input plane seen by
// kernel tap (kh, kw).
func (pl *convPlan) im2colRow(src []float32, kh, kw int, dst []float32) {
	OW, SW := pl.ow, pl.SW
	rlo, rhi := span(pl.oh, pl.H, pl.SH, kh*pl.DH-pl.PT)
	lo, hi := span(OW, pl.W, SW, kw*pl.DW-pl.PL)
	if lo == hi {
		rhi = rlo
	}
	clear(dst[:rlo*OW])
	clear(dst[rhi*OW : pl.oh*OW])
	iw0 := lo*SW + kw*pl.DW - pl.PL
	if rlo < rhi && SW == 1 && pl.SH == 1 && OW == pl.W {
		// Output rows and input rows have the same length and step by one,
		// so the taps of all rows are one run of the input: copy it whole,
		// then zero the columns that wrapped around from neighboring rows.
		ih0 := rlo + kh*pl.DH - pl.PT
		copy(dst[rlo*OW+lo:(rhi-1)*OW+hi], src[ih0*pl.W+iw0:])
		for oh := rlo; oh < rhi; oh++ {
			row := dst[oh*OW : oh*OW+OW]
			for j := 0; j < lo; j++ {
				row[j] = 0
			}
			for j := hi; j < OW; j++ {
				row[j] = 0
			}
		}
		return
	}
	n := hi - lo
	for oh := rlo; oh < rhi; oh++ {
		row := dst[oh*OW : oh*OW+OW]
		ih := oh*pl.SH + kh*pl.DH - pl.PT
		for j := 0; j < lo; j++ {
			row[j] = 0
		}
		for j := hi; j < OW; j++ {
			row[j] = 0
		}
		srow := src[ih*pl.W+iw0:]
		out := row[lo:hi]
		if SW == 1 {
			if n >= 16 { // copy's call overhead pays off for longer runs
				copy(out, srow)
			} else {
				srow = srow[:len(out)]
				for j, v := range srow {
					out[j] = v
				}
			}
		} else {
			for j := range out {
				out[j] = srow[j*SW]
			}
		}
	}
}

// col2im is the adjoint of im2col: it sets the m input planes starting at
// dx to the sums of their column-matrix entries.
func (pl *convPlan) col2im(col []float32, m int, dx []float32) {
	P, HW, KK := pl.p, pl.H*pl.W, pl.KH*pl.KW
	cols := m * P
	pl.par(m*pl.C, KK*P, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			i, c := t/pl.C, t%pl.C
			plane := dx[(i*pl.C+c)*HW:][:HW]
			clear(plane)
			for k := range KK {
				kh, kw := k/pl.KW, k%pl.KW
				src := col[(c*KK+k)*cols+i*P:][:P]
				pl.col2imRow(src, kh, kw, plane)
			}
		}
	})
}

// col2imRow adds the column-matrix row of tap (kh, kw) into the input
// plane dst.
func (pl *convPlan) col2imRow(src []float32, kh, kw int, dst []float32) {
	OW, SW := pl.ow, pl.SW
	lo, hi := span(OW, pl.W, SW, kw*pl.DW-pl.PL)
	if lo == hi {
		return
	}
	iw0 := lo*SW + kw*pl.DW - pl.PL
	for oh := range pl.oh {
		ih := oh*pl.SH + kh*pl.DH - pl.PT
		if ih < 0 || ih >= pl.H {
			continue
		}
		in := src[oh*OW+lo : oh*OW+hi]
		drow := dst[ih*pl.W : ih*pl.W+pl.W]
		if SW == 1 {
			d := drow[iw0 : iw0+len(in)]
			for j, v := range in {
				d[j] += v
			}
		} else {
			for j, v := range in {
				drow[iw0+j*SW] += v
			}
		}
	}
}

// scatter copies the OC×(m·P) chunk output stage into y (samples n0…n0+m)
// and adds the bias.
func (pl *convPlan) scatter(stage, y, b []float32, n0, m int) {
	OC, P := pl.OC, pl.p
	cols := m * P
	pl.par(m*OC, P, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			i, oc := t/OC, t%OC
			src := stage[oc*cols+i*P:][:P]
			dst := y[((n0+i)*OC+oc)*P:][:P]
			if b == nil {
				copy(dst, src)
				continue
			}
			bv := b[oc]
			for j, v := range src {
				dst[j] = v + bv
			}
		}
	})
}

// gather is the inverse of scatter without the bias: it copies samples
// n0…n0+m of dy into the OC×(m·P) matrix stage.
func (pl *convPlan) gather(dy, stage []float32, n0, m int) {
	OC, P := pl.OC, pl.p
	cols := m * P
	pl.par(m*OC, P, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			i, oc := t/OC, t%OC
			copy(stage[oc*cols+i*P:][:P], dy[((n0+i)*OC+oc)*P:][:P])
		}
	})
}

// dyChunk returns the output gradient of samples c0…c0+m as the GEMM reads it: in place for
// one sample per chunk, gathered into stage (OC × m·P) otherwise.
func (pl *convPlan) dyChunk(dy, stage []float32, c0, m int) []float32 {
	if pl.nb > 1 {
		pl.gather(dy, stage, c0, m)
		return stage
	}
	return dy[c0*pl.OC*pl.p:]
}
