// Package export turns a trained fake-quantized graph into the model qnas hands to users:
// a QDQ ONNX graph (integer weights with per-channel scales behind DequantizeLinear,
// activations on b-bit grids through Clip → QuantizeLinear → DequantizeLinear, BatchNorm
// folded, pruned filters gone), annotated with the bits it carries, optionally with 4-bit
// weight containers (--pack) or in QONNX form, plus the encodings and architecture files
// beside it. It also reads such a model back, from the file alone.
package export

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/quant"
	"github.com/qnas/qnas/supernet"
)

// Model is a quantized model in its canonical QDQ form, with what it says about each layer.
type Model struct {
	Graph  *graph.Graph
	Layers []LayerInfo
	// Arch is the architecture it applies, as a qnas.arch/1 document.
	Arch []byte
	// SaturatedBiases names the layers (set by Freeze) whose integer bias did not fit in
	// int32 on its grid and was clamped to that range.
	SaturatedBiases []string
}

// LayerInfo is what the model records of one layer (model metadata "qnas.layers").
type LayerInfo struct {
	Name string `json:"name"` // the layer's node name (also in the input model)
	Op   string `json:"op"`
	// Filters is the layer's filter count in the input model; Kept the input-model indices
	// of the filters it keeps (absent when it keeps all).
	Filters int   `json:"filters"`
	Kept    []int `json:"kept,omitempty"`
	// WBits are the weight bits per kept filter (32: a float layer).
	WBits []int `json:"wbits"`
	// ABits are the bits of the layer's input activation (32: float), ASigned whether its
	// grid is signed, AClip the clipping bound.
	ABits   int     `json:"abits"`
	ASigned bool    `json:"a_signed,omitempty"`
	AClip   float32 `json:"a_clip,omitempty"`
	// Weight is the integer weight initializer (quantized layers), WAxis its filter axis.
	Weight string `json:"weight,omitempty"`
	WAxis  int    `json:"w_axis"`
	// Input is the value the layer reads (the DequantizeLinear output of its input
	// quantizer when quantized).
	Input string `json:"input"`
}

// KeptFilters returns the number of filters the layer keeps.
func (l LayerInfo) KeptFilters() int { return len(l.WBits) }

// Names of what Freeze writes for a quantized weight W and a quantized input of layer L:
// W_quantized, W_scale, W_zero_point, the node W_DequantizeLinear and its output
// W_DequantizeLinear_Output (the naming of ONNX Runtime's quantization tool); L/input_Clip,
// L/input_QuantizeLinear, L/input_DequantizeLinear and their outputs L/input_…_Output, with
// the constants L/input_clip_min, L/input_clip_max, L/input_scale, L/input_zero_point.
const (
	sufQuantized = "_quantized"
	sufScale     = "_scale"
	sufZero      = "_zero_point"
	sufDQ        = "_DequantizeLinear"
	sufQ         = "_QuantizeLinear"
	sufOutput    = "_Output"
)

// Freeze turns the trained fake-quantized graph of r (r.Apply, trained by search) into a
// Model: weights rounded onto their grids and stored as integers with per-channel scales,
// a BatchNormalization that follows a quantized Conv folded into its scales and a bias (so
// the integers are the ones training rounded to), the remaining BatchNormalizations folded
// into float convs, every activation quantizer written as Clip → QuantizeLinear →
// DequantizeLinear with its clip and bits, and the channel parameters it learned (a
// MatMul's bias Add, a layer scale) read directly. The input graph is not changed.
func Freeze(qat *graph.Graph, r *supernet.Resolved) (*Model, error) {
	g := qat.Clone()
	supernet.InlineLearned(g)
	m := &Model{Graph: g, Arch: supernet.MarshalArch(r.Arch(), layerOrder(r))}
	producers, consumers := g.Producers(), g.Consumers()
	remove := map[*graph.Node]bool{}
	before := map[*graph.Node][]*graph.Node{} // nodes to insert before a node
	for _, l := range r.Space.Layers {
		var n *graph.Node
		for _, c := range g.Nodes {
			if c.Name == l.Name {
				n = c
				break
			}
		}
		if n == nil {
			return nil, fmt.Errorf("layer %q is missing from the trained graph", l.Name)
		}
		c := r.Choices[l.Index]
		info := LayerInfo{Name: l.Name, Op: l.Op, Filters: l.Filters, Kept: slices.Clone(c.Keep), WBits: r.KeptBits(l),
			ABits: c.ABits, WAxis: l.WAxis, Input: n.Inputs[0]}
		if q := producers[n.Inputs[1]]; q != nil && q.Op == supernet.OpQuantWeight {
			w := g.Consts[q.Inputs[0]]
			if w == nil {
				return nil, fmt.Errorf("layer %q: weight %q is not a constant", l.Name, q.Inputs[0])
			}
			var fold *foldBN
			if bn := onlyReader(consumers, n.Outputs[0]); n.Op == "Conv" && bn != nil && bn.Op == "BatchNormalization" && !g.IsOutput(n.Outputs[0]) {
				f, err := bnFold(g, bn, n)
				if err != nil {
					return nil, err
				}
				fold = f
				n.Outputs[0] = bn.Outputs[0]
				remove[bn] = true
				if n.Input(2) == "" {
					n.Inputs = append(n.Inputs[:2], n.Name+"/bias")
				}
				g.Consts[n.Inputs[2]] = graph.NewFloat([]int{len(f.bias)}, f.bias)
			}
			wname := q.Inputs[0]
			var factors []float32 // what chooses a pow2 filter's grid (nil: its fold's a)
			if len(q.Inputs) == 4 && fold != nil {
				t := g.Consts[q.Inputs[3]]
				if t == nil || t.DType != graph.Float32 || len(t.F) != len(info.WBits) {
					return nil, fmt.Errorf("layer %q: grid factors %q are not a float constant of one value per filter", l.Name, q.Inputs[3])
				}
				factors = t.F
			}
			ints, scales, err := quantizeWeight(w, info.WBits, l.WAxis, fold, supernet.Pow2(q), factors)
			if err != nil {
				return nil, fmt.Errorf("layer %q: %v", l.Name, err)
			}
			info.Weight = wname + sufQuantized
			g.Consts[info.Weight] = ints
			g.Consts[wname+sufScale] = graph.NewFloat([]int{len(scales)}, scales)
			g.Consts[wname+sufZero] = graph.NewInts(graph.Int8, []int{len(scales)}, make([]int64, len(scales)))
			delete(g.Consts, wname)
			dq := &graph.Node{Name: wname + sufDQ, Op: "DequantizeLinear",
				Inputs: []string{info.Weight, wname + sufScale, wname + sufZero}, Outputs: []string{wname + sufDQ + sufOutput}}
			dq.SetInt("axis", int64(l.WAxis))
			n.Inputs[1] = dq.Outputs[0]
			remove[q] = true
			before[n] = append(before[n], dq)
		}
		if q := producers[n.Inputs[0]]; q != nil && q.Op == supernet.OpQuantAct {
			bits, err := q.Int("bits", 8)
			if err != nil {
				return nil, fmt.Errorf("layer %q: %w", l.Name, err)
			}
			signed, err := q.Int("signed", 0)
			if err != nil {
				return nil, fmt.Errorf("layer %q: %w", l.Name, err)
			}
			clip := g.Consts[q.Inputs[1]]
			if clip == nil || clip.Len() != 1 {
				return nil, fmt.Errorf("layer %q: clip %q is not a constant", l.Name, q.Inputs[1])
			}
			x := q.Inputs[0]
			remove[q] = true
			delete(g.Consts, q.Inputs[1])
			if bits == quant.Float {
				n.Inputs[0] = x
				info.Input = x
			} else {
				info.ASigned = signed != 0
				info.AClip = supernet.ClipInUse(clip.F[0], int(bits), info.ASigned, supernet.Pow2(q)) // as the quantizer used it
				nodes := actQDQ(g, l.Name+"/input", x, info.AClip, int(bits), info.ASigned)
				if p := producers[x]; p != nil && onlyReader(consumers, x) == q && !g.IsOutput(x) {
					if mergeClip(g, p, nodes[0]) {
						remove[p] = true
					}
				}
				n.Inputs[0] = nodes[len(nodes)-1].Outputs[0]
				info.Input = n.Inputs[0]
				before[n] = append(before[n], nodes...)
			}
		}
		if info.Weight != "" && info.ABits != quant.Float && n.Input(2) != "" {
			dq, saturated, err := quantizeBias(g, n, info)
			if err != nil {
				return nil, fmt.Errorf("layer %q: %v", l.Name, err)
			}
			if saturated {
				m.SaturatedBiases = append(m.SaturatedBiases, l.Name)
			}
			before[n] = append(before[n], dq)
		}
		m.Layers = append(m.Layers, info)
	}
	var out []*graph.Node
	for _, n := range g.Nodes {
		if remove[n] {
			continue
		}
		out = append(out, before[n]...)
		out = append(out, n)
	}
	if err := g.Rebuild(out); err != nil {
		return nil, err
	}
	if err := g.FoldBatchNorm(); err != nil { // float layers' BatchNorms
		return nil, err
	}
	for _, info := range m.Layers {
		for _, n := range g.Nodes {
			if n.Name == info.Name {
				n.Doc = layerDoc(info)
			}
		}
	}
	return m, nil
}

func layerOrder(r *supernet.Resolved) []string {
	var names []string
	for _, l := range r.Space.Layers {
		names = append(names, l.Name)
	}
	return names
}

func onlyReader(consumers map[string][]*graph.Node, v string) *graph.Node {
	if cs := consumers[v]; len(cs) == 1 {
		return cs[0]
	}
	return nil
}

// foldBN is a BatchNormalization folded into the conv before it: y = a·conv(x) + bias.
type foldBN struct {
	a    []float64
	bias []float32
}

// bnFold computes the fold of BatchNormalization bn into conv n (whose own bias, if any,
// it absorbs).
func bnFold(g *graph.Graph, bn, n *graph.Node) (*foldBN, error) {
	var p [4]*graph.Tensor
	for i := range p {
		p[i] = g.Consts[bn.Inputs[i+1]]
		if p[i] == nil || p[i].DType != graph.Float32 {
			return nil, fmt.Errorf("node %q: BatchNormalization parameter %q is not a float constant", bn.Name, bn.Inputs[i+1])
		}
	}
	eps, err := bn.Float("epsilon", 1e-5)
	if err != nil {
		return nil, err
	}
	oc := len(p[0].F)
	var b []float32
	if bias := n.Input(2); bias != "" {
		if t := g.Consts[bias]; t != nil && len(t.F) == oc {
			b = t.F
		}
	}
	f := &foldBN{a: make([]float64, oc), bias: make([]float32, oc)}
	for c := 0; c < oc; c++ {
		var cb float32
		if b != nil {
			cb = b[c]
		}
		f.a[c], f.bias[c] = quant.FoldBN(p[0].F[c], p[1].F[c], p[2].F[c], p[3].F[c], cb, eps)
	}
	return f, nil
}

// quantizeWeight rounds w onto the per-filter grids of bits (along axis) with the scales
// of package quant, and folds a BatchNormalization into the scales: filter c's integers
// flip sign when a_c < 0 and its scale becomes scale_c·|a_c|. With pow2 the folded scales
// are powers of two, chosen with factors (nil: with a). Integers are int8.
func quantizeWeight(w *graph.Tensor, bits []int, axis int, fold *foldBN, pow2 bool, factors []float32) (*graph.Tensor, []float32, error) {
	oc := w.Shape[axis]
	if len(bits) != oc {
		return nil, nil, fmt.Errorf("%d bitwidths for %d filters", len(bits), oc)
	}
	rows := filterRows(w, axis)
	ints := make([]int64, len(w.F))
	scales := make([]float32, oc)
	for c := 0; c < oc; c++ {
		b := bits[c]
		if b == quant.Float {
			return nil, nil, fmt.Errorf("filter %d is float; a layer is quantized or float as a whole", c)
		}
		idx := rows(c)
		maxAbs := float32(0)
		for _, i := range idx {
			maxAbs = max(maxAbs, w.F[i], -w.F[i])
		}
		s0 := quant.WeightScale(maxAbs, b)
		s := s0
		hi := float32(quant.WeightMax(b))
		sign := int64(1)
		a := 1.0
		if fold != nil {
			if a = fold.a[c]; a < 0 {
				sign = -1
			}
			var ok bool
			if s, ok = quant.FoldedScale(s, a); !ok {
				s, sign = 1, 0 // a zero BatchNorm scale: the filter contributes nothing
			}
		}
		if pow2 && sign != 0 {
			f := a
			if factors != nil {
				f = float64(factors[c])
			}
			s0, s, _ = quant.Pow2WeightScales(maxAbs, b, a, f)
		}
		for _, i := range idx {
			ints[i] = sign * int64(quant.Quantize(w.F[i], s0, -hi, hi))
		}
		scales[c] = s
	}
	return graph.NewInts(graph.Int8, w.Shape, ints), scales, nil
}

// filterRows returns, for a weight whose filters run along axis, the element indices of
// filter c.
func filterRows(w *graph.Tensor, axis int) func(c int) []int {
	n := len(w.F)
	if axis == 0 {
		per := n / w.Shape[0]
		return func(c int) []int {
			idx := make([]int, per)
			for i := range idx {
				idx[i] = c*per + i
			}
			return idx
		}
	}
	cols := w.Shape[1]
	return func(c int) []int {
		idx := make([]int, 0, n/cols)
		for i := c; i < n; i += cols {
			idx = append(idx, i)
		}
		return idx
	}
}

// actQDQ returns the Clip → QuantizeLinear → DequantizeLinear nodes that put x on the
// b-bit grid clipped at clip, adding their constants to g; base names them. The Clip's
// bounds are the grid's ends, scale·(±2^(b−1)−1 or 2^b−1), which are the clip to within a
// float rounding and give the same integers: so they are exactly the QuantizeLinear's range,
// and ONNX Runtime removes the Clip and fuses the layer (a bound one rounding inside that
// range keeps the Clip, and ONNX Runtime 1.30 then refuses some models at its extended
// level, naming two nodes of one name).
func actQDQ(g *graph.Graph, base, x string, clip float32, bits int, signed bool) []*graph.Node {
	scale := quant.ActScale(clip, bits, signed)
	hi := scale * float32(quant.ActMax(bits, signed))
	lo := float32(0)
	zt := graph.Uint8
	if signed {
		lo, zt = -hi, graph.Int8
	}
	g.Consts[base+"_clip_min"] = graph.NewFloat(nil, []float32{lo})
	g.Consts[base+"_clip_max"] = graph.NewFloat(nil, []float32{hi})
	g.Consts[base+sufScale] = graph.NewFloat(nil, []float32{scale})
	g.Consts[base+sufZero] = graph.NewInts(zt, nil, []int64{0})
	clipN := &graph.Node{Name: base + "_Clip", Op: "Clip", Inputs: []string{x, base + "_clip_min", base + "_clip_max"},
		Outputs: []string{base + "_Clip" + sufOutput}}
	q := &graph.Node{Name: base + sufQ, Op: "QuantizeLinear", Inputs: []string{clipN.Outputs[0], base + sufScale, base + sufZero},
		Outputs: []string{base + sufQ + sufOutput}}
	dq := &graph.Node{Name: base + sufDQ, Op: "DequantizeLinear", Inputs: []string{q.Outputs[0], base + sufScale, base + sufZero},
		Outputs: []string{base + sufDQ + sufOutput}}
	return []*graph.Node{clipN, q, dq}
}

// layerDoc is the short, human-readable doc_string of a layer's node, e.g.
// "qnas: weights 4-bit, input 4-bit unsigned (clip 2.31); 16 filters" or
// "qnas: weights 2/4/8-bit (4, 8, 4 filters), input 3-bit unsigned (clip 1.7); 16 of 32 filters kept".
func layerDoc(l LayerInfo) string {
	counts := map[int]int{}
	var widths []int
	for _, b := range l.WBits {
		if counts[b] == 0 {
			widths = append(widths, b)
		}
		counts[b]++
	}
	slices.Sort(widths)
	w := ""
	switch {
	case len(widths) == 1 && widths[0] == quant.Float:
		w = "weights float"
	case len(widths) == 1:
		w = fmt.Sprintf("weights %d-bit", widths[0])
	default:
		var bs, ns []string
		for _, b := range widths {
			bs = append(bs, fmt.Sprint(b))
			ns = append(ns, fmt.Sprint(counts[b]))
		}
		w = fmt.Sprintf("weights %s-bit (%s filters)", strings.Join(bs, "/"), strings.Join(ns, ", "))
	}
	a := "input float"
	if l.ABits != quant.Float {
		sign := "unsigned"
		if l.ASigned {
			sign = "signed"
		}
		a = fmt.Sprintf("input %d-bit %s (clip %.3g)", l.ABits, sign, l.AClip)
	}
	f := fmt.Sprintf("%d filters", l.Filters)
	if l.KeptFilters() < l.Filters {
		f = fmt.Sprintf("%d of %d filters kept", l.KeptFilters(), l.Filters)
	}
	return fmt.Sprintf("qnas: %s, %s; %s", w, a, f)
}

// quantizeBias stores the bias of a layer whose input and weights are quantized as int32
// on the grid of the product of the input's scale and each filter's weight scale (what a
// runtime that fuses the layer into an integer convolution adds to its accumulators, and
// what ONNX Runtime rounds a float bias to before fusing), read through a
// DequantizeLinear. It returns that node, and whether some integer did not fit in int32 and
// was clamped.
func quantizeBias(g *graph.Graph, n *graph.Node, l LayerInfo) (*graph.Node, bool, error) {
	name := n.Inputs[2]
	b := g.Consts[name]
	ws := g.Consts[trimSuffix(l.Weight, sufQuantized)+sufScale]
	if b == nil || b.DType != graph.Float32 || ws == nil {
		return nil, false, fmt.Errorf("bias %q is not a float constant", name)
	}
	if b.Len() != len(ws.F) {
		return nil, false, fmt.Errorf("bias %q has %d values for %d filters", name, b.Len(), len(ws.F))
	}
	xs := quant.ActScale(l.AClip, l.ABits, l.ASigned)
	scale := make([]float32, len(ws.F))
	ints := make([]int64, len(ws.F))
	saturated := false
	for c, w := range ws.F {
		scale[c] = quant.BiasScale(xs, w)
		var sat bool
		ints[c], sat = quant.QuantizeBiasSaturated(b.F[c], scale[c])
		saturated = saturated || sat
	}
	delete(g.Consts, name)
	g.Consts[name+sufQuantized] = graph.NewInts(graph.Int32, b.Shape, ints)
	g.Consts[name+sufScale] = graph.NewFloat([]int{len(scale)}, scale)
	dq := &graph.Node{Name: name + sufDQ, Op: "DequantizeLinear", Inputs: []string{name + sufQuantized, name + sufScale},
		Outputs: []string{name + sufDQ + sufOutput}}
	dq.SetInt("axis", 0)
	n.Inputs[2] = dq.Outputs[0]
	return dq, saturated, nil
}

// mergeClip removes a Relu or Clip p whose only reader is the quantizer's Clip c when c's
// range lies inside p's (so p changes nothing c lets through), reading p's input instead.
// It reports whether it did. (Two clipping nodes in a row before a QuantizeLinear make ONNX
// Runtime 1.30's QDQ fusions build an invalid graph.)
func mergeClip(g *graph.Graph, p, c *graph.Node) bool {
	var a, b float32
	switch p.Op {
	case "Relu":
		a, b = 0, float32(math.Inf(1))
	case "Clip":
		var err error
		if a, b, err = g.ClipBoundsOf(p); err != nil {
			return false
		}
	default:
		return false
	}
	lo, hi := g.Consts[c.Inputs[1]].F[0], g.Consts[c.Inputs[2]].F[0]
	if a > lo || b < hi {
		return false
	}
	c.Inputs[0] = p.Inputs[0]
	return true
}
