package graph

import (
	"math"
	"slices"
)

// normAxis maps a possibly negative axis into [0, rank).
func normAxis(c *Ctx, axis int64, rank int) (int, error) {
	if axis < 0 {
		axis += int64(rank)
	}
	if axis < 0 || axis >= int64(rank) {
		return 0, c.Errorf("axis %d is out of range for rank %d", axis, rank)
	}
	return int(axis), nil
}

// reshapeTarget resolves Reshape's target against input shape x: 0 copies a dimension
// (unless allowzero), -1 is inferred, SymBatch is the batch. When x has a batch dimension
// and the target does not name it, a leading entry (-1 or the exporter's fixed batch) whose
// removal leaves exactly the per-sample element count becomes the batch.
func reshapeTarget(c *Ctx, x Shape, target []int64, allowZero bool) (Shape, error) {
	out := make(Shape, len(target))
	infer := -1
	for i, t := range target {
		switch {
		case t == SymBatch:
			out[i] = Batch
		case t == 0 && !allowZero:
			if i >= len(x) {
				return nil, c.Errorf("target %v copies dimension %d of the %d-D input %v", target, i, len(x), x)
			}
			out[i] = x[i]
		case t == -1:
			if infer >= 0 {
				return nil, c.Errorf("target %v has more than one -1", target)
			}
			infer = i
		case t < 0 || t > math.MaxInt32:
			return nil, c.Errorf("target %v has the invalid dimension %d", target, t)
		default:
			out[i] = int(t)
		}
	}
	var fixed Shape // the dimensions the target states
	for i, d := range out {
		if i != infer && d != Batch {
			fixed = append(fixed, d)
		}
	}
	if _, err := checkedElems(fixed, c.Limits.MaxActivationElems); err != nil {
		return nil, c.Errorf("target %v: %v", target, err)
	}
	inBatch := slices.Contains(x, Batch)
	outBatch := slices.Contains(out, Batch)
	per := x.Elems()
	if inBatch && !outBatch && len(out) > 0 {
		rest := Shape(out[1:])
		if infer > 0 {
			return nil, c.Errorf("target %v merges the batch dimension into others", target)
		}
		if rest.Elems() != per {
			return nil, c.Errorf("target %v merges the batch dimension of %v into others", target, x)
		}
		out[0], infer = Batch, -1
	}
	if infer >= 0 {
		out[infer] = 1
		known := out.Elems()
		if known == 0 || per%known != 0 {
			return nil, c.Errorf("cannot reshape %v to %v", x, target)
		}
		out[infer] = int(per / known)
	}
	if inBatch != slices.Contains(out, Batch) || out.Elems() != per {
		return nil, c.Errorf("cannot reshape %v to %v", x, target)
	}
	return out, nil
}

func squeezeAxes(c *Ctx) ([]int64, error) {
	v, _, err := c.IntsAttrOrInput("axes", 1)
	return v, err
}

func init() {
	Register(&OpDef{
		Op: "Reshape", Doc: "reshape to a constant target shape (0 copies, -1 infers)",
		MinInputs: 2, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			t, err := c.ConstInts(1, "target shape")
			if err != nil {
				return nil, err
			}
			az, err := c.Node.Int("allowzero", 0)
			if err != nil {
				return nil, err
			}
			s, err := reshapeTarget(c, c.In[0], t, az != 0)
			return []Shape{s}, err
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			t, err := c.ConstInts(1, "target shape")
			if err != nil {
				return nil, err
			}
			az, _ := c.Node.Int("allowzero", 0)
			s, err := reshapeTarget(c, Shape(c.Const[0].Shape), t, az != 0)
			if err != nil {
				return nil, err
			}
			r := c.Const[0].Clone()
			r.Shape = s
			return []*Tensor{r}, nil
		},
	})
	Register(&OpDef{
		Op: "Concat", Doc: "concatenate along axis",
		MinInputs: 1, MaxInputs: -1, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			axis, err := c.Node.Int("axis", math.MinInt64)
			if err != nil {
				return nil, err
			}
			if axis == math.MinInt64 {
				return nil, c.Errorf("attribute axis is required")
			}
			first := c.In[0]
			a, err := normAxis(c, axis, len(first))
			if err != nil {
				return nil, err
			}
			out := slices.Clone(first)
			for i, s := range c.In[1:] {
				if len(s) != len(first) {
					return nil, c.Errorf("input %d has rank %d, input 0 has rank %d", i+1, len(s), len(first))
				}
				for d := range s {
					if d != a && s[d] != first[d] {
						return nil, c.Errorf("input %d has shape %v, input 0 has %v (axis %d)", i+1, s, first, a)
					}
				}
				if s[a] == Batch || out[a] == Batch {
					return nil, c.Errorf("concatenates along the batch dimension")
				}
				out[a] += s[a]
			}
			return []Shape{out}, nil
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			axis, _ := c.Node.Int("axis", 0)
			a, err := normAxis(c, axis, len(c.Const[0].Shape))
			if err != nil {
				return nil, err
			}
			out := &Tensor{DType: c.Const[0].DType, Shape: slices.Clone(c.Const[0].Shape)}
			out.Shape[a] = 0
			for _, t := range c.Const {
				if t.DType != out.DType {
					return nil, c.Errorf("inputs mix %s and %s", out.DType, t.DType)
				}
				out.Shape[a] += t.Shape[a]
			}
			if slices.Contains(out.Shape, 0) {
				// Empty: the other dimensions may be huge (an empty tensor may claim
				// 2^40×0), so do not loop over them.
				return []*Tensor{out}, nil
			}
			outer := int(Shape(c.Const[0].Shape[:a]).Elems())
			for o := 0; o < outer; o++ {
				for _, t := range c.Const {
					chunk := t.Len() / max(outer, 1)
					if outer == 0 {
						chunk = 0
					}
					if t.DType.IsInt() {
						out.I = append(out.I, t.I[o*chunk:(o+1)*chunk]...)
					} else {
						out.F = append(out.F, t.F[o*chunk:(o+1)*chunk]...)
					}
				}
			}
			return []*Tensor{out}, nil
		},
	})
	Register(&OpDef{
		Op: "Constant", Doc: "a constant tensor (folded into the graph's constants)",
		MinInputs: 0, MaxInputs: 0, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			t, err := constantValue(c)
			if err != nil {
				return nil, err
			}
			return []Shape{Shape(slices.Clone(t.Shape))}, nil
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			t, err := constantValue(c)
			return []*Tensor{t}, err
		},
	})
	Register(&OpDef{
		Op: "Shape", Doc: "the shape of a tensor as int64 (folded; the batch stays symbolic)",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1, FoldsOnShape: true,
		Infer: func(c *Ctx) ([]Shape, error) {
			v, err := shapeValue(c)
			return []Shape{{len(v)}}, err
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			v, err := shapeValue(c)
			return []*Tensor{NewInt([]int{len(v)}, v)}, err
		},
	})
	Register(&OpDef{
		Op: "Gather", Doc: "take elements along axis (constant data only)",
		MinInputs: 2, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			ts, err := evalGather(c, false)
			if err != nil {
				return nil, err
			}
			return []Shape{ts}, nil
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			if c.Const[0] == nil || c.Const[1] == nil {
				return nil, c.Errorf("gathers from a non-constant tensor")
			}
			t, err := gatherConst(c)
			return []*Tensor{t}, err
		},
	})
	registerShapeOnly("Unsqueeze", "insert size-1 axes (attribute before opset 13, input after)", unsqueezeShape)
	registerShapeOnly("Squeeze", "remove size-1 axes (attribute before opset 13, input after)", squeezeShape)
	Register(&OpDef{
		Op: "Cast", Doc: "convert element type (identity on float activations)",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			to, err := c.Node.Int("to", 0)
			if err != nil {
				return nil, err
			}
			if c.Const[0] == nil && to != 1 {
				return nil, c.Errorf("casts an activation to element type %d; only float is supported", to)
			}
			return sameShape(c)
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			to, _ := c.Node.Int("to", 0)
			t := c.Const[0]
			switch to {
			case 1, 10, 11, 16: // float, float16, double, bfloat16: qnas computes in float32
				return []*Tensor{NewFloat(t.Shape, slices.Clone(t.Floats()))}, nil
			case 2, 3, 4, 5, 6, 7, 9, 12, 13: // integer types and bool
				v := slices.Clone(t.Ints())
				if to == 9 {
					for i := range v {
						if v[i] != 0 {
							v[i] = 1
						}
					}
				}
				return []*Tensor{NewInt(t.Shape, v)}, nil
			}
			return nil, c.Errorf("cast to element type %d is not supported", to)
		},
	})
	Register(&OpDef{
		Op: "ConstantOfShape", Doc: "a tensor of a constant shape filled with one value",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			s, _, err := constantOfShapeSpec(c)
			if err != nil {
				return nil, err
			}
			return []Shape{s}, nil
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			t, err := constantOfShape(c)
			return []*Tensor{t}, err
		},
	})
	Register(&OpDef{
		Op: "Transpose", Doc: "permute axes",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			perm, err := transposePerm(c, len(c.In[0]))
			if err != nil {
				return nil, err
			}
			out := make(Shape, len(perm))
			for i, p := range perm {
				out[i] = c.In[0][p]
			}
			return []Shape{out}, nil
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			t := c.Const[0]
			perm, err := transposePerm(c, len(t.Shape))
			if err != nil {
				return nil, err
			}
			return []*Tensor{transposeConst(t, perm)}, nil
		},
	})
	Register(&OpDef{
		Op: "Slice", Doc: "slice with constant starts, ends, axes, steps",
		MinInputs: 1, MaxInputs: 5, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			sl, err := sliceSpec(c, c.In[0])
			if err != nil {
				return nil, err
			}
			return []Shape{sl.out}, nil
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			sl, err := sliceSpec(c, Shape(c.Const[0].Shape))
			if err != nil {
				return nil, err
			}
			return []*Tensor{sliceConst(c.Const[0], sl)}, nil
		},
	})
	Register(&OpDef{
		Op: "Split", Doc: "split along axis into constant-sized parts",
		MinInputs: 1, MaxInputs: 2, MinOutputs: 1, MaxOutputs: -1,
		Infer: func(c *Ctx) ([]Shape, error) {
			axis, sizes, err := splitSizes(c, c.In[0])
			if err != nil {
				return nil, err
			}
			out := make([]Shape, len(sizes))
			for i, n := range sizes {
				out[i] = slices.Clone(c.In[0])
				out[i][axis] = n
			}
			return out, nil
		},
	})
	Register(&OpDef{
		Op: "Pad", Doc: "pad with constant, reflect, edge or wrap values (pads attribute before opset 11, input after; axes from opset 18)",
		MinInputs: 1, MaxInputs: 4, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			pads, err := PadAmounts(c)
			if err != nil {
				return nil, err
			}
			x := c.In[0]
			out := slices.Clone(x)
			for i := range x {
				b, e := pads[i], pads[i+len(x)]
				if x[i] == Batch {
					if b != 0 || e != 0 {
						return nil, c.Errorf("pads the batch dimension")
					}
					continue
				}
				out[i] = x[i] + int(b) + int(e)
				if out[i] < 0 {
					return nil, c.Errorf("pads %v shrink dimension %d of %v below zero", pads, i, x)
				}
			}
			mode, err := c.Node.String("mode", "constant")
			if err != nil {
				return nil, err
			}
			if mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap" {
				return nil, c.Errorf("mode %q is not supported (constant, reflect, edge, wrap)", mode)
			}
			return []Shape{out}, nil
		},
	})
}

// PadAmounts returns a Pad node's begin and end amounts per axis (begins first, as ONNX).
func PadAmounts(c *Ctx) ([]int64, error) {
	rank := len(c.In[0])
	pads, ok, err := c.IntsAttrOrInput("pads", 1)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, c.Errorf("pads are missing")
	}
	if c.Has(3) { // axes (opset 18)
		axes, err := c.ConstInts(3, "axes")
		if err != nil {
			return nil, err
		}
		if len(pads) != 2*len(axes) {
			return nil, c.Errorf("%d pads for %d axes", len(pads), len(axes))
		}
		full := make([]int64, 2*rank)
		for i, a := range axes {
			ax, err := normAxis(c, a, rank)
			if err != nil {
				return nil, err
			}
			full[ax], full[ax+rank] = pads[i], pads[i+len(axes)]
		}
		pads = full
	}
	if len(pads) != 2*rank {
		return nil, c.Errorf("%d pads for a rank-%d input", len(pads), rank)
	}
	for _, p := range pads {
		if p < -(1<<20) || p > 1<<20 {
			return nil, c.Errorf("pads %v are out of range", pads)
		}
	}
	return pads, nil
}

func constantValue(c *Ctx) (*Tensor, error) {
	n := c.Node
	if a, ok := n.Attrs["value"]; ok && a.Kind == AttrTensor {
		return a.T, nil
	}
	if a, ok := n.Attrs["value_float"]; ok && a.Kind == AttrFloat {
		return NewFloat(nil, []float32{a.F}), nil
	}
	if a, ok := n.Attrs["value_floats"]; ok && a.Kind == AttrFloats {
		return NewFloat([]int{len(a.Floats)}, slices.Clone(a.Floats)), nil
	}
	if a, ok := n.Attrs["value_int"]; ok && a.Kind == AttrInt {
		return NewInt(nil, []int64{a.I}), nil
	}
	if a, ok := n.Attrs["value_ints"]; ok && a.Kind == AttrInts {
		return NewInt([]int{len(a.Ints)}, slices.Clone(a.Ints)), nil
	}
	return nil, c.Errorf("has no supported value attribute (value, value_float(s), value_int(s))")
}

func shapeValue(c *Ctx) ([]int64, error) {
	x := c.In[0]
	if x == nil {
		return nil, c.Errorf("input shape is unknown")
	}
	start, err := c.Node.Int("start", 0)
	if err != nil {
		return nil, err
	}
	end, err := c.Node.Int("end", int64(len(x)))
	if err != nil {
		return nil, err
	}
	r := int64(len(x))
	clamp := func(v int64) int64 {
		if v < 0 {
			v += r
		}
		return min(max(v, 0), r)
	}
	start, end = clamp(start), clamp(end)
	var v []int64
	for _, d := range x[start:max(start, end)] {
		if d == Batch {
			v = append(v, SymBatch)
		} else {
			v = append(v, int64(d))
		}
	}
	return v, nil
}

func evalGather(c *Ctx, _ bool) (Shape, error) {
	data, idx := c.In[0], c.In[1]
	axis, err := c.Node.Int("axis", 0)
	if err != nil {
		return nil, err
	}
	a, err := normAxis(c, axis, len(data))
	if err != nil {
		return nil, err
	}
	if c.Const[1] == nil {
		return nil, c.Errorf("indices %q must be constant", c.Node.Inputs[1])
	}
	out := append(Shape{}, data[:a]...)
	out = append(out, idx...)
	return append(out, data[a+1:]...), nil
}

func gatherConst(c *Ctx) (*Tensor, error) {
	data, idx := c.Const[0], c.Const[1].Ints()
	axis, _ := c.Node.Int("axis", 0)
	a, err := normAxis(c, axis, len(data.Shape))
	if err != nil {
		return nil, err
	}
	shape, err := evalGather(c, true)
	if err != nil {
		return nil, err
	}
	dim := data.Shape[a]
	pos := make([]int, len(idx))
	for k, i := range idx {
		if i < 0 {
			i += int64(dim)
		}
		if i < 0 || i >= int64(dim) {
			return nil, c.Errorf("index %d is out of range for dimension %d", idx[k], dim)
		}
		pos[k] = int(i)
	}
	out := &Tensor{DType: data.DType, Shape: shape}
	if slices.Contains(shape, 0) {
		return out, nil // empty: do not loop over the (possibly huge) other dimensions
	}
	outer := int(Shape(data.Shape[:a]).Elems())
	inner := int(Shape(data.Shape[a+1:]).Elems())
	for o := 0; o < outer; o++ {
		for _, i := range pos {
			base := (o*dim + i) * inner
			if data.DType.IsInt() {
				out.I = append(out.I, data.I[base:base+inner]...)
			} else {
				out.F = append(out.F, data.F[base:base+inner]...)
			}
		}
	}
	return out, nil
}

func unsqueezeShape(c *Ctx, x Shape) (Shape, error) {
	axes, _, err := c.IntsAttrOrInput("axes", 1)
	if err != nil {
		return nil, err
	}
	rank := len(x) + len(axes)
	ins := make([]bool, rank)
	for _, a := range axes {
		i, err := normAxis(c, a, rank)
		if err != nil {
			return nil, err
		}
		if ins[i] {
			return nil, c.Errorf("axis %d repeats", a)
		}
		ins[i] = true
	}
	out, j := make(Shape, rank), 0
	for i := range out {
		if ins[i] {
			out[i] = 1
		} else {
			out[i] = x[j]
			j++
		}
	}
	return out, nil
}

func squeezeShape(c *Ctx, x Shape) (Shape, error) {
	axes, err := squeezeAxes(c)
	if err != nil {
		return nil, err
	}
	drop := make([]bool, len(x))
	if len(axes) == 0 {
		for i, d := range x {
			drop[i] = d == 1
		}
	}
	for _, a := range axes {
		i, err := normAxis(c, a, len(x))
		if err != nil {
			return nil, err
		}
		if x[i] != 1 {
			return nil, c.Errorf("squeezes axis %d of size %d", i, x[i])
		}
		drop[i] = true
	}
	out := Shape{}
	for i, d := range x {
		if !drop[i] {
			out = append(out, d)
		}
	}
	return out, nil
}

// constantOfShapeSpec returns the output shape of a ConstantOfShape node and its fill
// value, without allocating the output: the shape must be a constant vector whose element
// count is within Limits.MaxActivationElems.
func constantOfShapeSpec(c *Ctx) (Shape, *Tensor, error) {
	dims, err := c.ConstInts(0, "shape")
	if err != nil {
		return nil, nil, err
	}
	if len(c.In[0]) > 1 {
		return nil, nil, c.Errorf("shape input has shape %v, want a vector", c.In[0])
	}
	shape := make(Shape, len(dims))
	for i, d := range dims {
		if d < 0 || d > math.MaxInt32 {
			return nil, nil, c.Errorf("shape %v is not a valid constant shape", dims)
		}
		shape[i] = int(d)
	}
	if _, err := checkedElems(shape, c.Limits.MaxActivationElems); err != nil {
		return nil, nil, c.Errorf("%v", err)
	}
	val := NewFloat(nil, []float32{0})
	if a, ok := c.Node.Attrs["value"]; ok {
		if a.Kind != AttrTensor || a.T.Len() != 1 {
			return nil, nil, c.Errorf("attribute value must be a one-element tensor")
		}
		val = a.T
	}
	return shape, val, nil
}

// constantOfShape evaluates a ConstantOfShape node; it refuses outputs larger than
// Limits.MaxConstFoldElems.
func constantOfShape(c *Ctx) (*Tensor, error) {
	shape, val, err := constantOfShapeSpec(c)
	if err != nil {
		return nil, err
	}
	n, err := checkedElems(shape, c.Limits.MaxConstFoldElems)
	if err != nil {
		return nil, c.Errorf("%v", err)
	}
	if val.DType.IsInt() {
		v := make([]int64, n)
		for i := range v {
			v[i] = val.I[0]
		}
		return &Tensor{DType: val.DType, Shape: shape, I: v}, nil
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = val.F[0]
	}
	return NewFloat(shape, v), nil
}

// TransposePerm returns the permutation of a Transpose node of g: output axis i is input
// axis perm[i] (reversed axes when the node has no perm).
func (g *Graph) TransposePerm(n *Node) ([]int, error) {
	c := g.ctx(n)
	return transposePerm(c, len(c.In[0]))
}

func transposePerm(c *Ctx, rank int) ([]int, error) {
	p, err := c.Node.Ints("perm", nil)
	if err != nil {
		return nil, err
	}
	perm := make([]int, rank)
	if p == nil {
		for i := range perm {
			perm[i] = rank - 1 - i
		}
		return perm, nil
	}
	if len(p) != rank {
		return nil, c.Errorf("perm %v has %d entries for rank %d", p, len(p), rank)
	}
	seen := make([]bool, rank)
	for i, v := range p {
		if v < 0 || v >= int64(rank) || seen[v] {
			return nil, c.Errorf("perm %v is not a permutation", p)
		}
		seen[v] = true
		perm[i] = int(v)
	}
	return perm, nil
}

func transposeConst(t *Tensor, perm []int) *Tensor {
	rank := len(perm)
	inStride := make([]int, rank)
	acc := 1
	for i := rank - 1; i >= 0; i-- {
		inStride[i] = acc
		acc *= t.Shape[i]
	}
	shape := make([]int, rank)
	for i, p := range perm {
		shape[i] = t.Shape[p]
	}
	out := &Tensor{DType: t.DType, Shape: shape}
	n := t.Len()
	coord := make([]int, rank)
	for k := 0; k < n; k++ {
		src := 0
		for i, p := range perm {
			src += coord[i] * inStride[p]
		}
		if t.DType.IsInt() {
			out.I = append(out.I, t.I[src])
		} else {
			out.F = append(out.F, t.F[src])
		}
		for d := rank - 1; d >= 0; d-- {
			coord[d]++
			if coord[d] < shape[d] {
				break
			}
			coord[d] = 0
		}
	}
	return out
}

type sliceRange struct {
	starts, steps []int
	out           Shape
}

// sliceSpec resolves Slice's starts/ends/axes/steps (inputs from opset 10, attributes before).
func sliceSpec(c *Ctx, x Shape) (sliceRange, error) {
	var starts, ends, axes, steps []int64
	var err error
	if c.Opset < 10 || c.Node.Has("starts") {
		if starts, err = c.Node.Ints("starts", nil); err != nil {
			return sliceRange{}, err
		}
		if ends, err = c.Node.Ints("ends", nil); err != nil {
			return sliceRange{}, err
		}
		if axes, err = c.Node.Ints("axes", nil); err != nil {
			return sliceRange{}, err
		}
	} else {
		if starts, err = c.ConstInts(1, "starts"); err != nil {
			return sliceRange{}, err
		}
		if ends, err = c.ConstInts(2, "ends"); err != nil {
			return sliceRange{}, err
		}
		if c.Has(3) {
			if axes, err = c.ConstInts(3, "axes"); err != nil {
				return sliceRange{}, err
			}
		}
		if c.Has(4) {
			if steps, err = c.ConstInts(4, "steps"); err != nil {
				return sliceRange{}, err
			}
		}
	}
	if len(ends) != len(starts) || (axes != nil && len(axes) != len(starts)) || (steps != nil && len(steps) != len(starts)) {
		return sliceRange{}, c.Errorf("starts, ends, axes and steps differ in length")
	}
	sl := sliceRange{starts: make([]int, len(x)), steps: make([]int, len(x)), out: slices.Clone(x)}
	for i := range x {
		sl.steps[i] = 1
	}
	for i := range starts {
		ax := int64(i)
		if axes != nil {
			ax = axes[i]
		}
		a, err := normAxis(c, ax, len(x))
		if err != nil {
			return sliceRange{}, err
		}
		step := int64(1)
		if steps != nil {
			step = steps[i]
		}
		if step == 0 {
			return sliceRange{}, c.Errorf("step 0")
		}
		dim := int64(x[a])
		if x[a] == Batch {
			if starts[i] == 0 && ends[i] >= math.MaxInt32 && step == 1 {
				continue // the whole batch
			}
			return sliceRange{}, c.Errorf("slices the batch dimension")
		}
		s, e := starts[i], ends[i]
		if s < 0 {
			s += dim
		}
		if e < 0 {
			e += dim
		}
		// n = ⌈span/|step|⌉, computed so that no step (MaxInt64, MinInt64) overflows.
		var n int64
		if step > 0 {
			s, e = min(max(s, 0), dim), min(max(e, 0), dim)
			if e > s {
				n = (e-s-1)/step + 1
			}
		} else {
			s, e = min(max(s, -1), dim-1), min(max(e, -1), dim-1)
			if s > e {
				n = int64(uint64(s-e-1)/uint64(-step)) + 1 // uint64(-MinInt64) is 2^63
			}
		}
		sl.starts[a], sl.steps[a], sl.out[a] = int(s), int(step), int(n)
	}
	return sl, nil
}

func sliceConst(t *Tensor, sl sliceRange) *Tensor {
	rank := len(t.Shape)
	stride := make([]int, rank)
	acc := 1
	for i := rank - 1; i >= 0; i-- {
		stride[i] = acc
		acc *= t.Shape[i]
	}
	out := &Tensor{DType: t.DType, Shape: slices.Clone([]int(sl.out))}
	total := int(Shape(sl.out).Elems())
	coord := make([]int, rank)
	for k := 0; k < total; k++ {
		src := 0
		for d := range rank {
			src += (sl.starts[d] + coord[d]*sl.steps[d]) * stride[d]
		}
		if t.DType.IsInt() {
			out.I = append(out.I, t.I[src])
		} else {
			out.F = append(out.F, t.F[src])
		}
		for d := rank - 1; d >= 0; d-- {
			coord[d]++
			if coord[d] < sl.out[d] {
				break
			}
			coord[d] = 0
		}
	}
	return out
}

// splitSizes returns Split's axis and part sizes (attribute before opset 13, input after;
// otherwise parts of ⌈dim/outputs⌉, the last one smaller, which opset 18 states as
// num_outputs).
func splitSizes(c *Ctx, x Shape) (int, []int, error) {
	axis, err := c.Node.Int("axis", 0)
	if err != nil {
		return 0, nil, err
	}
	a, err := normAxis(c, axis, len(x))
	if err != nil {
		return 0, nil, err
	}
	if x[a] == Batch {
		return 0, nil, c.Errorf("splits the batch dimension")
	}
	parts, ok, err := c.IntsAttrOrInput("split", 1)
	if err != nil {
		return 0, nil, err
	}
	n := len(c.Node.Outputs)
	var sizes []int
	if c.Node.Has("num_outputs") { // opset 18: parts of ⌈dim/k⌉, the last one smaller
		k, err := c.Node.Int("num_outputs", 0)
		if err != nil {
			return 0, nil, err
		}
		if ok {
			return 0, nil, c.Errorf("has both split sizes and num_outputs")
		}
		if k != int64(n) {
			return 0, nil, c.Errorf("num_outputs is %d but the node has %d outputs", k, n)
		}
		each := (x[a] + n - 1) / n
		if last := x[a] - each*(n-1); last <= 0 {
			return 0, nil, c.Errorf("dimension %d of %v does not split into %d parts of %d", a, x, n, each)
		}
	}
	if ok {
		if len(parts) != n {
			return 0, nil, c.Errorf("split %v has %d parts for %d outputs", parts, len(parts), n)
		}
		sum := 0
		for _, p := range parts {
			if p < 0 {
				return 0, nil, c.Errorf("split %v has a negative part", parts)
			}
			sizes = append(sizes, int(p))
			sum += int(p)
		}
		if sum != x[a] {
			return 0, nil, c.Errorf("split %v does not add up to dimension %d", parts, x[a])
		}
		return a, sizes, nil
	}
	each := (x[a] + n - 1) / n
	left := x[a]
	for i := 0; i < n; i++ {
		s := min(each, left)
		sizes = append(sizes, s)
		left -= s
	}
	return a, sizes, nil
}

// SliceWindow returns, for a Slice node of g over an input of the given concrete shape, the
// start and step along every axis.
func (g *Graph) SliceWindow(n *Node, shape []int) (starts, steps []int, err error) {
	sl, err := sliceSpec(g.ctx(n), Shape(shape))
	return sl.starts, sl.steps, err
}

// PadAmountsOf is PadAmounts for a node of g.
func (g *Graph) PadAmountsOf(n *Node) ([]int64, error) { return PadAmounts(g.ctx(n)) }

// registerShapeOnly registers an op that only changes the shape of its first input (the
// optional second input holds axes): shape rule and constant evaluator from one function.
func registerShapeOnly(op, doc string, shape func(c *Ctx, x Shape) (Shape, error)) {
	Register(&OpDef{
		Op: op, Doc: doc, MinInputs: 1, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			s, err := shape(c, c.In[0])
			return []Shape{s}, err
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			s, err := shape(c, Shape(c.Const[0].Shape))
			if err != nil {
				return nil, err
			}
			r := c.Const[0].Clone()
			r.Shape = s
			return []*Tensor{r}, nil
		},
	})
}
