package graph

// LayerNormAxis returns the first normalized axis of a LayerNormalization node over an
// input of the given rank, and its epsilon.
func LayerNormAxis(n *Node, rank int) (axis int, eps float32, err error) {
	a, err := n.Int("axis", -1)
	if err != nil {
		return 0, 0, err
	}
	if a < 0 {
		a += int64(rank)
	}
	if a < 0 || a >= int64(rank) {
		return 0, 0, &AttrError{n.Name, n.Op, "axis", "is out of range for the input's rank"}
	}
	eps, err = n.Float("epsilon", 1e-5)
	if err == nil && !(eps >= 0) {
		err = &AttrError{n.Name, n.Op, "epsilon", "must not be negative"}
	}
	return int(a), eps, err
}

// broadcastsTo reports whether s broadcasts to target without changing target
// (ONNX's unidirectional broadcasting).
func broadcastsTo(s, target Shape) bool {
	if len(s) > len(target) {
		return false
	}
	off := len(target) - len(s)
	for i, d := range s {
		if d != 1 && d != target[off+i] {
			return false
		}
	}
	return true
}

func init() {
	Register(&OpDef{
		Op: "LayerNormalization", Doc: "normalize over the axes from axis on, then scale and shift (opset 17)",
		MinInputs: 2, MaxInputs: 3, MinOutputs: 1, MaxOutputs: 3, Weights: []int{1, 2},
		Infer: func(c *Ctx) ([]Shape, error) {
			x := c.In[0]
			if len(x) == 0 {
				return nil, c.Errorf("input is a scalar")
			}
			axis, _, err := LayerNormAxis(c.Node, len(x))
			if err != nil {
				return nil, err
			}
			norm := x[axis:]
			for _, d := range norm {
				if d == Batch {
					return nil, c.Errorf("normalizes over the batch dimension (axis %d of %v)", axis, x)
				}
			}
			for i := 1; i < 3; i++ {
				if c.Has(i) && !broadcastsTo(c.In[i], norm) {
					return nil, c.Errorf("input %d %q has shape %v, which does not broadcast to the normalized shape %v", i, c.Node.Inputs[i], c.In[i], norm)
				}
			}
			st, err := c.Node.Int("stash_type", 1)
			if err != nil {
				return nil, err
			}
			if st != 1 {
				return nil, c.Errorf("stash_type %d is not supported (1: float)", st)
			}
			out := []Shape{x}
			stat := append(Shape{}, x[:axis]...)
			for range norm {
				stat = append(stat, 1)
			}
			for range c.Node.Outputs[1:] {
				out = append(out, stat)
			}
			return out, nil
		},
		Cost: func(c *Ctx, out []Shape) LayerCost { return LayerCost{} },
	})
}
