package supernet

import (
	"fmt"

	"github.com/qnas/qnas/graph"
)

// Prune returns a copy of the space's graph with the channels each group does not keep
// removed physically: the producers' filters and biases, the BatchNormalizations and
// per-channel constants (a MatMul's bias Add, a layer scale) on those channels, depthwise
// convolutions (and their group count), the readers' input channels (a Gemm's columns
// after a Flatten; the positions of each member's channels in a concatenation), and Reshape
// targets; shapes are then inferred again. keep maps a group to its kept channels
// (ascending); groups not in it keep everything. Node and value names do not change.
func (s *Space) Prune(keep map[*Group][]int) (*graph.Graph, error) {
	g := s.Graph.Clone()
	for gr, k := range keep {
		if len(k) < gr.Channels && !gr.Prunable {
			return nil, fmt.Errorf("channels of %q cannot be pruned (%s)", gr.Name(), gr.Reason)
		}
	}
	kept := func(v string) (chanRef, []int) {
		r := s.chans[v]
		return r, keptChannels(r, keep)
	}
	sliced := map[string]bool{}
	slice := func(n *graph.Node, input, axis int, idx []int) error {
		name := n.Inputs[input]
		t := g.Consts[name]
		if t == nil {
			return fmt.Errorf("node %q: input %q is not a constant; qnas cannot prune it", n.Name, name)
		}
		key := fmt.Sprint(name, "/", axis)
		if sliced[key] {
			return fmt.Errorf("node %q: constant %q is shared with another layer; qnas cannot prune it", n.Name, name)
		}
		sliced[key] = true
		st, err := sliceAxis(t, axis, idx)
		if err != nil {
			return fmt.Errorf("node %q: %q: %v", n.Name, name, err)
		}
		g.Consts[name] = st
		return nil
	}
	for i, n := range g.Nodes {
		orig := s.Graph.Nodes[i]
		if l := s.byName[orig.Name]; l != nil && l.Node == orig {
			if _, k := kept(orig.Outputs[0]); k != nil {
				if err := slice(n, 1, l.WAxis, k); err != nil {
					return nil, err
				}
				if l.Bias != "" && g.Consts[l.Bias].Len() == l.Filters {
					if err := slice(n, 2, 0, k); err != nil {
						return nil, err
					}
				}
				if l.Depthwise {
					n.SetInt("group", int64(len(k)))
				}
			}
			if r, k := kept(l.Input); k != nil && !l.Depthwise {
				if l.Op == "Conv" {
					if err := slice(n, 1, 1, k); err != nil {
						return nil, err
					}
				} else {
					cols := make([]int, 0, len(k)*r.factor)
					for _, c := range k {
						for j := 0; j < r.factor; j++ {
							cols = append(cols, c*r.factor+j)
						}
					}
					if err := slice(n, 1, 1-l.WAxis, cols); err != nil {
						return nil, err
					}
				}
			}
			continue
		}
		switch n.Op {
		case "BatchNormalization":
			if _, k := kept(n.Inputs[0]); k != nil {
				for j := 1; j <= 4; j++ {
					if err := slice(n, j, 0, k); err != nil {
						return nil, err
					}
				}
			}
		case "Add", "Sub", "Mul", "Div":
			if c, axis, ok := s.perChannelConst(orig); ok && axis >= 0 {
				if _, k := kept(n.Inputs[1-c]); k != nil {
					if err := slice(n, c, axis, k); err != nil {
						return nil, err
					}
				}
			}
		case "Reshape":
			if _, k := kept(n.Inputs[0]); k != nil {
				out, _ := kept(n.Outputs[0])
				name := n.Name + "/pruned_shape"
				if _, used := g.Consts[name]; used {
					return nil, fmt.Errorf("node %q: the name %q is taken", n.Name, name)
				}
				g.Consts[name] = graph.NewInt([]int{2}, []int64{-1, int64(len(k) * out.factor)})
				n.Inputs[1] = name
			}
		}
	}
	if err := g.Rebuild(g.Nodes); err != nil {
		return nil, fmt.Errorf("pruned graph: %w", err)
	}
	return g, nil
}

// sliceAxis returns the entries idx of t along axis.
func sliceAxis(t *graph.Tensor, axis int, idx []int) (*graph.Tensor, error) {
	if axis >= len(t.Shape) {
		return nil, fmt.Errorf("has shape %v, no axis %d", t.Shape, axis)
	}
	outer, inner := 1, 1
	for _, d := range t.Shape[:axis] {
		outer *= d
	}
	for _, d := range t.Shape[axis+1:] {
		inner *= d
	}
	n := t.Shape[axis]
	shape := append([]int{}, t.Shape...)
	shape[axis] = len(idx)
	out := &graph.Tensor{DType: t.DType, Shape: shape}
	for o := 0; o < outer; o++ {
		for _, c := range idx {
			if c < 0 || c >= n {
				return nil, fmt.Errorf("index %d is outside axis %d of size %d", c, axis, n)
			}
			base := (o*n + c) * inner
			if t.DType.IsInt() {
				out.I = append(out.I, t.I[base:base+inner]...)
			} else {
				out.F = append(out.F, t.F[base:base+inner]...)
			}
		}
	}
	return out, nil
}

// Masked returns a copy of the space's graph in which the channels each group does not keep
// are multiplied by zero where their producers write them (after the BatchNormalization or
// the bias Add that follows a producer, if any): the model pruning must reproduce. keep is
// as for Prune.
func (s *Space) Masked(keep map[*Group][]int) (*graph.Graph, error) {
	g := s.Graph.Clone()
	consumers := g.Consumers()
	var out []*graph.Node
	after := map[string][]*graph.Node{} // nodes to insert after the node producing a value
	for gr, k := range keep {
		mask := make([]float32, gr.Channels)
		for _, c := range k {
			mask[c] = 1
		}
		for _, l := range gr.Producers {
			v := s.maskPoint(l, consumers)
			axis := s.chans[v].axis
			shape := make([]int, len(g.Shapes[v]))
			for i := range shape {
				shape[i] = 1
			}
			shape[axis] = gr.Channels
			m := &graph.Node{Name: v + "/mask", Op: "Mul", Inputs: []string{v + "/masked_in", v + "/mask"}, Outputs: []string{v}}
			g.Consts[v+"/mask"] = graph.NewFloat(shape, mask)
			after[v] = append(after[v], m)
		}
	}
	for _, n := range g.Nodes {
		out = append(out, n)
		for i, o := range n.Outputs {
			if ms := after[o]; len(ms) > 0 {
				n.Outputs[i] = o + "/masked_in"
				out = append(out, ms...)
			}
		}
	}
	g.Nodes = out
	if err := g.InferShapes(); err != nil {
		return nil, err
	}
	return g, nil
}

// maskPoint is the value in which layer l's filters are its group's channels as the
// layer's readers see them: its output, after the BatchNormalization and then the Add of a
// per-channel bias that alone read it, if any.
func (s *Space) maskPoint(l *Layer, consumers map[string][]*graph.Node) string {
	v := l.Node.Outputs[0]
	if cs := consumers[v]; len(cs) == 1 && cs[0].Op == "BatchNormalization" && !s.Graph.IsOutput(v) {
		v = cs[0].Outputs[0]
	}
	if cs := consumers[v]; len(cs) == 1 && cs[0].Op == "Add" && !s.Graph.IsOutput(v) {
		if _, axis, ok := s.perChannelConst(cs[0]); ok && axis >= 0 {
			v = cs[0].Outputs[0]
		}
	}
	return v
}
