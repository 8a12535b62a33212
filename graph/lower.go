package graph

import (
	"math"
	"slices"
)

// Ops newer than some models' opset: the fold passes introduce them into graphs of any
// opset (the opset-13 LayerNorm and GELU decompositions become one node each), and
// ToONNX writes them back as that decomposition when the graph's opset predates them.
const (
	layerNormOpset = 17
	geluOpset      = 20
)

// lowering builds the replacement nodes of one node, naming new values after it.
type lowering struct {
	g      *Graph
	n      *Node
	names  *valueNames
	nodes  []*Node
	consts map[string]*Tensor
}

// value returns a fresh value name for role.
func (l *lowering) value(role string) string { return l.names.unique(l.n.Name + "/" + role) }

// scalar adds a float constant.
func (l *lowering) scalar(role string, v float32) string {
	name := l.value(role)
	l.consts[name] = NewFloat(nil, []float32{v})
	return name
}

// op appends a node reading in and writing out (a fresh value when out is "").
func (l *lowering) op(op, role string, out string, in ...string) string {
	if out == "" {
		out = l.value(role)
	}
	l.nodes = append(l.nodes, &Node{Name: l.n.Name + "/" + role, Op: op, Inputs: in, Outputs: []string{out}, Attrs: map[string]*Attr{}})
	return out
}

// lowerForOpset returns g's nodes with LayerNormalization (before opset 17) and Gelu
// (before opset 20) replaced by the decompositions exporters of those opsets write, the
// other nodes in the form of g's opset (formForOpset), and the constants all this adds.
func (g *Graph) lowerForOpset() ([]*Node, map[string]*Tensor, error) {
	consts := map[string]*Tensor{}
	var names *valueNames
	var out []*Node
	for _, n := range g.Nodes {
		lower := (n.Op == "LayerNormalization" && g.Opset < layerNormOpset) || (n.Op == "Gelu" && g.Opset < geluOpset)
		if names == nil && (lower || n.Op == "ReduceMean" || n.Op == "Split") {
			names = g.valueNames()
		}
		if !lower {
			m, err := g.formForOpset(n, names, consts)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, m)
			continue
		}
		l := &lowering{g: g, n: n, names: names, consts: consts}
		var err error
		if n.Op == "Gelu" {
			err = l.gelu()
		} else {
			err = l.layerNorm()
		}
		if err != nil {
			return nil, nil, err
		}
		out = append(out, l.nodes...)
	}
	return out, consts, nil
}

// layerNorm writes (x − mean)/√(var + ε)·scale + bias with ReduceMean over the
// normalized axes, as torch.onnx writes layer_norm at opset 13; the Mean and InvStdDev
// outputs, when named, come from the same values.
func (l *lowering) layerNorm() error {
	n := l.n
	x := n.Inputs[0]
	rank := len(l.g.Shapes[x])
	if t := l.g.Consts[x]; t != nil {
		rank = len(t.Shape)
	}
	axis, eps, err := LayerNormAxis(n, rank)
	if err != nil {
		return err
	}
	var axes []int64
	for a := axis; a < rank; a++ {
		axes = append(axes, int64(a-rank))
	}
	outName := func(i int) string {
		if i < len(n.Outputs) {
			return n.Outputs[i]
		}
		return ""
	}
	mean := l.op("ReduceMean", "ReduceMean", outName(1), x)
	d := l.op("Sub", "Sub", "", x, mean)
	sq := l.op("Mul", "Square", "", d, d)
	v := l.op("ReduceMean", "ReduceMean_1", "", sq)
	for _, nd := range l.nodes {
		if nd.Op == "ReduceMean" {
			nd.SetInts("axes", axes)
		}
	}
	s := l.op("Sqrt", "Sqrt", "", l.op("Add", "AddEpsilon", "", v, l.scalar("epsilon", eps)))
	if o := outName(2); o != "" {
		l.op("Div", "Reciprocal", o, l.scalar("one", 1), s)
	}
	bias := n.Input(2)
	y := n.Outputs[0]
	normed := l.op("Div", "Div", "", d, s)
	if bias == "" {
		l.op("Mul", "Scale", y, normed, n.Inputs[1])
		return nil
	}
	l.op("Add", "Shift", y, l.op("Mul", "Scale", "", normed, n.Inputs[1]), bias)
	return nil
}

// gelu writes x·(1 + erf(x/√2))/2, as torch.onnx writes GELU, or the tanh approximation.
func (l *lowering) gelu() error {
	n := l.n
	tanh, err := GeluTanh(n)
	if err != nil {
		return err
	}
	x := n.Inputs[0]
	var t string
	if tanh {
		cube := l.op("Mul", "Cube", "", l.op("Mul", "Square", "", x, x), x)
		inner := l.op("Add", "Add", "", x, l.op("Mul", "Mul", "", cube, l.scalar("c", 0.044715)))
		t = l.op("Tanh", "Tanh", "", l.op("Mul", "Mul_1", "", inner, l.scalar("k", float32(math.Sqrt(2/math.Pi)))))
	} else {
		t = l.op("Erf", "Erf", "", l.op("Div", "Div", "", x, l.scalar("sqrt2", math.Sqrt2)))
	}
	half := l.op("Mul", "Mul_2", "", x, l.op("Add", "Add_1", "", t, l.scalar("one", 1)))
	l.op("Mul", "Mul_3", n.Outputs[0], half, l.scalar("half", 0.5))
	return nil
}

// formForOpset returns n as g's opset spells it, a copy when that differs from how n was
// read (a graph's opset is raised on export, and passes build nodes in either form):
// ReduceMean's axes are an attribute before opset 18 and an input from 18 on; an equal
// Split states num_outputs from 18 on and its sizes before.
func (g *Graph) formForOpset(n *Node, names *valueNames, consts map[string]*Tensor) (*Node, error) {
	c := g.ctx(n)
	switch {
	case n.Op == "ReduceMean" && g.Opset >= 18 && n.Has("axes"):
		axes, _ := n.Ints("axes", nil)
		m := n.copyNode()
		delete(m.Attrs, "axes")
		name := names.unique(n.Name + "/axes")
		consts[name] = NewInt([]int{len(axes)}, slices.Clone(axes))
		m.Inputs = []string{n.Inputs[0], name}
		return m, nil
	case n.Op == "ReduceMean" && g.Opset < 18 && c.Has(1):
		axes, err := c.ConstInts(1, "axes")
		if err != nil {
			return nil, err
		}
		m := n.copyNode()
		m.Inputs = m.Inputs[:1]
		if len(axes) > 0 {
			m.SetInts("axes", slices.Clone(axes))
		}
		return m, nil
	case n.Op == "Split" && !c.Has(1) && !n.Has("split") && (g.Opset >= 18) != n.Has("num_outputs"):
		m := n.copyNode()
		if g.Opset >= 18 {
			m.SetInt("num_outputs", int64(len(n.Outputs)))
			return m, nil
		}
		_, sizes, err := splitSizes(c, c.In[0])
		if err != nil {
			return nil, err
		}
		delete(m.Attrs, "num_outputs")
		v := make([]int64, len(sizes))
		for i, s := range sizes {
			v[i] = int64(s)
		}
		if g.Opset < 13 {
			m.SetInts("split", v)
			return m, nil
		}
		name := names.unique(n.Name + "/split")
		consts[name] = NewInt([]int{len(v)}, v)
		m.Inputs = []string{n.Inputs[0], name}
		return m, nil
	}
	return n, nil
}

// copyNode returns a copy of n whose inputs and attributes can be changed.
func (n *Node) copyNode() *Node {
	m := *n
	m.Inputs = slices.Clone(n.Inputs)
	m.Attrs = make(map[string]*Attr, len(n.Attrs))
	for k, a := range n.Attrs {
		m.Attrs[k] = a.clone()
	}
	return &m
}
