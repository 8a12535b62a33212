package graph

import (
	"fmt"
	"iter"
	"math"
	"slices"
)

// broadcast returns the numpy-broadcast shape of a and b. The batch dimension broadcasts
// with 1 and with itself.
func broadcast(c *Ctx, a, b Shape) (Shape, error) {
	n := max(len(a), len(b))
	out := make(Shape, n)
	for i := 0; i < n; i++ {
		da, db := 1, 1
		if j := i - (n - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (n - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db:
			out[i] = da
		case da == 1:
			out[i] = db
		case db == 1:
			out[i] = da
		default:
			return nil, c.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

func sameShape(c *Ctx) ([]Shape, error) {
	out := []Shape{c.In[0]}
	for range c.Node.Outputs[1:] {
		out = append(out, nil)
	}
	return out, nil
}

// unary registers an elementwise activation with a constant evaluator f.
func unary(op, doc string, f func(c *Ctx) (func(float32) float32, error)) {
	Register(&OpDef{
		Op: op, Doc: doc, MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			if _, err := f(c); err != nil {
				return nil, err
			}
			return sameShape(c)
		},
		Eval: func(c *Ctx) ([]*Tensor, error) {
			fn, err := f(c)
			if err != nil {
				return nil, err
			}
			x := c.Const[0].Floats()
			y := make([]float32, len(x))
			for i, v := range x {
				y[i] = fn(v)
			}
			return []*Tensor{NewFloat(c.Const[0].Shape, y)}, nil
		},
	})
}

// ClipBounds returns the bounds of a Clip node: attributes before opset 11, optional constant
// inputs from 11 on; an absent bound is ±Inf.
func ClipBounds(c *Ctx) (lo, hi float32, err error) {
	lo, hi = float32(math.Inf(-1)), float32(math.Inf(1))
	if c.Node.Has("min") || c.Node.Has("max") {
		if lo, err = c.Node.Float("min", lo); err != nil {
			return
		}
		hi, err = c.Node.Float("max", hi)
		return
	}
	for i, dst := range []*float32{&lo, &hi} {
		if !c.Has(i + 1) {
			continue
		}
		t := c.Const[i+1]
		if t == nil {
			return lo, hi, c.Errorf("bound %q must be a constant", c.Node.Inputs[i+1])
		}
		if t.Len() != 1 {
			return lo, hi, c.Errorf("bound %q has %d values, want a scalar", c.Node.Inputs[i+1], t.Len())
		}
		*dst = t.Floats()[0]
	}
	return lo, hi, nil
}

// ClipBoundsOf is ClipBounds for a node of graph g.
func (g *Graph) ClipBoundsOf(n *Node) (lo, hi float32, err error) { return ClipBounds(g.ctx(n)) }

func init() {
	unary("Relu", "max(x, 0)", func(*Ctx) (func(float32) float32, error) {
		return func(x float32) float32 { return max(x, 0) }, nil
	})
	registry[opKey{"", "Relu"}].ReLU = true
	unary("Sigmoid", "1/(1+e^-x)", func(*Ctx) (func(float32) float32, error) {
		return func(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }, nil
	})
	unary("LeakyRelu", "x if x ≥ 0 else alpha·x", func(c *Ctx) (func(float32) float32, error) {
		a, err := c.Node.Float("alpha", 0.01)
		return func(x float32) float32 {
			if x < 0 {
				return a * x
			}
			return x
		}, err
	})
	unary("HardSigmoid", "max(0, min(1, alpha·x + beta))", func(c *Ctx) (func(float32) float32, error) {
		a, err := c.Node.Float("alpha", 0.2)
		if err != nil {
			return nil, err
		}
		b, err := c.Node.Float("beta", 0.5)
		return func(x float32) float32 { return max(0, min(1, a*x+b)) }, err
	})
	unary("HardSwish", "x·max(0, min(1, x/6 + 1/2))", func(*Ctx) (func(float32) float32, error) {
		return func(x float32) float32 { return x * max(0, min(1, x/6+0.5)) }, nil
	})
	unary("Sqrt", "√x", func(*Ctx) (func(float32) float32, error) {
		return func(x float32) float32 { return float32(math.Sqrt(float64(x))) }, nil
	})
	unary("Erf", "the error function (GELU's exact form)", func(*Ctx) (func(float32) float32, error) {
		return func(x float32) float32 { return float32(math.Erf(float64(x))) }, nil
	})
	unary("Tanh", "tanh x", func(*Ctx) (func(float32) float32, error) {
		return func(x float32) float32 { return float32(math.Tanh(float64(x))) }, nil
	})
	unary("Gelu", "x·Φ(x), or its tanh approximation (approximate=\"tanh\"; opset 20)", func(c *Ctx) (func(float32) float32, error) {
		tanh, err := GeluTanh(c.Node)
		if err != nil {
			return nil, err
		}
		return func(x float32) float32 { return float32(Gelu(float64(x), tanh)) }, nil
	})
	Register(&OpDef{
		Op: "Clip", Doc: "min(max(x, lo), hi); bounds as attributes (opset < 11) or constant inputs",
		MinInputs: 1, MaxInputs: 3, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			if _, _, err := ClipBounds(c); err != nil {
				return nil, err
			}
			return sameShape(c)
		},
		BoundedReLU: func(g *Graph, n *Node) (float32, bool) {
			lo, hi, err := g.ClipBoundsOf(n)
			return hi, err == nil && lo == 0 && hi > 0
		},
	})
	Register(&OpDef{
		Op: "Softmax", Doc: "softmax along axis",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			def := int64(-1)
			if c.Opset < 13 {
				def = 1
			}
			axis, err := c.Node.Int("axis", def)
			if err != nil {
				return nil, err
			}
			if r := int64(len(c.In[0])); axis < -r || axis >= r {
				return nil, c.Errorf("axis %d is out of range for shape %v", axis, c.In[0])
			}
			return sameShape(c)
		},
	})
	identity := func(c *Ctx) ([]*Tensor, error) { return []*Tensor{c.Const[0]}, nil }
	Register(&OpDef{Op: "Identity", Doc: "y = x (removed by the identity pass)",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1, Infer: sameShape, Eval: identity})
	Register(&OpDef{Op: "Dropout", Doc: "identity at inference (removed by the identity pass)",
		MinInputs: 1, MaxInputs: 3, MinOutputs: 1, MaxOutputs: 2,
		Infer: func(c *Ctx) ([]Shape, error) {
			if c.Has(2) && c.Const[2] != nil && c.Const[2].Len() == 1 && c.Const[2].Ints()[0] != 0 {
				return nil, c.Errorf("training-mode Dropout is not supported; export the model in eval mode")
			}
			if len(c.Node.Outputs) > 1 && c.Node.Outputs[1] != "" {
				return []Shape{c.In[0], c.In[0]}, nil
			}
			return sameShape(c)
		}})

	Register(&OpDef{
		Op: "Pow", Doc: "x^y elementwise with numpy broadcasting",
		MinInputs: 2, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *Ctx) ([]Shape, error) {
			s, err := broadcast(c, c.In[0], c.In[1])
			return []Shape{s}, err
		},
		Eval: evalPow,
	})
	for _, op := range []string{"Add", "Sub", "Mul", "Div"} {
		Register(&OpDef{
			Op: op, Doc: "elementwise " + op + " with numpy broadcasting",
			MinInputs: 2, MaxInputs: 2, MinOutputs: 1, MaxOutputs: 1,
			AbsorbsReLU: op == "Add", // a residual Add's kernel applies the ReLU after it
			Infer: func(c *Ctx) ([]Shape, error) {
				s, err := broadcast(c, c.In[0], c.In[1])
				return []Shape{s}, err
			},
			Eval: func(c *Ctx) ([]*Tensor, error) { return evalBinary(c, op) },
		})
	}
}

// evalBinary evaluates a broadcasting arithmetic op on constants. Integer tensors stay
// integer (Div truncates as ONNX does); a symbolic batch survives only multiplication or
// division by 1 and addition of 0.
func evalBinary(c *Ctx, op string) ([]*Tensor, error) {
	a, b := c.Const[0], c.Const[1]
	shape, err := broadcast(c, Shape(a.Shape), Shape(b.Shape))
	if err != nil {
		return nil, err
	}
	total := int(shape.Elems())
	if a.DType.IsInt() && a.DType == b.DType {
		out := make([]int64, total)
		for k, p := range broadcastPairs(a.Shape, b.Shape, shape) {
			x, y := a.I[p[0]], b.I[p[1]]
			if x == SymBatch || y == SymBatch {
				other, sym := y, x
				if y == SymBatch {
					other, sym = x, y
				}
				ok := (op == "Mul" && other == 1) || (op == "Div" && y == 1) || ((op == "Add" || op == "Sub") && other == 0)
				if !ok || (x == SymBatch && y == SymBatch) {
					return nil, c.Errorf("computes %s on the batch size; qnas needs shapes that do not depend on it", op)
				}
				out[k] = sym
				continue
			}
			if op == "Div" && y == 0 {
				return nil, c.Errorf("integer division by zero")
			}
			out[k] = arith(op, x, y)
		}
		return []*Tensor{NewInts(a.DType, shape, out)}, nil
	}
	if a.DType != b.DType || a.DType != Float32 {
		return nil, c.Errorf("operands have types %s and %s; constant arithmetic takes float or int64", a.DType, b.DType)
	}
	af, bf := a.F, b.F
	out := make([]float32, total)
	for k, p := range broadcastPairs(a.Shape, b.Shape, shape) {
		out[k] = arith(op, af[p[0]], bf[p[1]])
	}
	return []*Tensor{NewFloat(shape, out)}, nil
}

// broadcastPairs yields, for every element k of the broadcast shape out (in order), the
// flat indices into a and b. It keeps O(rank) state, so folding a broadcast allocates
// only its output.
func broadcastPairs(a, b []int, out Shape) iter.Seq2[int, [2]int] {
	return func(yield func(int, [2]int) bool) {
		n := len(out)
		total := 1
		for _, d := range out {
			total *= d
		}
		strides := func(s []int) []int {
			st := make([]int, n)
			acc := 1
			for i := len(s) - 1; i >= 0; i-- {
				j := i + n - len(s)
				if s[i] != 1 {
					st[j] = acc
				}
				acc *= s[i]
			}
			return st
		}
		sa, sb := strides(a), strides(b)
		coord := make([]int, n)
		ia, ib := 0, 0
		for k := 0; k < total; k++ {
			if !yield(k, [2]int{ia, ib}) {
				return
			}
			for d := n - 1; d >= 0; d-- {
				coord[d]++
				ia += sa[d]
				ib += sb[d]
				if coord[d] < out[d] {
					break
				}
				ia -= coord[d] * sa[d]
				ib -= coord[d] * sb[d]
				coord[d] = 0
			}
		}
	}
}

var _ = fmt.Sprint

// evalPow evaluates Pow on constants. The result has the base's type; an integer base
// takes a non-negative integer exponent.
func evalPow(c *Ctx) ([]*Tensor, error) {
	a, b := c.Const[0], c.Const[1]
	shape, err := broadcast(c, Shape(a.Shape), Shape(b.Shape))
	if err != nil {
		return nil, err
	}
	if slices.Contains(a.I, SymBatch) || slices.Contains(b.I, SymBatch) {
		return nil, c.Errorf("computes Pow on the batch size; qnas needs shapes that do not depend on it")
	}
	total := int(shape.Elems())
	if a.DType.IsInt() {
		bi := b.Ints()
		out := make([]int64, total)
		for k, p := range broadcastPairs(a.Shape, b.Shape, shape) {
			x, e := a.I[p[0]], bi[p[1]]
			if e < 0 || e > 64 {
				return nil, c.Errorf("integer power with exponent %d", e)
			}
			r := int64(1)
			for range e {
				r *= x
			}
			out[k] = r
		}
		return []*Tensor{NewInts(a.DType, shape, out)}, nil
	}
	bf := b.Floats()
	out := make([]float32, total)
	for k, p := range broadcastPairs(a.Shape, b.Shape, shape) {
		out[k] = float32(math.Pow(float64(a.F[p[0]]), float64(bf[p[1]])))
	}
	return []*Tensor{NewFloat(shape, out)}, nil
}

// GeluTanh reads a Gelu node's approximate attribute: false for "none" (the exact
// x·Φ(x)), true for "tanh".
func GeluTanh(n *Node) (bool, error) {
	a, err := n.String("approximate", "none")
	if err != nil {
		return false, err
	}
	switch a {
	case "none":
		return false, nil
	case "tanh":
		return true, nil
	}
	return false, &AttrError{n.Name, n.Op, "approximate", fmt.Sprintf("%q is not \"none\" or \"tanh\"", a)}
}

// Gelu is x·Φ(x) = x/2·(1 + erf(x/√2)), or with tanh its approximation
// x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
func Gelu(x float64, tanh bool) float64 {
	if tanh {
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}
	return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
}

// arith applies the arithmetic op (Add, Sub, Mul, Div) to x and y.
func arith[T int64 | float32](op string, x, y T) T {
	switch op {
	case "Add":
		return x + y
	case "Sub":
		return x - y
	case "Mul":
		return x * y
	}
	return x / y
}
