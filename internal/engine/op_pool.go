package engine

import (
	"math"

	"github.com/qnas/qnas/internal/kernels"
)

// pool runs MaxPool and AveragePool. Ceil mode is run as floor mode over extra trailing
// padding, which padded pixels never win (max) and do not count in (average without
// count_include_pad).
type pool struct {
	s    kernels.PoolShape
	max  bool
	x, y *Value
	dx   *GradDst
}

func buildPool(b *Build) (Kernel, error) {
	win, err := b.Graph.PoolGeometry(b.Node)
	if err != nil {
		return nil, err
	}
	if win.DH != 1 || win.DW != 1 {
		return nil, b.Errorf("dilated pooling is not supported")
	}
	x := b.In[0]
	s := kernels.PoolShape{N: x.Shape[0], C: x.Shape[1], H: x.Shape[2], W: x.Shape[3], KH: win.KH, KW: win.KW,
		SH: win.SH, SW: win.SW, PT: win.PadT, PL: win.PadL, PB: win.PadB, PR: win.PadR,
		CountIncludePad: win.CountIncludePad}
	isMax := b.Node.Op == "MaxPool"
	// Grow the trailing pads until the floor formula gives the inferred (ceil) size.
	for s.OH() < win.OutH {
		s.PB++
	}
	for s.OW() < win.OutW {
		s.PR++
	}
	if (s.PB != win.PadB || s.PR != win.PadR) && !isMax && win.CountIncludePad {
		return nil, b.Errorf("ceil_mode with count_include_pad is not supported")
	}
	if err := s.Validate(); err != nil {
		return nil, b.Errorf("%v", err)
	}
	if s.OH() != win.OutH || s.OW() != win.OutW {
		return nil, b.Errorf("kernel output %dx%d differs from the inferred %dx%d", s.OH(), s.OW(), win.OutH, win.OutW)
	}
	return &pool{s: s, max: isMax, x: x, y: b.Out[0], dx: b.InGrad(0)}, nil
}

func (k *pool) Forward(bool) {
	if k.max {
		kernels.MaxPool2D(k.s, k.x.Data, k.y.Data)
	} else {
		kernels.AvgPool2D(k.s, k.x.Data, k.y.Data)
	}
}

func (k *pool) Backward() {
	if k.dx == nil {
		return
	}
	if k.max {
		kernels.MaxPool2DBackward(k.s, k.x.Data, k.y.Grad, k.dx.Buf)
	} else {
		kernels.AvgPool2DBackward(k.s, k.y.Grad, k.dx.Buf)
	}
}

// globalPool averages (or takes the max of) each channel's plane: GlobalAveragePool,
// GlobalMaxPool, and ReduceMean over the trailing spatial axes (see buildReduce).
type globalPool struct {
	hw   int
	max  bool
	x, y *Value
	dx   *GradDst
}

func (k *globalPool) Forward(bool) {
	if !k.max {
		kernels.GlobalAvgPool(k.hw, k.x.Data, k.y.Data)
		return
	}
	for i := range k.y.Data {
		m := float32(math.Inf(-1))
		for _, v := range k.x.Data[i*k.hw : (i+1)*k.hw] {
			m = max(m, v)
		}
		k.y.Data[i] = m
	}
}

func (k *globalPool) Backward() {
	if k.dx == nil {
		return
	}
	if !k.max {
		kernels.GlobalAvgPoolBackward(k.hw, k.y.Grad, k.dx.Buf)
		return
	}
	for i, m := range k.y.Data {
		plane := k.x.Data[i*k.hw : (i+1)*k.hw]
		d := k.dx.Buf[i*k.hw : (i+1)*k.hw]
		clear(d)
		for j, v := range plane {
			if v == m {
				d[j] = k.y.Grad[i]
				break
			}
		}
	}
}

func buildGlobal(b *Build) (Kernel, error) {
	x := b.In[0]
	if len(x.Shape) < 3 {
		return nil, b.Errorf("input has shape %v, want N×C×spatial", x.Shape)
	}
	hw := 1
	for _, d := range x.Shape[2:] {
		hw *= d
	}
	return &globalPool{hw: hw, max: b.Node.Op == "GlobalMaxPool", x: x, y: b.Out[0], dx: b.InGrad(0)}, nil
}

func init() {
	Register("MaxPool", buildPool)
	Register("AveragePool", buildPool)
	Register("GlobalAveragePool", buildGlobal)
	Register("GlobalMaxPool", buildGlobal)
}
