package export

import (
	"fmt"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/quant"
	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// QONNXDomain is the domain of QONNX's quantization ops.
const QONNXDomain = "qonnx.custom_op.general"

// QONNX's Quant(x, scale, zeropt, bitwidth) with attributes signed, narrow and
// rounding_mode computes (clamp(round(x/scale + zeropt), lo, hi) − zeropt)·scale, where
// [lo, hi] is the signed or unsigned range of bitwidth bits, narrowed by one at the bottom
// (signed) or the top (unsigned) when narrow. qnas writes rounding_mode "ROUND" (half to
// even), zero points 0, and per-channel bitwidths as a tensor broadcast like the scale.

func init() {
	engine.RegisterOp(&graph.OpDef{
		Op: "Quant", Domain: QONNXDomain, Doc: "QONNX fake quantization: (clamp(round(x/scale + zeropt)) − zeropt)·scale",
		MinInputs: 4, MaxInputs: 4, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *graph.Ctx) ([]graph.Shape, error) {
			if _, err := quantParams(c.Node, c.Const); err != nil {
				return nil, err
			}
			return []graph.Shape{c.In[0]}, nil
		},
	}, buildQuant)
}

// qonnxQuant is a resolved Quant node: per element of the broadcast parameters.
type qonnxQuant struct {
	scale, zero, bits *graph.Tensor
	signed, narrow    bool
}

func quantParams(n *graph.Node, c []*graph.Tensor) (*qonnxQuant, error) {
	q := &qonnxQuant{scale: c[1], zero: c[2], bits: c[3]}
	for i, t := range []*graph.Tensor{q.scale, q.zero, q.bits} {
		if t == nil || t.DType != graph.Float32 {
			return nil, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("input %d %q must be a float constant", i+1, n.Input(i+1))}
		}
	}
	s, err := n.Int("signed", 1)
	if err != nil {
		return nil, err
	}
	nw, err := n.Int("narrow", 0)
	if err != nil {
		return nil, err
	}
	if rm, err := n.String("rounding_mode", "ROUND"); err != nil || rm != "ROUND" {
		return nil, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("rounding_mode %q: only ROUND is supported", rm)}
	}
	q.signed, q.narrow = s != 0, nw != 0
	for _, b := range q.bits.F {
		if b < 2 || b > 8 || b != float32(int(b)) {
			return nil, &graph.NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("bitwidth %g: want an integer in 2..8", b)}
		}
	}
	return q, nil
}

// bounds returns the integer range at b bits.
func (q *qonnxQuant) bounds(b int) (lo, hi float32) {
	if q.signed {
		lo, hi = -float32(int(1)<<(b-1)), float32(int(1)<<(b-1)-1)
		if q.narrow {
			lo++
		}
		return lo, hi
	}
	hi = float32(int(1)<<b - 1)
	if q.narrow {
		hi--
	}
	return 0, hi
}

type quantKernel struct {
	q    *qonnxQuant
	x, y *engine.Value
	// Per-channel parameters vary along one axis of x: element i uses entry (i/inner)%n.
	n, inner int
}

func buildQuant(b *engine.Build) (engine.Kernel, error) {
	c := b.Graph.Consts
	q, err := quantParams(b.Node, []*graph.Tensor{nil, c[b.Node.Inputs[1]], c[b.Node.Inputs[2]], c[b.Node.Inputs[3]]})
	if err != nil {
		return nil, err
	}
	if b.In[0].Grad != nil {
		return nil, b.Errorf("Quant runs in inference only; qnas fine-tunes quantized models in their QuantAct/QuantWeight form")
	}
	k := &quantKernel{q: q, x: b.In[0], y: b.Out[0], n: 1, inner: b.In[0].Len()}
	xs := b.In[0].Shape
	for _, t := range []*graph.Tensor{q.scale, q.zero, q.bits} {
		if t.Len() == 1 {
			continue
		}
		// the one axis along which t varies, aligned to x from the right
		axis := -1
		for i, d := range t.Shape {
			if d != 1 {
				if axis >= 0 {
					return nil, b.Errorf("parameter of shape %v varies along more than one axis", t.Shape)
				}
				axis = len(xs) - len(t.Shape) + i
			}
		}
		if axis < 0 || xs[axis] != t.Len() || k.n > 1 && (k.n != t.Len() || k.inner != prod(xs[axis+1:])) {
			return nil, b.Errorf("parameter of shape %v does not broadcast along one axis of the input %v", t.Shape, xs)
		}
		k.n, k.inner = t.Len(), prod(xs[axis+1:])
	}
	return k, nil
}

func prod(s []int) int {
	p := 1
	for _, d := range s {
		p *= d
	}
	return p
}

func at(t *graph.Tensor, i int) float32 {
	if t.Len() == 1 {
		return t.F[0]
	}
	return t.F[i]
}

func (k *quantKernel) Forward(bool) {
	x, y := k.x.Data, k.y.Data
	for start := 0; start < len(x); start += k.inner {
		c := start / k.inner % k.n
		s, z := at(k.q.scale, c), at(k.q.zero, c)
		lo, hi := k.q.bounds(int(at(k.q.bits, c)))
		for i := start; i < start+k.inner; i++ {
			y[i] = (min(max(quant.Round(x[i]/s+z), lo), hi) - z) * s
		}
	}
}

func (k *quantKernel) Backward() {}

// toQONNX rewrites the canonical QDQ graph g into QONNX form in place: each weight
// DequantizeLinear becomes a float initializer (the integers times their scales, exactly
// what the DequantizeLinear computed) read through Quant(signed, narrow), and each activation
// Clip → QuantizeLinear → DequantizeLinear one Quant (narrow when signed; the clamp of its
// range is the clip). It returns the model-local function that lets ONNX Runtime run Quant.
func toQONNX(g *graph.Graph, layers []LayerInfo) (*onnxpb.FunctionProto, error) {
	producers := g.Producers()
	remove := map[*graph.Node]bool{}
	replace := map[*graph.Node]*graph.Node{}
	for _, l := range layers {
		var layer *graph.Node
		for _, n := range g.Nodes {
			if n.Name == l.Name {
				layer = n
			}
		}
		if layer == nil {
			return nil, fmt.Errorf("layer %q is missing from the model", l.Name)
		}
		if l.Weight != "" {
			dq := producers[layer.Inputs[1]]
			if dq == nil || dq.Op != "DequantizeLinear" {
				return nil, fmt.Errorf("layer %q: weight is not read through a DequantizeLinear", l.Name)
			}
			p, err := g.QDQ(dq)
			if err != nil {
				return nil, err
			}
			w := g.Consts[dq.Inputs[0]]
			base := trimSuffix(l.Weight, sufQuantized)
			fw := make([]float32, len(w.I))
			rows := filterRows(&graph.Tensor{Shape: w.Shape, F: fw}, l.WAxis)
			bshape := make([]int, len(w.Shape))
			for i := range bshape {
				bshape[i] = 1
			}
			bshape[l.WAxis] = w.Shape[l.WAxis]
			scale := make([]float32, w.Shape[l.WAxis])
			bits := make([]float32, len(scale))
			for c := range scale {
				scale[c] = p.Scale[c]
				bits[c] = float32(l.WBits[c])
				for _, i := range rows(c) {
					fw[i] = float32(w.I[i]) * scale[c]
				}
			}
			g.Consts[base] = graph.NewFloat(w.Shape, fw)
			g.Consts[base+sufScale] = graph.NewFloat(bshape, scale)
			g.Consts[base+sufZero] = graph.NewFloat(nil, []float32{0})
			g.Consts[base+"_bitwidth"] = graph.NewFloat(bshape, bits)
			if uniform(l.WBits) {
				g.Consts[base+"_bitwidth"] = graph.NewFloat(nil, []float32{float32(l.WBits[0])})
			}
			q := quantNode(base+"_Quant", []string{base, base + sufScale, base + sufZero, base + "_bitwidth"}, true, true)
			replace[dq] = q
			layer.Inputs[1] = q.Outputs[0]
		}
		if l.ABits != quant.Float {
			dq := producers[layer.Inputs[0]]
			q := producers[dq.Input(0)]
			clip := producers[q.Input(0)]
			if dq == nil || dq.Op != "DequantizeLinear" || q == nil || q.Op != "QuantizeLinear" || clip == nil || clip.Op != "Clip" {
				return nil, fmt.Errorf("layer %q: input is not quantized by Clip → QuantizeLinear → DequantizeLinear", l.Name)
			}
			p, err := g.QDQ(q)
			if err != nil {
				return nil, err
			}
			base := trimSuffix(dq.Name, sufDQ)
			g.Consts[base+sufScale] = graph.NewFloat(nil, []float32{p.Scale[0]})
			g.Consts[base+sufZero] = graph.NewFloat(nil, []float32{0})
			g.Consts[base+"_bitwidth"] = graph.NewFloat(nil, []float32{float32(l.ABits)})
			qn := quantNode(base+"_Quant", []string{clip.Inputs[0], base + sufScale, base + sufZero, base + "_bitwidth"}, l.ASigned, l.ASigned)
			replace[clip] = qn
			remove[q], remove[dq] = true, true
			layer.Inputs[0] = qn.Outputs[0]
		}
	}
	var out []*graph.Node
	for _, n := range g.Nodes {
		if r := replace[n]; r != nil {
			out = append(out, r)
			continue
		}
		if !remove[n] {
			out = append(out, n)
		}
	}
	g.Nodes = out
	if err := g.Rebuild(g.Nodes); err != nil {
		return nil, err
	}
	return quantFunction(), nil
}

func quantNode(name string, inputs []string, signed, narrow bool) *graph.Node {
	n := &graph.Node{Name: name, Op: "Quant", Domain: QONNXDomain, Inputs: inputs, Outputs: []string{name + sufOutput}}
	b := func(v bool) int64 {
		if v {
			return 1
		}
		return 0
	}
	n.SetInt("signed", b(signed))
	n.SetInt("narrow", b(narrow))
	n.SetString("rounding_mode", "ROUND")
	return n
}

// quantFunction defines Quant in ONNX opset 13 ops, reading the signed and narrow
// attributes through attribute references:
//
//	lo = signed·(narrow − 2^(b−1));  hi = signed·(2^(b−1) − 1) + (1 − signed)·(2^b − 1 − narrow)
//	y  = (min(max(round(x/scale + zeropt), lo), hi) − zeropt)·scale
func quantFunction() *onnxpb.FunctionProto {
	var nodes []*onnxpb.NodeProto
	node := func(op string, out string, in ...string) {
		nodes = append(nodes, &onnxpb.NodeProto{OpType: proto.String(op), Input: in, Output: []string{out}})
	}
	constant := func(out string, v float32) {
		nodes = append(nodes, &onnxpb.NodeProto{OpType: proto.String("Constant"), Output: []string{out},
			Attribute: []*onnxpb.AttributeProto{{Name: proto.String("value_float"), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}}})
	}
	attrConst := func(out, attr string) {
		nodes = append(nodes, &onnxpb.NodeProto{OpType: proto.String("Constant"), Output: []string{out + "_i"},
			Attribute: []*onnxpb.AttributeProto{{Name: proto.String("value_int"), Type: onnxpb.AttributeProto_INT.Enum(), RefAttrName: proto.String(attr)}}})
		nodes = append(nodes, &onnxpb.NodeProto{OpType: proto.String("Cast"), Input: []string{out + "_i"}, Output: []string{out},
			Attribute: []*onnxpb.AttributeProto{{Name: proto.String("to"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(int64(onnxpb.TensorProto_FLOAT))}}})
	}
	constant("one", 1)
	constant("two", 2)
	attrConst("s", "signed")
	attrConst("n", "narrow")
	node("Pow", "p", "two", "bitwidth")   // 2^b
	node("Sub", "bm1", "bitwidth", "one") // b − 1
	node("Pow", "h", "two", "bm1")        // 2^(b−1)
	node("Sub", "lo0", "n", "h")          // narrow − 2^(b−1)
	node("Mul", "lo", "s", "lo0")         // lo
	node("Sub", "hs", "h", "one")         // 2^(b−1) − 1
	node("Mul", "hi1", "s", "hs")         //
	node("Sub", "pu", "p", "one")         // 2^b − 1
	node("Sub", "pun", "pu", "n")         // 2^b − 1 − narrow
	node("Sub", "us", "one", "s")         // 1 − signed
	node("Mul", "hi2", "us", "pun")       //
	node("Add", "hi", "hi1", "hi2")       // hi
	node("Div", "xs", "x", "scale")       //
	node("Add", "xz", "xs", "zeropt")     //
	node("Round", "r", "xz")              // half to even
	node("Max", "rl", "r", "lo")          //
	node("Min", "rh", "rl", "hi")         //
	node("Sub", "rz", "rh", "zeropt")     //
	node("Mul", "y", "rz", "scale")       //
	return &onnxpb.FunctionProto{
		Name: proto.String("Quant"), Domain: proto.String(QONNXDomain),
		Input: []string{"x", "scale", "zeropt", "bitwidth"}, Output: []string{"y"},
		Attribute:   []string{"signed", "narrow", "rounding_mode"},
		Node:        nodes,
		DocString:   proto.String("QONNX Quant, written by qnas in ONNX ops so that runtimes without the QONNX ops run the model"),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
	}
}

func uniform(v []int) bool {
	for _, x := range v {
		if x != v[0] {
			return false
		}
	}
	return true
}

func trimSuffix(s, suf string) string {
	if len(s) >= len(suf) && s[len(s)-len(suf):] == suf {
		return s[:len(s)-len(suf)]
	}
	return s
}
