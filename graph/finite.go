package graph

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// inputRoles names the inputs of ops whose constant inputs are learned parameters, for
// CheckFinite's messages ("weight", "bias", …); other inputs are called "input".
var inputRoles = map[string][]string{
	"Conv":               {"input", "weight", "bias"},
	"Gemm":               {"input", "weight", "bias"},
	"MatMul":             {"input", "weight"},
	"BatchNormalization": {"input", "scale", "bias", "mean", "variance"},
	"LayerNormalization": {"input", "scale", "bias"},
}

// inputRole names input i of op.
func inputRole(op string, i int) string {
	if r := inputRoles[op]; i < len(r) {
		return r[i]
	}
	return "input"
}

// nonFinite counts the NaN, +Inf and −Inf values of v.
type nonFinite struct{ nan, posInf, negInf int }

func countNonFinite(v []float32) nonFinite {
	var c nonFinite
	for _, x := range v {
		switch {
		case x != x:
			c.nan++
		case x > math.MaxFloat32:
			c.posInf++
		case x < -math.MaxFloat32:
			c.negInf++
		}
	}
	return c
}

func (c nonFinite) any() bool { return c.nan+c.posInf+c.negInf > 0 }

// String renders the counts, e.g. "3 NaN values" or "1 NaN and 2 +Inf values".
func (c nonFinite) String() string {
	var parts []string
	for _, p := range []struct {
		n    int
		what string
	}{{c.nan, "NaN"}, {c.posInf, "+Inf"}, {c.negInf, "-Inf"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	total := c.nan + c.posInf + c.negInf
	s := strings.Join(parts, " and ")
	if len(parts) > 2 {
		s = strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
	}
	if total == 1 {
		return s + " value"
	}
	return s + " values"
}

// CheckFinite reports the first node, in graph order, whose float constant inputs
// (weights, biases, BatchNorm statistics, folded constants) or float attributes hold NaN
// or ±Inf, e.g. `node "conv1" (Conv): weight "conv1.weight" has 3 NaN values`. Float
// attributes may be ±Inf (Clip's bounds) but not NaN. A float constant that is itself a
// graph output is checked too. It returns nil when every value is finite.
func (g *Graph) CheckFinite() error {
	checked := map[string]bool{} // each constant is scanned once, however many nodes read it
	for _, n := range g.Nodes {
		for i, in := range n.Inputs {
			t := g.Consts[in]
			if in == "" || t == nil || t.DType != Float32 || checked[in] {
				continue
			}
			checked[in] = true
			if c := countNonFinite(t.F); c.any() {
				return &NodeError{n.Name, n.Op, fmt.Sprintf("%s %q has %s", inputRole(n.Op, i), in, c)}
			}
		}
		for _, name := range slices.Sorted(maps.Keys(n.Attrs)) {
			a := n.Attrs[name]
			switch a.Kind {
			case AttrFloat:
				if a.F != a.F {
					return &NodeError{n.Name, n.Op, fmt.Sprintf("attribute %q is NaN", name)}
				}
			case AttrFloats:
				if c := countNonFinite(a.Floats); c.nan > 0 {
					return &NodeError{n.Name, n.Op, fmt.Sprintf("attribute %q has %s", name, nonFinite{nan: c.nan})}
				}
			case AttrTensor:
				if a.T != nil && a.T.DType == Float32 {
					if c := countNonFinite(a.T.F); c.any() {
						return &NodeError{n.Name, n.Op, fmt.Sprintf("attribute %q has %s", name, c)}
					}
				}
			}
		}
	}
	for _, o := range g.Outputs {
		if t := g.Consts[o]; t != nil && t.DType == Float32 && !checked[o] {
			checked[o] = true
			if c := countNonFinite(t.F); c.any() {
				return fmt.Errorf("constant graph output %q has %s", o, c)
			}
		}
	}
	return nil
}

// checkFloatInputs refuses integer constants as inputs of the ops whose inputs ONNX types
// as one float type T (Conv, Gemm, MatMul, BatchNormalization): `bias "b" is int64, want
// float`. Later passes read such inputs' float values.
func checkFloatInputs(c *Ctx) error {
	if _, ok := inputRoles[c.Node.Op]; !ok {
		return nil
	}
	for i, t := range c.Const {
		if t != nil && t.DType != Float32 {
			return c.Errorf("%s %q is %s, want float", inputRole(c.Node.Op, i), c.Node.Inputs[i], t.DType)
		}
	}
	return nil
}
