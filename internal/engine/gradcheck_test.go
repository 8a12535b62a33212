package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
)

// gradCase is a one-node graph for the finite-difference check.
type gradCase struct {
	name   string
	op     string
	inputs [][]int       // activation inputs x0, x1, … (shapes)
	params map[int][]int // input index → shape of a learnable constant
	consts map[int]*graph.Tensor
	attrs  map[string]*graph.Attr
	nOut   int
	train  bool
	then   string // a unary op applied to the output (exercises the engine's fusions)
	thenAt map[string]*graph.Attr
	domain string
	// neg, when set, says which elements j of input i are negative (the rest are
	// positive), so that sums of inputs stay clear of a following Relu's kink.
	neg func(i, j int) bool
}

func ints(v ...int64) *graph.Attr  { return &graph.Attr{Kind: graph.AttrInts, Ints: v} }
func intA(v int64) *graph.Attr     { return &graph.Attr{Kind: graph.AttrInt, I: v} }
func floatA(v float32) *graph.Attr { return &graph.Attr{Kind: graph.AttrFloat, F: v} }
func i64(v ...int64) *graph.Tensor { return graph.NewInt([]int{len(v)}, v) }
func strA(v string) *graph.Attr    { return &graph.Attr{Kind: graph.AttrString, S: v} }

// positive makes every input element positive (Sqrt, Pow's base).
func positive(_, _ int) bool { return false }
func f32(v ...float32) *graph.Tensor {
	return graph.NewFloat(nil, v)
}

// gradCases covers every op the engine runs; TestGradients fails for an op without one.
var gradCases = []gradCase{
	{name: "conv", op: "Conv", inputs: [][]int{{2, 3, 6, 5}}, params: map[int][]int{1: {4, 3, 3, 3}, 2: {4}},
		attrs: map[string]*graph.Attr{"pads": ints(1, 1, 1, 1)}},
	{name: "conv strided dilated", op: "Conv", inputs: [][]int{{2, 2, 9, 8}}, params: map[int][]int{1: {3, 2, 3, 2}},
		attrs: map[string]*graph.Attr{"pads": ints(1, 0, 2, 1), "strides": ints(2, 2), "dilations": ints(2, 1)}},
	{name: "conv grouped", op: "Conv", inputs: [][]int{{2, 4, 5, 5}}, params: map[int][]int{1: {6, 2, 3, 3}, 2: {6}},
		attrs: map[string]*graph.Attr{"group": intA(2), "pads": ints(1, 1, 1, 1)}},
	{name: "conv depthwise", op: "Conv", inputs: [][]int{{2, 3, 6, 6}}, params: map[int][]int{1: {3, 1, 3, 3}, 2: {3}},
		attrs: map[string]*graph.Attr{"group": intA(3), "pads": ints(1, 1, 1, 1), "strides": ints(2, 2)}},
	{name: "batchnorm train", op: "BatchNormalization", inputs: [][]int{{3, 4, 3, 2}}, params: map[int][]int{1: {4}, 2: {4}},
		consts: map[int]*graph.Tensor{3: graph.NewFloat([]int{4}, []float32{0, 0.1, 0.2, 0.3}), 4: graph.NewFloat([]int{4}, []float32{1, 2, 1, 0.5})}, train: true},
	{name: "batchnorm eval", op: "BatchNormalization", inputs: [][]int{{3, 4, 3, 2}}, params: map[int][]int{1: {4}, 2: {4}},
		consts: map[int]*graph.Tensor{3: graph.NewFloat([]int{4}, []float32{0, 0.1, 0.2, 0.3}), 4: graph.NewFloat([]int{4}, []float32{1, 2, 1, 0.5})}},
	{name: "batchnorm+relu train", op: "BatchNormalization", inputs: [][]int{{3, 4, 3, 2}}, params: map[int][]int{1: {4}, 2: {4}},
		consts: map[int]*graph.Tensor{3: graph.NewFloat([]int{4}, []float32{0, 0.1, 0.2, 0.3}), 4: graph.NewFloat([]int{4}, []float32{1, 2, 1, 0.5})},
		train:  true, then: "Relu"},
	{name: "batchnorm+relu eval", op: "BatchNormalization", inputs: [][]int{{3, 4, 3, 2}}, params: map[int][]int{1: {4}, 2: {4}},
		consts: map[int]*graph.Tensor{3: graph.NewFloat([]int{4}, []float32{0, 0.1, 0.2, 0.3}), 4: graph.NewFloat([]int{4}, []float32{1, 2, 1, 0.5})},
		then:   "Relu"},
	{name: "batchnorm+relu6 train", op: "BatchNormalization", inputs: [][]int{{3, 4, 3, 2}}, params: map[int][]int{1: {4}, 2: {4}},
		consts: map[int]*graph.Tensor{3: graph.NewFloat([]int{4}, []float32{0, 0.1, 0.2, 0.3}), 4: graph.NewFloat([]int{4}, []float32{1, 2, 1, 0.5})},
		train:  true, then: "Clip", thenAt: map[string]*graph.Attr{"min": floatA(0), "max": floatA(0.9)}},
	{name: "batchnorm+relu6 eval", op: "BatchNormalization", inputs: [][]int{{3, 4, 3, 2}}, params: map[int][]int{1: {4}, 2: {4}},
		consts: map[int]*graph.Tensor{3: graph.NewFloat([]int{4}, []float32{0, 0.1, 0.2, 0.3}), 4: graph.NewFloat([]int{4}, []float32{1, 2, 1, 0.5})},
		then:   "Clip", thenAt: map[string]*graph.Attr{"min": floatA(0), "max": floatA(0.9)}},
	{name: "relu", op: "Relu", inputs: [][]int{{2, 3, 4}}},
	{name: "clip", op: "Clip", inputs: [][]int{{2, 3, 4}}, consts: map[int]*graph.Tensor{1: f32(-0.5), 2: f32(0.7)}},
	{name: "leaky relu", op: "LeakyRelu", inputs: [][]int{{2, 7}}, attrs: map[string]*graph.Attr{"alpha": floatA(0.1)}},
	{name: "sigmoid", op: "Sigmoid", inputs: [][]int{{2, 7}}},
	{name: "hard sigmoid", op: "HardSigmoid", inputs: [][]int{{3, 7}}},
	{name: "hard swish", op: "HardSwish", inputs: [][]int{{3, 7}}},
	{name: "maxpool ceil", op: "MaxPool", inputs: [][]int{{2, 2, 7, 6}},
		attrs: map[string]*graph.Attr{"kernel_shape": ints(3, 3), "strides": ints(2, 2), "pads": ints(1, 1, 0, 0), "ceil_mode": intA(1)}},
	{name: "avgpool", op: "AveragePool", inputs: [][]int{{2, 2, 6, 6}},
		attrs: map[string]*graph.Attr{"kernel_shape": ints(3, 2), "strides": ints(2, 1), "pads": ints(1, 0, 1, 1)}},
	{name: "avgpool include pad", op: "AveragePool", inputs: [][]int{{2, 2, 5, 5}},
		attrs: map[string]*graph.Attr{"kernel_shape": ints(3, 3), "pads": ints(1, 1, 1, 1), "count_include_pad": intA(1)}},
	{name: "global avg", op: "GlobalAveragePool", inputs: [][]int{{2, 3, 4, 5}}},
	{name: "global max", op: "GlobalMaxPool", inputs: [][]int{{2, 3, 4, 5}}},
	{name: "reduce mean hw", op: "ReduceMean", inputs: [][]int{{2, 3, 4, 5}}, attrs: map[string]*graph.Attr{"axes": ints(2, 3)}},
	{name: "gemm", op: "Gemm", inputs: [][]int{{3, 5}}, params: map[int][]int{1: {4, 5}, 2: {4}},
		attrs: map[string]*graph.Attr{"transB": intA(1)}},
	{name: "gemm alpha beta", op: "Gemm", inputs: [][]int{{3, 5}}, params: map[int][]int{1: {5, 4}, 2: {1}},
		attrs: map[string]*graph.Attr{"alpha": floatA(0.5), "beta": floatA(2)}},
	{name: "matmul", op: "MatMul", inputs: [][]int{{2, 3, 5}}, params: map[int][]int{1: {5, 4}}},
	{name: "add", op: "Add", inputs: [][]int{{2, 3, 4}, {2, 3, 4}}},
	{name: "add broadcast", op: "Add", inputs: [][]int{{2, 3, 4}, {3, 1}}},
	{name: "add relu", op: "Add", inputs: [][]int{{2, 3, 5}, {2, 3, 5}}, then: "Relu",
		neg: func(_, j int) bool { return j%3 == 0 }},
	{name: "add relu broadcast", op: "Add", inputs: [][]int{{2, 3, 4}, {3, 1}}, then: "Relu",
		neg: func(i, j int) bool { return [2]int{j / 4 % 3, j}[i] == 0 }}, // by channel
	{name: "sub broadcast", op: "Sub", inputs: [][]int{{2, 1, 4}, {2, 3, 1}}},
	{name: "mul se", op: "Mul", inputs: [][]int{{2, 3, 2, 2}, {2, 3, 1, 1}}},
	{name: "div", op: "Div", inputs: [][]int{{2, 3}, {2, 3}}},
	{name: "flatten", op: "Flatten", inputs: [][]int{{2, 3, 2}}},
	{name: "reshape", op: "Reshape", inputs: [][]int{{2, 6}}, consts: map[int]*graph.Tensor{1: i64(2, 3, 2)}},
	{name: "squeeze", op: "Squeeze", inputs: [][]int{{2, 1, 3}}, consts: map[int]*graph.Tensor{1: i64(1)}},
	{name: "unsqueeze", op: "Unsqueeze", inputs: [][]int{{2, 3}}, consts: map[int]*graph.Tensor{1: i64(1)}},
	{name: "identity", op: "Identity", inputs: [][]int{{2, 3}}},
	{name: "dropout", op: "Dropout", inputs: [][]int{{2, 3}}},
	{name: "transpose", op: "Transpose", inputs: [][]int{{2, 3, 4}}, attrs: map[string]*graph.Attr{"perm": ints(1, 2, 0)}},
	{name: "concat", op: "Concat", inputs: [][]int{{2, 3, 2}, {2, 1, 2}}, attrs: map[string]*graph.Attr{"axis": intA(1)}},
	{name: "split", op: "Split", inputs: [][]int{{2, 5}}, consts: map[int]*graph.Tensor{1: i64(2, 3)},
		attrs: map[string]*graph.Attr{"axis": intA(1)}, nOut: 2},
	{name: "slice", op: "Slice", inputs: [][]int{{3, 6}},
		consts: map[int]*graph.Tensor{1: i64(1, 0), 2: i64(3, 6), 3: i64(0, 1), 4: i64(1, 2)}},
	{name: "pad", op: "Pad", inputs: [][]int{{2, 3}}, consts: map[int]*graph.Tensor{1: i64(0, 1, 1, 2)}},
	{name: "softmax", op: "Softmax", inputs: [][]int{{3, 5}}},
	{name: "sqrt", op: "Sqrt", inputs: [][]int{{2, 7}}, neg: positive},
	{name: "erf", op: "Erf", inputs: [][]int{{3, 7}}},
	{name: "tanh", op: "Tanh", inputs: [][]int{{3, 7}}},
	{name: "gelu", op: "Gelu", inputs: [][]int{{3, 7}}},
	{name: "gelu tanh", op: "Gelu", inputs: [][]int{{3, 7}}, attrs: map[string]*graph.Attr{"approximate": strA("tanh")}},
	{name: "pow", op: "Pow", inputs: [][]int{{2, 3}, {2, 3}}, neg: positive},
	{name: "pow broadcast exponent", op: "Pow", inputs: [][]int{{2, 3, 4}, {4}}, neg: positive},
	{name: "pow square", op: "Pow", inputs: [][]int{{2, 3, 4}}, consts: map[int]*graph.Tensor{1: f32(2)}},
	{name: "layernorm last axis", op: "LayerNormalization", inputs: [][]int{{2, 3, 5}}, params: map[int][]int{1: {5}, 2: {5}},
		attrs: map[string]*graph.Attr{"epsilon": floatA(1e-3)}},
	{name: "layernorm two axes no bias", op: "LayerNormalization", inputs: [][]int{{2, 3, 4}}, params: map[int][]int{1: {3, 4}},
		attrs: map[string]*graph.Attr{"axis": intA(1)}},
	{name: "layernorm scalar scale", op: "LayerNormalization", inputs: [][]int{{3, 6}}, params: map[int][]int{1: {1}, 2: {1}}},
	{name: "reduce mean last axis", op: "ReduceMean", inputs: [][]int{{2, 3, 4}}, attrs: map[string]*graph.Attr{"axes": ints(-1)}},
	{name: "reduce mean middle no keepdims", op: "ReduceMean", inputs: [][]int{{2, 3, 4, 2}},
		attrs: map[string]*graph.Attr{"axes": ints(1, 3), "keepdims": intA(0)}},
	{name: "reduce sum axes input", op: "ReduceSum", inputs: [][]int{{2, 3, 4}}, consts: map[int]*graph.Tensor{1: i64(1)}},
	{name: "reduce sum all", op: "ReduceSum", inputs: [][]int{{3, 4}}, consts: map[int]*graph.Tensor{1: i64(1)},
		attrs: map[string]*graph.Attr{"keepdims": intA(0)}},
	{name: "pad reflect", op: "Pad", inputs: [][]int{{2, 4}}, consts: map[int]*graph.Tensor{1: i64(0, 2, 0, 3)},
		attrs: map[string]*graph.Attr{"mode": strA("reflect")}},
	{name: "pad edge", op: "Pad", inputs: [][]int{{2, 3}}, consts: map[int]*graph.Tensor{1: i64(1, 2, 0, 1)},
		attrs: map[string]*graph.Attr{"mode": strA("edge")}},
	{name: "pad wrap crop", op: "Pad", inputs: [][]int{{2, 5}}, consts: map[int]*graph.Tensor{1: i64(0, -1, 0, 3)},
		attrs: map[string]*graph.Attr{"mode": strA("wrap")}},
	{name: "split num_outputs", op: "Split", inputs: [][]int{{2, 5}}, nOut: 2,
		attrs: map[string]*graph.Attr{"axis": intA(1), "num_outputs": intA(2)}},
	{name: "outside op", op: "TestScaleShift", domain: "test", inputs: [][]int{{2, 3}}, params: map[int][]int{1: {1}}},
	// A Conv absorbs the ReLU or ReLU6 after it (a folded model's form); small layers, so
	// that few outputs sit within a finite-difference step of a kink, on the 3×3, pointwise,
	// depthwise and im2col paths.
	{name: "conv relu", op: "Conv", inputs: [][]int{{1, 2, 4, 3}}, params: map[int][]int{1: {2, 2, 3, 3}, 2: {2}},
		attrs: map[string]*graph.Attr{"pads": ints(1, 1, 1, 1)}, then: "Relu"},
	{name: "conv 1x1 relu6", op: "Conv", inputs: [][]int{{1, 2, 3, 3}}, params: map[int][]int{1: {3, 2, 1, 1}, 2: {3}},
		then: "Clip", thenAt: map[string]*graph.Attr{"min": floatA(0), "max": floatA(6)}},
	{name: "conv depthwise relu6", op: "Conv", inputs: [][]int{{1, 2, 4, 4}}, params: map[int][]int{1: {2, 1, 3, 3}, 2: {2}},
		attrs: map[string]*graph.Attr{"group": intA(2), "pads": ints(1, 1, 1, 1)},
		then:  "Clip", thenAt: map[string]*graph.Attr{"min": floatA(0), "max": floatA(6)}},
	{name: "conv dilated relu", op: "Conv", inputs: [][]int{{1, 2, 6, 4}}, params: map[int][]int{1: {2, 2, 3, 2}, 2: {2}},
		attrs: map[string]*graph.Attr{"pads": ints(1, 0, 2, 1), "dilations": ints(2, 1)}, then: "Relu"},
}

// build makes the case's graph with fixed shapes.
func (c gradCase) build(r *rand.Rand) (*graph.Graph, error) {
	g := graph.New(c.name)
	g.Opset = 13
	n := &graph.Node{Name: c.name, Op: c.op, Domain: c.domain, Attrs: c.attrs}
	nIn := len(c.inputs)
	for i := range c.params {
		nIn = max(nIn, i+1)
	}
	for i := range c.consts {
		nIn = max(nIn, i+1)
	}
	for i := 0; i < nIn; i++ {
		name := fmt.Sprintf("in%d", i)
		switch {
		case i < len(c.inputs):
			g.Inputs = append(g.Inputs, name)
			g.Shapes[name] = graph.Shape(c.inputs[i])
		case c.params[i] != nil:
			s := c.params[i]
			v := make([]float32, prodInts(s))
			for j := range v {
				v[j] = float32(r.NormFloat64())
			}
			g.Consts[name] = graph.NewFloat(s, v)
		case c.consts[i] != nil:
			g.Consts[name] = c.consts[i]
		default:
			name = ""
		}
		n.Inputs = append(n.Inputs, name)
	}
	for i := 0; i < max(c.nOut, 1); i++ {
		n.Outputs = append(n.Outputs, fmt.Sprintf("out%d", i))
		g.Outputs = append(g.Outputs, fmt.Sprintf("out%d", i))
	}
	g.Nodes = []*graph.Node{n}
	if c.then != "" {
		n.Outputs[0] = "mid"
		g.Nodes = append(g.Nodes, &graph.Node{Name: c.name + "/then", Op: c.then, Inputs: []string{"mid"}, Outputs: []string{g.Outputs[0]}, Attrs: c.thenAt})
	}
	return g, g.InferShapes()
}

// fill sets the plan's inputs to random values of magnitude 0.4 to 2 (away from the kinks
// of ReLU-like ops and from ties), with the signs c.neg asks for, else random.
func (c gradCase) fill(r *rand.Rand, g *graph.Graph, p *engine.Plan) {
	for i, in := range g.Inputs {
		v := p.Value(in)
		for j := range v.Data {
			x := 0.2 + 0.8*r.Float64()
			if c.neg != nil && c.neg(i, j) || c.neg == nil && r.IntN(2) == 0 {
				x = -x
			}
			v.Data[j] = float32(x * 2)
		}
	}
}

func prodInts(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// TestGradients checks every op's backward against central finite differences of
// L = Σ_outputs Σ R·y for fixed random R, for inputs and parameters alike.
func TestGradients(t *testing.T) {
	covered := map[string]bool{}
	for ci, c := range gradCases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ci), 99))
			g, err := c.build(r)
			if err != nil {
				t.Fatal(err)
			}
			p, err := engine.Compile(g, 1, engine.Options{InputGrads: true})
			if err != nil {
				t.Fatal(err)
			}
			c.fill(r, g, p)
			weights := make([][]float32, len(g.Outputs))
			for i, o := range g.Outputs {
				weights[i] = make([]float32, p.Value(o).Len())
				for j := range weights[i] {
					weights[i][j] = float32(r.NormFloat64())
				}
			}
			loss := func() float64 {
				p.Forward(c.train)
				s := 0.0
				for i, o := range g.Outputs {
					for j, y := range p.Value(o).Data {
						s += float64(y) * float64(weights[i][j])
					}
				}
				return s
			}
			loss()
			for i, o := range g.Outputs {
				copy(p.Value(o).Grad, weights[i])
			}
			p.Backward()
			var wrt []*engine.Value
			for _, in := range g.Inputs {
				wrt = append(wrt, p.Value(in))
			}
			wrt = append(wrt, p.Params...)
			const h = 5e-3
			for _, v := range wrt {
				analytic := slices.Clone(v.Grad)
				for _, j := range sampleIndices(r, v.Len(), 24) {
					old := v.Data[j]
					v.Data[j] = old + h
					lp := loss()
					v.Data[j] = old - h
					lm := loss()
					v.Data[j] = old
					numeric := (lp - lm) / (2 * h)
					a := float64(analytic[j])
					if math.Abs(a-numeric) > 2e-2*math.Max(math.Abs(a), math.Abs(numeric))+3e-3 {
						t.Errorf("d/d%s[%d]: backward %.5g, finite difference %.5g", v.Name, j, a, numeric)
					}
				}
			}
		})
		key := c.op
		if c.domain != "" {
			key = c.domain + "::" + c.op
		}
		covered[key] = true
		if c.then == "Relu" || c.then == "Clip" {
			covered[key+"+"+c.then] = true
		}
	}
	for _, op := range engine.Ops() {
		if !covered[op] && !inferenceOnly[op] {
			t.Errorf("op %s has no gradient check case", op)
		}
		// An op whose kernel absorbs a following ReLU needs a case of that fused form too.
		if d, ok := graph.LookupOp("", op); ok && d.AbsorbsReLU && !covered[op+"+Relu"] {
			t.Errorf("op %s absorbs a ReLU but has no gradient check case followed by Relu", op)
		}
		if d, ok := graph.LookupOp("", op); ok && d.AbsorbsBoundedReLU && !covered[op+"+Clip"] {
			t.Errorf("op %s absorbs a bounded ReLU but has no gradient check case followed by a Clip to [0, max]", op)
		}
	}
}

// inferenceOnly are the ops that refuse to pass a gradient (TestInferenceOnlyOps).
var inferenceOnly = map[string]bool{"QuantizeLinear": true, "DequantizeLinear": true}

// An inference-only op on a path that needs a gradient is refused when the plan is
// compiled, naming the node; on a constant (a quantized weight) it runs in training too.
func TestInferenceOnlyOps(t *testing.T) {
	for op := range inferenceOnly {
		g := graph.New(op)
		g.Opset = 13
		g.Inputs = []string{"x"}
		g.Shapes["x"] = graph.Shape{2, 3}
		g.Consts["s"] = graph.NewFloat(nil, []float32{0.5})
		g.Consts["z"] = graph.NewInts(graph.Uint8, nil, []int64{3})
		g.Consts["w"] = graph.NewInts(graph.Uint8, []int{2, 3}, []int64{0, 1, 2, 3, 4, 255})
		g.Nodes = []*graph.Node{
			{Name: "q", Op: op, Inputs: []string{"x", "s", "z"}, Outputs: []string{"y"}},
			{Name: "dq", Op: "DequantizeLinear", Inputs: []string{"w", "s", "z"}, Outputs: []string{"wf"}},
			{Name: "add", Op: "Add", Inputs: []string{"y", "wf"}, Outputs: []string{"out"}},
		}
		g.Outputs = []string{"out"}
		if err := g.InferShapes(); err != nil {
			t.Fatal(err)
		}
		_, err := engine.Compile(g, 2, engine.Options{InputGrads: true})
		if err == nil || !strings.Contains(err.Error(), `"q"`) || !strings.Contains(err.Error(), "inference only") {
			t.Errorf("%s in a training plan: %v", op, err)
		}
		p, err := engine.Compile(g, 2, engine.Options{})
		if err != nil {
			t.Fatalf("%s on constants in a training plan: %v", op, err)
		}
		p.Forward(true)
		if got := p.Value("wf").Data; got[0] != -1.5 || got[5] != 126 {
			t.Errorf("DequantizeLinear of uint8 [0 … 255] with scale 0.5, zero point 3: %v", got)
		}
	}
}

func sampleIndices(r *rand.Rand, n, k int) []int {
	if n <= k {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	return r.Perm(n)[:k]
}
