package graph

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Dump writes the graph as text, one line per input, constant, node and output; the format
// is stable (golden files hold it) and shows every value's inferred shape.
func (g *Graph) Dump(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "graph %q opset %d\n", g.Name, g.Opset)
	for _, in := range g.Inputs {
		fmt.Fprintf(&b, "input  %s: %s\n", in, g.Shapes[in])
	}
	names := make([]string, 0, len(g.Consts))
	for k := range g.Consts {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t := g.Consts[k]
		fmt.Fprintf(&b, "const  %s: %s%v", k, t.DType, t.Shape)
		if t.Len() <= 8 {
			if t.DType.IsInt() {
				fmt.Fprintf(&b, " = %v", fmtInts(t.I))
			} else {
				fmt.Fprintf(&b, " = %v", t.F)
			}
		}
		b.WriteByte('\n')
	}
	for _, n := range g.Nodes {
		op := n.Op
		if n.Domain != "" {
			op = n.Domain + "::" + op
		}
		fmt.Fprintf(&b, "node   %s: %s(%s)", n.Name, op, strings.Join(n.Inputs, ", "))
		keys := make([]string, 0, len(n.Attrs))
		for k := range n.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%s", k, n.Attrs[k])
		}
		b.WriteString(" ->")
		for i, o := range n.Outputs {
			if i > 0 {
				b.WriteByte(',')
			}
			if s, ok := g.Shapes[o]; ok {
				fmt.Fprintf(&b, " %s: %s", o, s)
			} else {
				fmt.Fprintf(&b, " %s", o)
			}
		}
		b.WriteByte('\n')
	}
	for _, o := range g.Outputs {
		fmt.Fprintf(&b, "output %s: %s\n", o, g.Shapes[o])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtInts(v []int64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		if x == SymBatch {
			parts[i] = "N"
		} else {
			parts[i] = fmt.Sprint(x)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}
