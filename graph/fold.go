package graph

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// matcher holds what the fold passes need to recognize a decomposed op: each value's
// producer and readers, the graph outputs, and the nodes matched so far.
type matcher struct {
	g         *Graph
	producers map[string]*Node
	consumers map[string][]*Node
	outputs   map[string]bool
	removed   map[*Node]bool
	position  map[*Node]int // index in g.Nodes
}

func (g *Graph) matcher() *matcher {
	m := &matcher{g: g, producers: g.Producers(), consumers: g.Consumers(), outputs: g.outputSet(), removed: map[*Node]bool{},
		position: make(map[*Node]int, len(g.Nodes))}
	for i, n := range g.Nodes {
		m.position[n] = i
	}
	return m
}

// producer returns the node of op that produces v, unless v is a graph output or a node
// already folded.
func (m *matcher) producer(v, op string) *Node {
	p := m.producers[v]
	if p == nil || p.Op != op || m.outputs[v] || m.removed[p] {
		return nil
	}
	return p
}

// only returns the single reader of v when it is a node of op and v is not a graph output.
func (m *matcher) only(v, op string) *Node {
	c := m.consumers[v]
	if len(c) != 1 || c[0].Op != op || m.outputs[v] || m.removed[c[0]] {
		return nil
	}
	return c[0]
}

// readBy reports whether exactly the nodes want read v (and v is not a graph output).
func (m *matcher) readBy(v string, want ...*Node) bool {
	c := m.consumers[v]
	if m.outputs[v] || len(c) != len(want) {
		return false
	}
	for _, n := range want {
		if !slices.Contains(c, n) {
			return false
		}
	}
	return true
}

// scalar returns the value of a one-element float constant.
func (m *matcher) scalar(v string) (float64, bool) {
	t := m.g.Consts[v]
	if t == nil || t.DType != Float32 || t.Len() != 1 {
		return 0, false
	}
	return float64(t.F[0]), true
}

// other returns the input of a two-input node that is not v ("" when neither or both).
func other(n *Node, v string) string {
	switch {
	case len(n.Inputs) != 2 || n.Inputs[0] == n.Inputs[1]:
		return ""
	case n.Inputs[0] == v:
		return n.Inputs[1]
	case n.Inputs[1] == v:
		return n.Inputs[0]
	}
	return ""
}

// constOperand returns the constant input of a two-input node whose other input is v.
func (m *matcher) constOperand(n *Node, v string) (string, *Tensor) {
	c := other(n, v)
	t := m.g.Consts[c]
	if c == "" || t == nil || t.DType != Float32 {
		return "", nil
	}
	return c, t
}

// near reports whether x is within float32 rounding of want.
func near(x, want float64) bool { return math.Abs(x-want) <= 1e-6*math.Abs(want) }

// replace puts the fused node n where last was and drops the matched nodes.
func (m *matcher) replace(last, n *Node, matched ...*Node) {
	for _, d := range matched {
		m.removed[d] = true
		for _, o := range d.Outputs {
			if o != last.Outputs[0] {
				delete(m.g.Shapes, o)
			}
		}
	}
	m.g.Nodes[m.position[last]] = n
}

// finish drops the matched nodes and the constants only they read.
func (m *matcher) finish() error {
	if len(m.removed) == 0 {
		return nil
	}
	m.g.Nodes = slices.DeleteFunc(m.g.Nodes, func(n *Node) bool { return m.removed[n] })
	return m.g.RemoveDeadCode()
}

// fusedName names the fused node after the path of the first matched node, as exporters
// name the unfused op ("/block/block.2/ReduceMean" → "/block/block.2/LayerNormalization").
func (m *matcher) fusedName(first *Node, op string, names map[string]bool) string {
	base := op
	if i := strings.LastIndex(first.Name, "/"); i >= 0 {
		base = first.Name[:i+1] + op
	}
	name := base
	for k := 2; names[name]; k++ {
		name = base + "_" + strconv.Itoa(k)
	}
	names[name] = true
	return name
}

func nodeNames(g *Graph) map[string]bool {
	s := make(map[string]bool, len(g.Nodes))
	for _, n := range g.Nodes {
		s[n.Name] = true
	}
	return s
}

// FoldLayerNorm replaces the opset-13 decomposition of layer normalization,
//
//	d = x − ReduceMean(x); y = d / √(ReduceMean(d²) + ε) [· scale] [+ bias]
//
// (d² as Pow(d, 2) or d·d, both means over the same trailing axes), by one
// LayerNormalization node producing y. Scale and bias must be constants that broadcast
// to the normalized shape; the node gets its own copies when other nodes read them too.
func (g *Graph) FoldLayerNorm() error {
	m := g.matcher()
	names := nodeNames(g)
	var vn *valueNames
	for _, div := range slices.Clone(g.Nodes) {
		if div.Op != "Div" || len(div.Inputs) != 2 {
			continue
		}
		d, den := div.Inputs[0], div.Inputs[1]
		sub := m.producer(d, "Sub")
		sqrt := m.producer(den, "Sqrt")
		if sub == nil || sqrt == nil || !m.readBy(den, div) {
			continue
		}
		x := sub.Inputs[0]
		rm1 := m.producer(sub.Inputs[1], "ReduceMean")
		add := m.producer(sqrt.Inputs[0], "Add")
		if rm1 == nil || add == nil || rm1.Inputs[0] != x || !m.readBy(rm1.Outputs[0], sub) || !m.readBy(add.Outputs[0], sqrt) {
			continue
		}
		var rm2 *Node
		var eps float64
		for _, in := range add.Inputs {
			if v, ok := m.scalar(in); ok {
				eps = v
			} else {
				rm2 = m.producer(in, "ReduceMean")
			}
		}
		if rm2 == nil || !m.readBy(rm2.Outputs[0], add) || !(eps >= 0) {
			continue
		}
		sq := m.producers[rm2.Inputs[0]]
		if sq == nil || m.removed[sq] || !m.readBy(sq.Outputs[0], rm2) || !m.readBy(d, sq, div) {
			continue
		}
		switch sq.Op {
		case "Pow":
			if e, ok := m.scalar(sq.Input(1)); !ok || e != 2 || sq.Inputs[0] != d {
				continue
			}
		case "Mul":
			if sq.Inputs[0] != d || sq.Input(1) != d {
				continue
			}
		default:
			continue
		}
		// The two means must reduce the same trailing axes, keeping them.
		xs := g.Shapes[x]
		a1, err1 := g.ReduceAxes(rm1)
		a2, err2 := g.ReduceAxes(rm2)
		k1, _ := rm1.Int("keepdims", 1)
		k2, _ := rm2.Int("keepdims", 1)
		if err1 != nil || err2 != nil || len(a1) == 0 || !slices.Equal(a1, a2) || k1 == 0 || k2 == 0 || len(xs) == 0 ||
			a1[0] != len(xs)-len(a1) || a1[len(a1)-1] != len(xs)-1 {
			continue
		}
		axis := a1[0]
		norm := xs[axis:]
		if slices.Contains(norm, Batch) || norm.Elems() > g.limits().MaxConstFoldElems {
			continue // scale and shift become constants of the normalized shape
		}
		// Optional scale, then optional shift.
		last, y := div, div.Outputs[0]
		matched := []*Node{rm1, sub, sq, rm2, add, sqrt, div}
		affine := func(op string) *Tensor {
			n := m.only(y, op)
			if n == nil {
				return nil
			}
			c, t := m.constOperand(n, y)
			if t == nil || !broadcastsTo(trimOnes(t.Shape), norm) || len(t.Shape) > len(xs) {
				return nil
			}
			matched = append(matched, n)
			last, y = n, n.Outputs[0]
			if len(m.consumers[c]) > 1 || !slices.Equal(t.Shape, []int(norm)) {
				t = broadcastConst(t, norm)
			}
			return t
		}
		scale := affine("Mul")
		bias := affine("Add")
		if scale == nil {
			scale = broadcastConst(NewFloat(nil, []float32{1}), norm)
		}
		if vn == nil {
			vn = g.valueNames()
		}
		name := m.fusedName(rm1, "LayerNormalization", names)
		inputs := []string{x, vn.unique(name + "/scale")}
		g.Consts[inputs[1]] = scale
		if bias != nil {
			inputs = append(inputs, vn.unique(name+"/bias"))
			g.Consts[inputs[2]] = bias
		}
		ln := &Node{Name: name, Op: "LayerNormalization", Inputs: inputs, Outputs: []string{y}, Attrs: map[string]*Attr{}, Doc: last.Doc}
		ln.SetInt("axis", int64(axis-len(xs)))
		ln.SetFloat("epsilon", float32(eps))
		m.replace(last, ln, matched...)
	}
	return m.finish()
}

// FoldGelu replaces GELU's erf form, x·(1 + erf(x/√2))·½ (x/√2 as a Div by √2 or a Mul
// by 1/√2; the ½ applied last or to x first), by one Gelu node.
func (g *Graph) FoldGelu() error {
	m := g.matcher()
	names := nodeNames(g)
	for _, erf := range slices.Clone(g.Nodes) {
		if erf.Op != "Erf" || m.removed[erf] {
			continue
		}
		in := erf.Inputs[0]
		var scaleNode *Node
		var x string
		if p := m.producer(in, "Div"); p != nil {
			if c, ok := m.scalar(p.Input(1)); ok && near(c, math.Sqrt2) {
				scaleNode, x = p, p.Inputs[0]
			}
		} else if p := m.producer(in, "Mul"); p != nil {
			for i, op := range p.Inputs {
				if c, ok := m.scalar(op); ok && near(c, 1/math.Sqrt2) && len(p.Inputs) == 2 {
					scaleNode, x = p, p.Inputs[1-i]
				}
			}
		}
		if scaleNode == nil || !m.readBy(in, erf) {
			continue
		}
		add := m.only(erf.Outputs[0], "Add")
		if add == nil {
			continue
		}
		if one, ok := m.scalar(other(add, erf.Outputs[0])); !ok || one != 1 {
			continue
		}
		mul := m.only(add.Outputs[0], "Mul")
		if mul == nil {
			continue
		}
		isHalf := func(n *Node, v string) bool {
			h, ok := m.scalar(other(n, v))
			return ok && h == 0.5
		}
		var last *Node
		matched := []*Node{scaleNode, erf, add, mul}
		switch o := other(mul, add.Outputs[0]); {
		case o == x: // (x·(1 + erf))·½
			if half := m.only(mul.Outputs[0], "Mul"); half != nil && isHalf(half, mul.Outputs[0]) {
				last = half
				matched = append(matched, half)
			}
		case o != "": // (x·½)·(1 + erf)
			if h := m.producer(o, "Mul"); h != nil && m.readBy(o, mul) && other(h, x) != "" && isHalf(h, x) {
				last = mul
				matched = append(matched, h)
			}
		}
		if last == nil {
			continue
		}
		gelu := &Node{Name: m.fusedName(erf, "Gelu", names), Op: "Gelu", Inputs: []string{x}, Outputs: []string{last.Outputs[0]},
			Attrs: map[string]*Attr{}, Doc: last.Doc}
		m.replace(last, gelu, matched...)
	}
	return m.finish()
}

// trimOnes drops leading 1s from a shape.
func trimOnes(s []int) Shape {
	for len(s) > 0 && s[0] == 1 {
		s = s[1:]
	}
	return Shape(s)
}

// broadcastConst returns a new float tensor of shape to holding t broadcast to it.
func broadcastConst(t *Tensor, to Shape) *Tensor {
	out := make([]float32, to.Elems())
	for k, p := range broadcastPairs(trimOnes(t.Shape), []int(to), to) {
		out[k] = t.F[p[0]]
	}
	return NewFloat(to, out)
}

// FoldScale folds y = c·x, c a float constant with one value per channel of x (or one value
// for all), into the Conv, Gemm or MatMul with constant weights that produces x, through
// the Add of its bias and any Transposes, each read by nothing else: the layer's filters,
// its bias and the bias Add's constant are scaled by c and the Mul is dropped (the last node
// of the chain now writes y). A layer scale (ConvNeXt's γ after each block's pointwise
// layers) so becomes part of the layer before it. Per-channel quantization of the scaled
// filters rounds to the same integers, each filter's scale multiplied by |c|.
func (g *Graph) FoldScale() error {
	m := g.matcher()
	for _, mul := range slices.Clone(g.Nodes) {
		if mul.Op != "Mul" || len(mul.Inputs) != 2 || m.removed[mul] {
			continue
		}
		for _, x := range mul.Inputs {
			if _, c := m.constOperand(mul, x); c != nil && g.Consts[x] == nil && m.foldScale(mul, x, c) {
				break
			}
		}
	}
	return m.finish()
}

// scaledConst is a constant to multiply by the scale, and the axis of its values that runs
// along the channels (-1: one value).
type scaledConst struct {
	name string
	axis int
	dims int // the dimensions a one-value bias made per-channel needs to broadcast as it did
}

// foldScale folds mul = c·x into the layer that produces x, if it can; see FoldScale.
func (m *matcher) foldScale(mul *Node, x string, c *Tensor) bool {
	g := m.g
	axis := varyingAxis(c.Shape, g.Shapes[x])
	if axis == -2 || axis == 0 {
		return false
	}
	var consts []scaledConst // biases, in the activations' coordinates
	single := func(name string) bool { return len(m.consumers[name]) == 1 && g.Consts[name].DType == Float32 }
	v, ax := x, axis
	for {
		p := m.producers[v]
		if p == nil || m.removed[p] || m.outputs[v] || len(m.consumers[v]) != 1 {
			return false
		}
		switch p.Op {
		case "Transpose":
			perm, err := g.TransposePerm(p)
			if err != nil {
				return false
			}
			if ax >= 0 {
				ax = perm[ax]
			}
			v = p.Inputs[0]
			continue
		case "Add":
			if len(p.Inputs) != 2 {
				return false
			}
			act, bname := p.Inputs[0], p.Inputs[1]
			if g.Consts[act] != nil {
				act, bname = bname, act
			}
			b := g.Consts[bname]
			if b == nil || b.DType != Float32 || g.Consts[act] != nil || !single(bname) {
				return false
			}
			xs := g.Shapes[act]
			bAxis := varyingAxis(b.Shape, xs)
			if bAxis == -2 || ax >= 0 && bAxis >= 0 && bAxis != ax {
				return false
			}
			sc := scaledConst{name: bname, axis: -1, dims: len(xs) - ax}
			if bAxis >= 0 {
				sc.axis = bAxis - (len(xs) - len(b.Shape))
			}
			consts = append(consts, sc)
			v = act
			continue
		}
		break
	}
	layer := m.producers[v]
	if layer == nil || m.removed[layer] {
		return false
	}
	w := g.Consts[layer.Input(1)]
	if w == nil || w.DType != Float32 || len(w.Shape) < 2 || !single(layer.Inputs[1]) || g.Consts[layer.Inputs[0]] != nil {
		return false
	}
	var wAxis, outAxis int
	switch layer.Op {
	case "Conv":
		wAxis, outAxis = 0, 1
	case "Gemm":
		if tb, _ := layer.Int("transB", 0); tb == 0 {
			wAxis = 1
		}
		outAxis = 1
	case "MatMul":
		if len(w.Shape) != 2 {
			return false
		}
		wAxis, outAxis = 1, len(g.Shapes[v])-1
	default:
		return false
	}
	oc := w.Shape[wAxis]
	if ax >= 0 && (ax != outAxis || c.Len() != oc) {
		return false
	}
	if b := layer.Input(2); b != "" {
		t := g.Consts[b]
		if t == nil || !single(b) || t.Len() != oc && t.Len() != 1 {
			return false
		}
		bAxis := 0
		if t.Len() == 1 {
			bAxis = -1
		}
		consts = append(consts, scaledConst{name: b, axis: bAxis, dims: 1})
	}
	scale := func(ch int) float32 {
		if c.Len() == 1 {
			return c.F[0]
		}
		return c.F[ch]
	}
	nw := w.Clone()
	forEachChannel(nw, wAxis, func(i, ch int) { nw.F[i] *= scale(ch) })
	g.Consts[layer.Inputs[1]] = nw
	for _, sc := range consts {
		t := g.Consts[sc.name].Clone()
		if sc.axis < 0 && c.Len() > 1 { // one bias for all channels becomes one per channel
			shape := make([]int, sc.dims)
			for i := range shape {
				shape[i] = 1
			}
			shape[0] = oc
			vals := make([]float32, oc)
			for i := range vals {
				vals[i] = t.F[0]
			}
			t, sc.axis = NewFloat(shape, vals), 0
		}
		if sc.axis < 0 {
			t.F[0] *= scale(0)
		} else {
			forEachChannel(t, sc.axis, func(i, ch int) { t.F[i] *= scale(ch) })
		}
		g.Consts[sc.name] = t
	}
	// The node that wrote x writes y instead; the Mul goes.
	y := mul.Outputs[0]
	last := m.producers[x]
	for i, o := range last.Outputs {
		if o == x {
			last.Outputs[i] = y
		}
	}
	m.producers[y] = last
	delete(g.Shapes, x)
	m.removed[mul] = true
	return true
}

// varyingAxis returns the axis of an activation of shape x along which a constant of shape
// c, broadcast against it, varies: -1 when c holds one value, -2 when c varies along more
// than one axis or does not broadcast.
func varyingAxis(c []int, x Shape) int {
	off := len(x) - len(c)
	if off < 0 {
		return -2
	}
	axis := -1
	for i, d := range c {
		if d == 1 {
			continue
		}
		if axis >= 0 || d != x[i+off] {
			return -2
		}
		axis = i + off
	}
	return axis
}

// forEachChannel calls fn with every element index of t and its index along axis.
func forEachChannel(t *Tensor, axis int, fn func(i, ch int)) {
	inner := 1
	for _, d := range t.Shape[axis+1:] {
		inner *= d
	}
	n := t.Shape[axis]
	for i := range t.F {
		fn(i, i/inner%n)
	}
}
