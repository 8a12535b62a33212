package kernels

import (
	"errors"
	"fmt"
	"math"
)

// PoolShape describes a 2-D max or average pooling (ONNX MaxPool,
// AveragePool) over NCHW data: input N×C×H×W, output N×C×OH×OW, floor
// rounding of the output size. Zero strides mean 1. Padded pixels never win
// a max; an average divides by KH·KW when CountIncludePad is set and by the
// number of input pixels in the window otherwise.
type PoolShape struct {
	N, C, H, W      int // input batch, channels, height, width
	KH, KW          int // window height and width
	SH, SW          int // strides
	PT, PL, PB, PR  int // pads: top, left, bottom, right
	CountIncludePad bool
}

func (p PoolShape) norm() PoolShape {
	if p.SH == 0 {
		p.SH = 1
	}
	if p.SW == 0 {
		p.SW = 1
	}
	return p
}

// OH returns the output height.
func (p PoolShape) OH() int { p = p.norm(); return (p.H+p.PT+p.PB-p.KH)/p.SH + 1 }

// OW returns the output width.
func (p PoolShape) OW() int { p = p.norm(); return (p.W+p.PL+p.PR-p.KW)/p.SW + 1 }

// XLen returns the length of the input, N·C·H·W.
func (p PoolShape) XLen() int { return p.N * p.C * p.H * p.W }

// YLen returns the length of the output, N·C·OH·OW.
func (p PoolShape) YLen() int { return p.N * p.C * p.OH() * p.OW() }

// Validate reports whether the shape describes a pooling whose every window
// holds at least one input pixel.
func (p PoolShape) Validate() error {
	p = p.norm()
	switch {
	case p.N < 1 || p.C < 1 || p.H < 1 || p.W < 1 || p.KH < 1 || p.KW < 1 || p.SH < 1 || p.SW < 1:
		return fmt.Errorf("pool: sizes and strides must be positive: %+v", p)
	case p.PT < 0 || p.PL < 0 || p.PB < 0 || p.PR < 0:
		return errors.New("pool: pads must not be negative")
	case p.PT >= p.KH || p.PB >= p.KH || p.PL >= p.KW || p.PR >= p.KW:
		return fmt.Errorf("pool: pads must be smaller than the window %dx%d", p.KH, p.KW)
	case p.OH() < 1 || p.OW() < 1:
		return fmt.Errorf("pool: window %dx%d is larger than the padded input", p.KH, p.KW)
	}
	return nil
}

func (p PoolShape) plan(x, y []float32) PoolShape {
	if err := p.Validate(); err != nil {
		panic("kernels: " + err.Error())
	}
	need("x", x, p.XLen())
	need("y", y, p.YLen())
	return p.norm()
}

// window returns the input rows [h0, h1) and columns [w0, w1) of the
// window of output (oh, ow), clipped to the input.
func (p *PoolShape) window(oh, ow int) (h0, h1, w0, w1 int) {
	h0, w0 = oh*p.SH-p.PT, ow*p.SW-p.PL
	h1, w1 = min(h0+p.KH, p.H), min(w0+p.KW, p.W)
	return max(h0, 0), h1, max(w0, 0), w1
}

// forPlanes runs f on every (sample, channel) plane in parallel, with the
// plane's input and output offsets.
func (p *PoolShape) forPlanes(f func(xo, yo int)) {
	p.maxPlanes(func(xo, yo int, _ []int32) { f(xo, yo) })
}

// argmax returns the offset in the plane of the largest pixel of the window
// of output (oh, ow); the first one wins ties, and NaN wins.
func (p *PoolShape) argmax(xp []float32, oh, ow int) int {
	h0, h1, w0, w1 := p.window(oh, ow)
	best, m := h0*p.W+w0, float32(math.Inf(-1))
	for ih := h0; ih < h1; ih++ {
		row := xp[ih*p.W+w0 : ih*p.W+w1]
		for j, v := range row {
			if v > m || v != v {
				best, m = ih*p.W+w0+j, v
				if v != v {
					return best
				}
			}
		}
	}
	return best
}

// useMaxPool16 lets tests and benchmarks turn the AVX-512 max pooling off.
var useMaxPool16 = true

// winners sets win[ow] to argmax(xp, oh, ow) for every output of row oh.
// For 3×3 windows at stride 2 (the stem of ResNets) the windows inside the
// input go 16 at a time through maxPool3s2x16, which compares integer keys
// that order as the floats do (-0 equal to +0, every NaN above +Inf)
// without branches, so that its winners are argmax's to the bit; a scan
// per window is instruction-bound, a branch to mispredict or a spill per
// pixel (ResNet-18 at 224×224: its one max pooling took 11 % of a training
// step that way).
func (p *PoolShape) winners(xp []float32, oh int, win []int32) {
	ow, ow1 := 0, 0
	if haveElem16 && useMaxPool16 && p.KH == 3 && p.KW == 3 && p.SH == 2 && p.SW == 2 {
		h0 := oh*2 - p.PT
		ow = (p.PL + 1) / 2 // the first window inside the row
		if h0 >= 0 && h0+3 <= p.H {
			// A group of 16 windows from o reads columns 2·o − PL …
			// 2·o − PL + 33: o ≤ last.
			n := 0
			if last := p.W - 34 + p.PL; last >= 2*ow {
				n = min((last/2-ow)/16+1, (len(win)-ow)/16)
			}
			if n > 0 {
				at := h0*p.W + 2*ow - p.PL
				maxPool3s2x16(&xp[at], p.W*4, &win[ow], n, at, &winoIdx[0])
				ow1 = ow + 16*n
			}
		}
	}
	for i := range win {
		if i < ow || i >= ow1 {
			win[i] = int32(p.argmax(xp, oh, i))
		}
	}
}

// maxPlanes is forPlanes with a row of OW winners for f to fill, one per
// worker.
func (p *PoolShape) maxPlanes(f func(xo, yo int, win []int32)) {
	HW, P := p.H*p.W, p.OH()*p.OW()
	parFor(p.N*p.C, P*p.KH*p.KW, func(lo, hi int) {
		win := make([]int32, p.OW())
		for t := lo; t < hi; t++ {
			f(t*HW, t*P, win)
		}
	})
}

// MaxPool2D computes y as the maximum of each window of x.
func MaxPool2D(p PoolShape, x, y []float32) {
	p = p.plan(x, y)
	OH, OW, HW := p.OH(), p.OW(), p.H*p.W
	p.maxPlanes(func(xo, yo int, win []int32) {
		xp := x[xo : xo+HW]
		for oh := range OH {
			p.winners(xp, oh, win)
			yr := y[yo+oh*OW:][:OW]
			for ow, i := range win {
				yr[ow] = xp[i]
			}
		}
	})
}

// MaxPool2DBackward routes each dy to the input pixel that won its window
// in the forward pass (recomputed from x).
func MaxPool2DBackward(p PoolShape, x, dy, dx []float32) {
	p = p.plan(x, dy)
	need("dx", dx, len(x))
	OH, OW, HW := p.OH(), p.OW(), p.H*p.W
	p.maxPlanes(func(xo, yo int, win []int32) {
		xp, dp := x[xo:xo+HW], dx[xo:xo+HW]
		clear(dp)
		for oh := range OH {
			p.winners(xp, oh, win)
			dr := dy[yo+oh*OW:][:OW]
			for ow, i := range win {
				dp[i] += dr[ow]
			}
		}
	})
}

// divisor returns what the sum over the window (h0..h1, w0..w1) is divided
// by.
func (p *PoolShape) divisor(h0, h1, w0, w1 int) float32 {
	if p.CountIncludePad {
		return float32(p.KH * p.KW)
	}
	return float32((h1 - h0) * (w1 - w0))
}

// AvgPool2D computes y as the mean of each window of x.
func AvgPool2D(p PoolShape, x, y []float32) {
	p = p.plan(x, y)
	OH, OW, HW := p.OH(), p.OW(), p.H*p.W
	p.forPlanes(func(xo, yo int) {
		xp := x[xo : xo+HW]
		for oh := range OH {
			for ow := range OW {
				h0, h1, w0, w1 := p.window(oh, ow)
				var s float32
				for ih := h0; ih < h1; ih++ {
					s += sum32(xp[ih*p.W+w0 : ih*p.W+w1])
				}
				y[yo+oh*OW+ow] = s / p.divisor(h0, h1, w0, w1)
			}
		}
	})
}

// AvgPool2DBackward spreads each dy evenly (by the forward divisor) over
// its window.
func AvgPool2DBackward(p PoolShape, dy, dx []float32) {
	p = p.plan(dx, dy)
	OH, OW, HW := p.OH(), p.OW(), p.H*p.W
	p.forPlanes(func(xo, yo int) {
		dp := dx[xo : xo+HW]
		clear(dp)
		for oh := range OH {
			for ow := range OW {
				h0, h1, w0, w1 := p.window(oh, ow)
				g := dy[yo+oh*OW+ow] / p.divisor(h0, h1, w0, w1)
				for ih := h0; ih < h1; ih++ {
					row := dp[ih*p.W+w0 : ih*p.W+w1]
					for j := range row {
						row[j] += g
					}
				}
			}
		}
	})
}

// GlobalAvgPool sets y[i] to the mean of the hw values of plane i of x
// (len(x) = len(y)·hw).
func GlobalAvgPool(hw int, x, y []float32) {
	need("x", x, len(y)*hw)
	inv := 1 / float32(hw)
	parFor(len(y), hw, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			y[i] = sum32(x[i*hw:(i+1)*hw]) * inv
		}
	})
}

// GlobalAvgPoolBackward sets every pixel of plane i of dx to dy[i]/hw.
func GlobalAvgPoolBackward(hw int, dy, dx []float32) {
	need("dx", dx, len(dy)*hw)
	inv := 1 / float32(hw)
	parFor(len(dy), hw, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := dy[i] * inv
			row := dx[i*hw : (i+1)*hw]
			for j := range row {
				row[j] = g
			}
		}
	})
}
