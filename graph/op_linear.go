package graph

func init() {
	Register(&OpDef{
		Op: "Gemm", Doc: "Y = alpha·A'·B' + beta·C (fully connected layer)",
		MinInputs: 2, MaxInputs: 3, MinOutputs: 1, MaxOutputs: 1, Weights: []int{1, 2},
		Infer: func(c *Ctx) ([]Shape, error) {
			a, b := c.In[0], c.In[1]
			if len(a) != 2 || len(b) != 2 {
				return nil, c.Errorf("inputs have shapes %v and %v, want 2-D", a, b)
			}
			ta, err := c.Node.Int("transA", 0)
			if err != nil {
				return nil, err
			}
			tb, err := c.Node.Int("transB", 0)
			if err != nil {
				return nil, err
			}
			m, k := a[0], a[1]
			if ta != 0 {
				m, k = a[1], a[0]
			}
			if m == Batch && ta != 0 || k == Batch {
				return nil, c.Errorf("transA moves the batch dimension; not supported")
			}
			kb, n := b[0], b[1]
			if tb != 0 {
				kb, n = b[1], b[0]
			}
			if kb != k {
				return nil, c.Errorf("A is %v and B is %v (transA=%d, transB=%d): inner dimensions %d and %d differ", a, b, ta, tb, k, kb)
			}
			if c.Has(2) {
				if _, err := broadcast(c, Shape{m, n}, c.In[2]); err != nil {
					return nil, err
				}
			}
			return []Shape{{m, n}}, nil
		},
		Cost: func(c *Ctx, out []Shape) LayerCost {
			a := c.In[0]
			k := a[1]
			if ta, _ := c.Node.Int("transA", 0); ta != 0 {
				k = a[0]
			}
			return LayerCost{MACs: int64(k) * int64(out[0][1])}
		},
	})
	Register(&OpDef{
		Op: "MatMul", Doc: "matrix product with numpy broadcasting",
		MinInputs: 2, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1, Weights: []int{0, 1},
		Infer: func(c *Ctx) ([]Shape, error) {
			a, b := c.In[0], c.In[1]
			if len(a) == 0 || len(b) == 0 {
				return nil, c.Errorf("MatMul of a scalar")
			}
			if len(a) == 1 || len(b) == 1 {
				return nil, c.Errorf("MatMul with a 1-D operand (%v, %v) is not supported", a, b)
			}
			if a[len(a)-1] != b[len(b)-2] || a[len(a)-1] == Batch {
				return nil, c.Errorf("inner dimensions of %v and %v differ", a, b)
			}
			batch, err := broadcast(c, a[:len(a)-2], b[:len(b)-2])
			if err != nil {
				return nil, err
			}
			out := append(Shape{}, batch...)
			return []Shape{append(out, a[len(a)-2], b[len(b)-1])}, nil
		},
		Cost: func(c *Ctx, out []Shape) LayerCost {
			a := c.In[0]
			return LayerCost{MACs: satMul(out[0].Elems(), int64(a[len(a)-1]))}
		},
	})
	Register(&OpDef{
		Op: "Flatten", Doc: "reshape to 2-D at axis",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			x := c.In[0]
			axis, err := c.Node.Int("axis", 1)
			if err != nil {
				return nil, err
			}
			if axis < 0 {
				axis += int64(len(x))
			}
			if axis < 0 || axis > int64(len(x)) {
				return nil, c.Errorf("axis %d is out of range for shape %v", axis, x)
			}
			return []Shape{{prodDims(x[:axis]), prodDims(x[axis:])}}, nil
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			t := c.Const[0].Clone()
			axis, _ := c.Node.Int("axis", 1)
			if axis < 0 {
				axis += int64(len(t.Shape))
			}
			t.Shape = []int{int(Shape(t.Shape[:axis]).Elems()), int(Shape(t.Shape[axis:]).Elems())}
			return []*Tensor{t}, nil
		},
	})
}

// prodDims multiplies dims; a product that includes the batch is the batch (only valid when
// every other factor is 1) or, otherwise, Batch times the rest is refused by returning -2.
func prodDims(d Shape) int {
	p, hasBatch := 1, false
	for _, v := range d {
		if v == Batch {
			hasBatch = true
			continue
		}
		p *= v
	}
	if hasBatch {
		if p == 1 {
			return Batch
		}
		return -2
	}
	return p
}
