package graph

import (
	"fmt"
	"slices"
)

// AttrKind is the type of a node attribute.
type AttrKind uint8

// Attribute kinds qnas understands (subgraph attributes are refused at import).
const (
	AttrInt AttrKind = iota + 1
	AttrFloat
	AttrString
	AttrInts
	AttrFloats
	AttrStrings
	AttrTensor
)

// Attr is one attribute value; the field matching Kind is set.
type Attr struct {
	Kind    AttrKind
	I       int64
	F       float32
	S       string
	Ints    []int64
	Floats  []float32
	Strings []string
	T       *Tensor
}

func (a *Attr) clone() *Attr {
	c := *a
	c.Ints, c.Floats, c.Strings = slices.Clone(a.Ints), slices.Clone(a.Floats), slices.Clone(a.Strings)
	if a.T != nil {
		c.T = a.T.Clone()
	}
	return &c
}

// String renders the value compactly for graph dumps.
func (a *Attr) String() string {
	switch a.Kind {
	case AttrInt:
		return fmt.Sprint(a.I)
	case AttrFloat:
		return fmt.Sprint(a.F)
	case AttrString:
		return fmt.Sprintf("%q", a.S)
	case AttrInts:
		return fmt.Sprint(a.Ints)
	case AttrFloats:
		return fmt.Sprint(a.Floats)
	case AttrStrings:
		return fmt.Sprintf("%q", a.Strings)
	case AttrTensor:
		return fmt.Sprintf("tensor<%s %v>", a.T.DType, a.T.Shape)
	}
	return "?"
}

// AttrError reports an attribute of the wrong kind or with a bad value.
type AttrError struct {
	Node, Op, Attr, Msg string
}

func (e *AttrError) Error() string {
	return fmt.Sprintf("node %q (%s): attribute %q: %s", e.Node, e.Op, e.Attr, e.Msg)
}

func (n *Node) attr(name string, kind AttrKind) (*Attr, error) {
	a, ok := n.Attrs[name]
	if !ok {
		return nil, nil
	}
	if a.Kind != kind {
		return nil, &AttrError{n.Name, n.Op, name, "has the wrong type"}
	}
	return a, nil
}

// Int returns an integer attribute, or def when absent.
func (n *Node) Int(name string, def int64) (int64, error) {
	a, err := n.attr(name, AttrInt)
	if a == nil || err != nil {
		return def, err
	}
	return a.I, nil
}

// Float returns a float attribute, or def when absent.
func (n *Node) Float(name string, def float32) (float32, error) {
	a, err := n.attr(name, AttrFloat)
	if a == nil || err != nil {
		return def, err
	}
	return a.F, nil
}

// String returns a string attribute, or def when absent.
func (n *Node) String(name string, def string) (string, error) {
	a, err := n.attr(name, AttrString)
	if a == nil || err != nil {
		return def, err
	}
	return a.S, nil
}

// Ints returns an integer-list attribute, or def when absent.
func (n *Node) Ints(name string, def []int64) ([]int64, error) {
	a, err := n.attr(name, AttrInts)
	if a == nil || err != nil {
		return def, err
	}
	return a.Ints, nil
}

// Floats returns a float-list attribute, or def when absent.
func (n *Node) Floats(name string, def []float32) ([]float32, error) {
	a, err := n.attr(name, AttrFloats)
	if a == nil || err != nil {
		return def, err
	}
	return a.Floats, nil
}

// Has reports whether the attribute is present.
func (n *Node) Has(name string) bool { _, ok := n.Attrs[name]; return ok }

// SetInt sets an integer attribute.
func (n *Node) SetInt(name string, v int64) { n.setAttr(name, &Attr{Kind: AttrInt, I: v}) }

// SetInts sets an integer-list attribute.
func (n *Node) SetInts(name string, v []int64) { n.setAttr(name, &Attr{Kind: AttrInts, Ints: v}) }

// SetFloats sets a float-list attribute.
func (n *Node) SetFloats(name string, v []float32) {
	n.setAttr(name, &Attr{Kind: AttrFloats, Floats: v})
}

// SetFloat sets a float attribute.
func (n *Node) SetFloat(name string, v float32) { n.setAttr(name, &Attr{Kind: AttrFloat, F: v}) }

// SetString sets a string attribute.
func (n *Node) SetString(name string, v string) { n.setAttr(name, &Attr{Kind: AttrString, S: v}) }

func (n *Node) setAttr(name string, a *Attr) {
	if n.Attrs == nil {
		n.Attrs = map[string]*Attr{}
	}
	n.Attrs[name] = a
}
