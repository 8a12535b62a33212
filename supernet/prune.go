package supernet

import (
	"fmt"
	"slices"

	"github.com/qnas/qnas/graph"
)

// Prune returns a copy of the space's graph with the channels each group does not keep
// removed physically: the producers' filters and biases, the BatchNormalizations on those
// channels, depthwise convolutions (and their group count), the readers' input channels
// (a Gemm's columns after a Flatten), and Reshape targets; shapes are then inferred again.
// keep maps a group to its kept channels (ascending); groups not in it keep everything.
// Node and value names do not change.
func (s *Space) Prune(keep map[*Group][]int) (*graph.Graph, error) {
	g := s.Graph.Clone()
	for gr, k := range keep {
		if len(k) < gr.Channels && !gr.Prunable {
			return nil, fmt.Errorf("channels of %q cannot be pruned (%s)", gr.Name(), gr.Reason)
		}
	}
	kept := func(v string) (chanRef, []int) {
		r := s.chans[v]
		if r.g == nil {
			return r, nil
		}
		k := keep[r.g]
		if len(k) == r.g.Channels {
			k = nil
		}
		return r, k
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
	for k := range g.Shapes {
		if !slices.Contains(g.Inputs, k) {
			delete(g.Shapes, k)
		}
	}
	if err := g.RemoveDeadCode(); err != nil {
		return nil, err
	}
	if err := g.InferShapes(); err != nil {
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
