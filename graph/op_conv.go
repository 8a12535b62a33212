package graph

import "fmt"

// Window is the resolved geometry of a 2-D sliding window (a convolution or a pool) over
// one input: kernel, strides, dilations, explicit pads and the output size.
type Window struct {
	KH, KW          int
	SH, SW          int
	DH, DW          int
	PadT, PadL      int
	PadB, PadR      int
	InH, InW        int
	OutH, OutW      int
	CeilMode        bool
	CountIncludePad bool
}

// windowFromAttrs resolves kernel, strides, dilations and padding (explicit or auto_pad)
// against an input of size h×w.
func windowFromAttrs(c *Ctx, kh, kw, h, w int, pool bool) (Window, error) {
	n := c.Node
	win := Window{KH: kh, KW: kw, SH: 1, SW: 1, DH: 1, DW: 1, InH: h, InW: w}
	pair := func(name string, dst1, dst2 *int, min int) error {
		v, err := n.Ints(name, nil)
		if err != nil {
			return err
		}
		if v == nil {
			return nil
		}
		if len(v) != 2 {
			return c.Errorf("attribute %s has %d values, want 2 for a 2-D input", name, len(v))
		}
		if v[0] < int64(min) || v[1] < int64(min) || v[0] > 1<<20 || v[1] > 1<<20 {
			return c.Errorf("attribute %s = %v is out of range", name, v)
		}
		*dst1, *dst2 = int(v[0]), int(v[1])
		return nil
	}
	if err := pair("strides", &win.SH, &win.SW, 1); err != nil {
		return win, err
	}
	if err := pair("dilations", &win.DH, &win.DW, 1); err != nil {
		return win, err
	}
	ceil, err := n.Int("ceil_mode", 0)
	if err != nil {
		return win, err
	}
	win.CeilMode = ceil != 0
	cip, err := n.Int("count_include_pad", 0)
	if err != nil {
		return win, err
	}
	win.CountIncludePad = cip != 0
	autoPad, err := n.String("auto_pad", "NOTSET")
	if err != nil {
		return win, err
	}
	ekh, ekw := win.DH*(kh-1)+1, win.DW*(kw-1)+1
	switch autoPad {
	case "NOTSET", "":
		pads, err := n.Ints("pads", nil)
		if err != nil {
			return win, err
		}
		if pads != nil {
			if len(pads) != 4 {
				return win, c.Errorf("attribute pads has %d values, want 4 for a 2-D input", len(pads))
			}
			for _, p := range pads {
				if p < 0 || p > 1<<20 {
					return win, c.Errorf("attribute pads = %v is out of range", pads)
				}
			}
			win.PadT, win.PadL, win.PadB, win.PadR = int(pads[0]), int(pads[1]), int(pads[2]), int(pads[3])
		}
		win.OutH = outSize(h, win.PadT+win.PadB, ekh, win.SH, win.CeilMode, win.PadT)
		win.OutW = outSize(w, win.PadL+win.PadR, ekw, win.SW, win.CeilMode, win.PadL)
	case "VALID":
		win.OutH = outSize(h, 0, ekh, win.SH, win.CeilMode, 0)
		win.OutW = outSize(w, 0, ekw, win.SW, win.CeilMode, 0)
	case "SAME_UPPER", "SAME_LOWER":
		win.OutH, win.OutW = (h+win.SH-1)/win.SH, (w+win.SW-1)/win.SW
		th := max(0, (win.OutH-1)*win.SH+ekh-h)
		tw := max(0, (win.OutW-1)*win.SW+ekw-w)
		if autoPad == "SAME_UPPER" {
			win.PadT, win.PadL = th/2, tw/2
		} else {
			win.PadT, win.PadL = th-th/2, tw-tw/2
		}
		win.PadB, win.PadR = th-win.PadT, tw-win.PadL
	default:
		return win, c.Errorf("auto_pad %q is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", autoPad)
	}
	if win.OutH <= 0 || win.OutW <= 0 {
		return win, c.Errorf("window %dx%d (dilated %dx%d) does not fit the %dx%d input", kh, kw, ekh, ekw, h, w)
	}
	_ = pool
	return win, nil
}

// outSize is the output length of a window of effective size k with stride s over an input
// of length in with total padding pad; in ceil mode the last window must start inside the
// input or the leading padding.
func outSize(in, pad, k, s int, ceil bool, padBegin int) int {
	span := in + pad - k
	if span < 0 {
		return 0
	}
	if !ceil {
		return span/s + 1
	}
	out := (span+s-1)/s + 1
	if (out-1)*s >= in+padBegin {
		out--
	}
	return out
}

// ConvGeometry resolves the geometry of a Conv node of graph g: groups, channels and window.
func (g *Graph) ConvGeometry(n *Node) (ConvInfo, error) {
	return convInfo(g.ctx(n))
}

// ConvInfo is the resolved geometry of a 2-D convolution.
type ConvInfo struct {
	Window
	Group   int
	InC     int
	OutC    int
	HasBias bool
}

func convInfo(c *Ctx) (ConvInfo, error) {
	x, w := c.In[0], c.In[1]
	var ci ConvInfo
	if len(x) != 4 {
		return ci, c.Errorf("input %q has shape %v; only 2-D convolutions (N×C×H×W) are supported", c.Node.Inputs[0], x)
	}
	if len(w) != 4 {
		return ci, c.Errorf("weight %q has shape %v, want 4 dimensions", c.Node.Inputs[1], w)
	}
	group, err := c.Node.Int("group", 1)
	if err != nil {
		return ci, err
	}
	if group < 1 || group > 1<<20 {
		return ci, c.Errorf("group = %d is out of range", group)
	}
	ci.Group, ci.InC, ci.OutC = int(group), x[1], w[0]
	if ci.InC <= 0 || ci.InC%ci.Group != 0 || ci.OutC%ci.Group != 0 {
		return ci, c.Errorf("channels in %d, out %d are not divisible by group %d", ci.InC, ci.OutC, group)
	}
	if w[1] != ci.InC/ci.Group {
		return ci, c.Errorf("weight %q has %d input channels per group, input has %d/%d", c.Node.Inputs[1], w[1], ci.InC, group)
	}
	if ks, err := c.Node.Ints("kernel_shape", nil); err != nil {
		return ci, err
	} else if ks != nil && (len(ks) != 2 || int(ks[0]) != w[2] || int(ks[1]) != w[3]) {
		return ci, c.Errorf("kernel_shape %v disagrees with weight shape %v", ks, w)
	}
	if c.Has(2) {
		b := c.In[2]
		if len(b) != 1 || b[0] != ci.OutC {
			return ci, c.Errorf("bias %q has shape %v, want [%d]", c.Node.Inputs[2], b, ci.OutC)
		}
		ci.HasBias = true
	}
	ci.Window, err = windowFromAttrs(c, w[2], w[3], x[2], x[3], false)
	return ci, err
}

func init() {
	Register(&OpDef{
		Op: "Conv", Doc: "2-D convolution with groups (depthwise included), strides, dilations, pads, auto_pad",
		MinInputs: 2, MaxInputs: 3, MinOutputs: 1, MaxOutputs: 1, Weights: []int{1, 2}, Moments: MomentSource,
		AbsorbsReLU: true, AbsorbsBoundedReLU: true,
		Infer: func(c *Ctx) ([]Shape, error) {
			ci, err := convInfo(c)
			if err != nil {
				return nil, err
			}
			return []Shape{{c.In[0][0], ci.OutC, ci.OutH, ci.OutW}}, nil
		},
		Cost: func(c *Ctx, out []Shape) LayerCost {
			o, w := out[0], c.In[1]
			macs := satMul(int64(o[1])*int64(o[2])*int64(o[3]), int64(w[1])*int64(w[2])*int64(w[3]))
			return LayerCost{MACs: macs}
		},
	})
	Register(&OpDef{
		Op: "BatchNormalization", Doc: "batch normalization over channels (scale, bias, mean, var inputs)",
		MinInputs: 5, MaxInputs: 5, MinOutputs: 1, MaxOutputs: 3, Weights: []int{1, 2}, State: []int{3, 4},
		AbsorbsReLU: true, AbsorbsBoundedReLU: true, Moments: MomentSink,
		Infer: func(c *Ctx) ([]Shape, error) {
			x := c.In[0]
			if len(x) < 2 {
				return nil, c.Errorf("input has shape %v, want at least N×C", x)
			}
			for i := 1; i < 5; i++ {
				if len(c.In[i]) != 1 || c.In[i][0] != x[1] {
					return nil, c.Errorf("input %d %q has shape %v, want [%d]", i, c.Node.Inputs[i], c.In[i], x[1])
				}
			}
			if len(c.Node.Outputs) > 1 {
				for _, o := range c.Node.Outputs[1:] {
					if o != "" {
						return nil, c.Errorf("training-mode outputs (running mean/var) are not supported; export the model in eval mode")
					}
				}
			}
			out := []Shape{x}
			for range c.Node.Outputs[1:] {
				out = append(out, nil)
			}
			return out, nil
		},
		Cost: func(c *Ctx, out []Shape) LayerCost { return LayerCost{} },
	})
}

// poolInfer returns the output shape of MaxPool/AveragePool.
func poolInfer(c *Ctx) ([]Shape, error) {
	x := c.In[0]
	if len(x) != 4 {
		return nil, c.Errorf("input has shape %v; only 2-D pools (N×C×H×W) are supported", x)
	}
	ks, err := c.Node.Ints("kernel_shape", nil)
	if err != nil {
		return nil, err
	}
	if len(ks) != 2 || ks[0] < 1 || ks[1] < 1 || ks[0] > 1<<20 || ks[1] > 1<<20 {
		return nil, c.Errorf("kernel_shape %v: want two positive values", ks)
	}
	if len(c.Node.Outputs) > 1 && c.Node.Outputs[1] != "" {
		return nil, c.Errorf("the Indices output is not supported")
	}
	win, err := windowFromAttrs(c, int(ks[0]), int(ks[1]), x[2], x[3], true)
	if err != nil {
		return nil, err
	}
	out := []Shape{{x[0], x[1], win.OutH, win.OutW}}
	if len(c.Node.Outputs) > 1 {
		out = append(out, nil)
	}
	return out, nil
}

// PoolGeometry resolves the window of a MaxPool or AveragePool node of graph g.
func (g *Graph) PoolGeometry(n *Node) (Window, error) {
	c := g.ctx(n)
	ks, err := n.Ints("kernel_shape", nil)
	if err != nil {
		return Window{}, err
	}
	x := c.In[0]
	if len(ks) != 2 || len(x) != 4 {
		return Window{}, c.Errorf("not a 2-D pool")
	}
	return windowFromAttrs(c, int(ks[0]), int(ks[1]), x[2], x[3], true)
}

func init() {
	Register(&OpDef{Op: "MaxPool", Doc: "2-D max pooling (pads, strides, dilations, ceil_mode)",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 2, Infer: poolInfer})
	Register(&OpDef{Op: "AveragePool", Doc: "2-D average pooling (pads, strides, ceil_mode, count_include_pad)",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1, Infer: poolInfer})
	global := func(c *Ctx) ([]Shape, error) {
		x := c.In[0]
		if len(x) < 3 {
			return nil, c.Errorf("input has shape %v, want N×C×spatial", x)
		}
		out := Shape{x[0], x[1]}
		for range x[2:] {
			out = append(out, 1)
		}
		return []Shape{out}, nil
	}
	Register(&OpDef{Op: "GlobalAveragePool", Doc: "mean over all spatial positions",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1, Infer: global})
	Register(&OpDef{Op: "GlobalMaxPool", Doc: "max over all spatial positions",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1, Infer: global})
}

var _ = fmt.Sprint
