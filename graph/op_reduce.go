package graph

import "slices"

// reduceAxes resolves a reduction's axes (attribute before opset 18 for ReduceMean and
// before 13 for ReduceSum, input after): the sorted distinct axes it reduces over, all of
// them when none are given, none when none are given and noop_with_empty_axes is set.
func reduceAxes(c *Ctx) ([]int, error) {
	axes, ok, err := c.IntsAttrOrInput("axes", 1)
	if err != nil {
		return nil, err
	}
	rank := len(c.In[0])
	if !ok || len(axes) == 0 {
		noop, err := c.Node.Int("noop_with_empty_axes", 0)
		if err != nil || noop != 0 {
			return nil, err
		}
		out := make([]int, rank)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	var out []int
	for _, a := range axes {
		i, err := normAxis(c, a, rank)
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, i) {
			return nil, c.Errorf("axis %d repeats in %v", a, axes)
		}
		out = append(out, i)
	}
	slices.Sort(out)
	return out, nil
}

func reduceInfer(c *Ctx) ([]Shape, error) {
	x := c.In[0]
	axes, err := reduceAxes(c)
	if err != nil {
		return nil, err
	}
	keep, err := c.Node.Int("keepdims", 1)
	if err != nil {
		return nil, err
	}
	var out Shape
	for i, d := range x {
		switch {
		case !slices.Contains(axes, i):
			out = append(out, d)
		case d == Batch:
			return nil, c.Errorf("reduces over the batch dimension")
		case keep != 0:
			out = append(out, 1)
		}
	}
	return []Shape{out}, nil
}

func init() {
	Register(&OpDef{
		Op: "ReduceMean", Doc: "mean over axes (attribute before opset 18, input after)",
		MinInputs: 1, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1, Infer: reduceInfer,
	})
	Register(&OpDef{
		Op: "ReduceSum", Doc: "sum over axes (attribute before opset 13, input after)",
		MinInputs: 1, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1, Infer: reduceInfer,
	})
}

// ReduceAxes returns the sorted axes a ReduceMean or ReduceSum node of g reduces over;
// none means the node copies its input (noop_with_empty_axes).
func (g *Graph) ReduceAxes(n *Node) ([]int, error) { return reduceAxes(g.ctx(n)) }
