// Package graph is qnas's intermediate representation of a CNN: values with inferred shapes,
// nodes in topological order, constants, and the passes that canonicalize a model imported
// from ONNX (constant folding, identity removal, BatchNorm folding) and the cost models that
// count its parameters and multiply-accumulates.
//
// Activation shapes keep the batch dimension symbolic: Batch (-1) stands for N, so one graph
// serves every batch size and costs are per sample.
//
// Models come from strangers: import and the passes never panic on a malformed model and
// never allocate what it merely claims. Limits (set through ImportOptions.GraphLimits)
// bound the activation sizes shape inference accepts and the constants folding creates.
package graph

import (
	"fmt"
	"slices"
)

// Batch is the symbolic batch size N in an activation Shape.
const Batch = -1

// Shape is a tensor shape; a dimension equal to Batch is the symbolic batch size.
type Shape []int

// String renders the shape as N×C×H×W, with N for the batch dimension.
func (s Shape) String() string {
	if len(s) == 0 {
		return "scalar"
	}
	out := ""
	for i, d := range s {
		if i > 0 {
			out += "x"
		}
		if d == Batch {
			out += "N"
		} else {
			out += fmt.Sprint(d)
		}
	}
	return out
}

// PerSample returns the shape without a leading batch dimension.
func (s Shape) PerSample() Shape {
	if len(s) > 0 && s[0] == Batch {
		return s[1:]
	}
	return s
}

// Elems returns the number of elements, counting the batch dimension as 1.
func (s Shape) Elems() int64 {
	n := int64(1)
	for _, d := range s {
		if d != Batch {
			n *= int64(d)
		}
	}
	return n
}

// Node is one operator application.
type Node struct {
	Name    string
	Op      string
	Domain  string   // operator set domain; "" for the default ONNX domain
	Inputs  []string // "" marks an omitted optional input
	Outputs []string
	Attrs   map[string]*Attr
	Doc     string // doc_string carried from the input model
}

// Input returns the i-th input name, or "" when absent.
func (n *Node) Input(i int) string {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return ""
}

// Graph is a model: named inputs and outputs, nodes in topological order, constants
// (initializers and folded values) and the inferred shape of every value.
type Graph struct {
	Name    string
	Inputs  []string // non-constant graph inputs
	Outputs []string
	Nodes   []*Node
	Consts  map[string]*Tensor
	Shapes  map[string]Shape
	Opset   int               // default-domain opset of the source model
	Meta    map[string]string // model metadata_props
	Source  SourceInfo
	// Limits bounds shape inference and constant folding (zero value: DefaultLimits).
	Limits Limits
}

// SourceInfo records where a graph came from, for reports and inspect's header.
type SourceInfo struct {
	Path            string
	IRVersion       int64
	ProducerName    string
	ProducerVersion string
}

// New returns an empty graph.
func New(name string) *Graph {
	return &Graph{Name: name, Consts: map[string]*Tensor{}, Shapes: map[string]Shape{}, Meta: map[string]string{}}
}

// Producers maps each value name to the node that produces it.
func (g *Graph) Producers() map[string]*Node {
	m := make(map[string]*Node, len(g.Nodes))
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o != "" {
				m[o] = n
			}
		}
	}
	return m
}

// Consumers maps each value name to the nodes that read it, in graph order.
func (g *Graph) Consumers() map[string][]*Node {
	m := map[string][]*Node{}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			// n's own earlier inputs are the only place n can already be listed: the last entry.
			if l := m[in]; in != "" && (len(l) == 0 || l[len(l)-1] != n) {
				m[in] = append(l, n)
			}
		}
	}
	return m
}

// IsOutput reports whether the value is a graph output.
func (g *Graph) IsOutput(name string) bool { return slices.Contains(g.Outputs, name) }

// Clone returns a deep copy of the graph; constants are copied too.
func (g *Graph) Clone() *Graph {
	c := &Graph{
		Name: g.Name, Inputs: slices.Clone(g.Inputs), Outputs: slices.Clone(g.Outputs),
		Consts: make(map[string]*Tensor, len(g.Consts)), Shapes: make(map[string]Shape, len(g.Shapes)),
		Opset: g.Opset, Meta: make(map[string]string, len(g.Meta)), Source: g.Source, Limits: g.Limits,
	}
	for k, v := range g.Consts {
		c.Consts[k] = v.Clone()
	}
	for k, v := range g.Shapes {
		c.Shapes[k] = slices.Clone(v)
	}
	for k, v := range g.Meta {
		c.Meta[k] = v
	}
	for _, n := range g.Nodes {
		m := &Node{Name: n.Name, Op: n.Op, Domain: n.Domain, Inputs: slices.Clone(n.Inputs), Outputs: slices.Clone(n.Outputs), Doc: n.Doc,
			Attrs: make(map[string]*Attr, len(n.Attrs))}
		for k, a := range n.Attrs {
			m.Attrs[k] = a.clone()
		}
		c.Nodes = append(c.Nodes, m)
	}
	return c
}
