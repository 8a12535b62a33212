package engine_test

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/ortrun"
)

// ortCases are one-node models of the ops added for ConvNeXt-style nets and of the
// opset 17–20 forms of older ops, written at the opset that defines them and run by
// ONNX Runtime and by the engine on the same random inputs.
var ortCases = []struct {
	opset int
	gradCase
}{
	{13, gradCase{name: "pow", op: "Pow", inputs: [][]int{{2, 3, 4}, {4}}, neg: positive}},
	{13, gradCase{name: "pow square", op: "Pow", inputs: [][]int{{2, 3, 4}}, consts: map[int]*graph.Tensor{1: f32(2)}}},
	{13, gradCase{name: "sqrt", op: "Sqrt", inputs: [][]int{{2, 7}}, neg: positive}},
	{13, gradCase{name: "erf", op: "Erf", inputs: [][]int{{4, 50}}}},
	{13, gradCase{name: "tanh", op: "Tanh", inputs: [][]int{{3, 7}}}},
	{13, gradCase{name: "div broadcast", op: "Div", inputs: [][]int{{2, 3, 4}}, consts: map[int]*graph.Tensor{1: f32(1.4142135)}}},
	{20, gradCase{name: "gelu", op: "Gelu", inputs: [][]int{{4, 50}}}},
	{20, gradCase{name: "gelu tanh", op: "Gelu", inputs: [][]int{{4, 50}}, attrs: map[string]*graph.Attr{"approximate": strA("tanh")}}},
	{17, gradCase{name: "layernorm", op: "LayerNormalization", inputs: [][]int{{2, 3, 4, 6}}, params: map[int][]int{1: {6}, 2: {6}},
		attrs: map[string]*graph.Attr{"epsilon": floatA(1e-6)}}},
	{17, gradCase{name: "layernorm axis 1 stats", op: "LayerNormalization", inputs: [][]int{{2, 3, 4}}, params: map[int][]int{1: {3, 4}},
		attrs: map[string]*graph.Attr{"axis": intA(1)}, nOut: 3}},
	{13, gradCase{name: "reduce mean attr", op: "ReduceMean", inputs: [][]int{{2, 3, 4, 5}}, attrs: map[string]*graph.Attr{"axes": ints(-1)}}},
	{18, gradCase{name: "reduce mean input", op: "ReduceMean", inputs: [][]int{{2, 3, 4, 5}}, consts: map[int]*graph.Tensor{1: i64(1, 3)},
		attrs: map[string]*graph.Attr{"keepdims": intA(0)}}},
	{18, gradCase{name: "reduce mean noop", op: "ReduceMean", inputs: [][]int{{2, 3}}, attrs: map[string]*graph.Attr{"noop_with_empty_axes": intA(1)}}},
	{13, gradCase{name: "reduce sum", op: "ReduceSum", inputs: [][]int{{2, 3, 4}}, consts: map[int]*graph.Tensor{1: i64(0, 2)}}},
	{18, gradCase{name: "split num_outputs", op: "Split", inputs: [][]int{{2, 7}}, nOut: 3,
		attrs: map[string]*graph.Attr{"axis": intA(1), "num_outputs": intA(3)}}},
	{13, gradCase{name: "pad reflect", op: "Pad", inputs: [][]int{{1, 2, 4, 5}}, consts: map[int]*graph.Tensor{1: i64(0, 0, 1, 2, 0, 0, 2, 1)},
		attrs: map[string]*graph.Attr{"mode": strA("reflect")}}},
	{13, gradCase{name: "pad edge", op: "Pad", inputs: [][]int{{2, 3}}, consts: map[int]*graph.Tensor{1: i64(1, 2, 0, 1)},
		attrs: map[string]*graph.Attr{"mode": strA("edge")}}},
	{18, gradCase{name: "pad axes", op: "Pad", inputs: [][]int{{2, 3, 4}}, consts: map[int]*graph.Tensor{1: i64(1, -1), 2: f32(0.5), 3: i64(2)}}},
	{19, gradCase{name: "pad wrap", op: "Pad", inputs: [][]int{{2, 5}}, consts: map[int]*graph.Tensor{1: i64(0, 3, 0, 2)},
		attrs: map[string]*graph.Attr{"mode": strA("wrap")}}},
}

// The engine's forward pass of each new op equals ONNX Runtime's within 1e-5 of the
// output's largest magnitude, for every output.
func TestNewOpsMatchONNXRuntime(t *testing.T) {
	ortrun.RequireORT(t)
	for ci, c := range ortCases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ci), 7))
			g, err := c.build(r)
			if err != nil {
				t.Fatal(err)
			}
			g.Opset = c.opset
			ir := int64(8)
			if c.opset > 17 {
				ir = 10
			}
			m, err := g.ToONNX(graph.WriteOptions{IRVersion: ir})
			if err != nil {
				t.Fatal(err)
			}
			model, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			p, err := engine.Compile(g, 1, engine.Options{Inference: true})
			if err != nil {
				t.Fatal(err)
			}
			c.fill(r, g, p)
			feeds := map[string]ortrun.Tensor{}
			for _, in := range g.Inputs {
				v := p.Value(in)
				shape := make([]int64, len(v.Shape))
				for k, d := range v.Shape {
					shape[k] = int64(d)
				}
				feeds[in] = ortrun.Tensor{Shape: shape, Data: v.Data}
			}
			p.Forward(false)
			want, err := ortrun.RunBytes(model, feeds, g.Outputs, ortrun.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range g.Outputs {
				got, ref := p.Value(o).Data, want[o].Data
				if len(got) != len(ref) {
					t.Fatalf("output %s: %d values, ONNX Runtime %d", o, len(got), len(ref))
				}
				if d := ortrun.RelDiff(got, ref); d > 1e-5 {
					t.Errorf("output %s differs from ONNX Runtime by %.3g of its largest value", o, d)
				}
			}
		})
	}
}

// A LayerNormalization and a Gelu in a graph of opset 13 (what the fold passes make of a
// torch export) are written as their opset-13 decompositions; ONNX Runtime running those
// computes what the engine computes on the graph imported back (and folded again).
func TestLoweredOpsMatchONNXRuntime(t *testing.T) {
	ortrun.RequireORT(t)
	r := rand.New(rand.NewPCG(3, 4))
	g := graph.New("lowered")
	g.Opset = 13
	g.Inputs = []string{"x"}
	g.Shapes["x"] = graph.Shape{graph.Batch, 3, 4, 8}
	g.Consts["scale"] = graph.NewFloat([]int{8}, randFloats(r, 8))
	g.Consts["bias"] = graph.NewFloat([]int{8}, randFloats(r, 8))
	ln := &graph.Node{Name: "ln", Op: "LayerNormalization", Inputs: []string{"x", "scale", "bias"}, Outputs: []string{"n"},
		Attrs: map[string]*graph.Attr{"epsilon": floatA(1e-6)}}
	gelu := &graph.Node{Name: "act", Op: "Gelu", Inputs: []string{"n"}, Outputs: []string{"y"}}
	g.Nodes = []*graph.Node{ln, gelu}
	g.Outputs = []string{"y"}
	if err := g.InferShapes(); err != nil {
		t.Fatal(err)
	}
	m, err := g.ToONNX(graph.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	model, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := graph.FromONNX(m, graph.ImportOptions{})
	if err == nil {
		err = back.Canonicalize(graph.CanonicalOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Nodes) != 2 || back.Nodes[0].Op != "LayerNormalization" || back.Nodes[1].Op != "Gelu" {
		t.Fatalf("re-imported graph has %d nodes, first %s", len(back.Nodes), back.Nodes[0].Op)
	}
	p, err := engine.Compile(back, 2, engine.Options{Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	x := p.Value("x")
	copy(x.Data, randFloats(r, x.Len()))
	p.Forward(false)
	want, err := ortrun.RunBytes(model, map[string]ortrun.Tensor{"x": {Shape: []int64{2, 3, 4, 8}, Data: x.Data}}, []string{"y"}, ortrun.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := maxRelDiff(p.Value("y").Data, want["y"].Data); d > 1e-5 {
		t.Errorf("engine and ONNX Runtime differ by %.3g", d)
	}
}

func randFloats(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// A graph read at opset 13 (ReduceMean axes as an attribute, an equal Split without
// num_outputs) and written at opset 18, as exporting with --pack raises it, takes the
// opset-18 forms: ONNX Runtime loads it and computes what the engine computes.
func TestFormsFollowOpset(t *testing.T) {
	ortrun.RequireORT(t)
	g := graph.New("forms")
	g.Opset = 13
	g.Inputs = []string{"x"}
	g.Shapes["x"] = graph.Shape{graph.Batch, 4, 6}
	g.Nodes = []*graph.Node{
		{Name: "mean", Op: "ReduceMean", Inputs: []string{"x"}, Outputs: []string{"m"}, Attrs: map[string]*graph.Attr{"axes": ints(1)}},
		{Name: "split", Op: "Split", Inputs: []string{"x"}, Outputs: []string{"a", "b"}, Attrs: map[string]*graph.Attr{"axis": intA(1)}},
		{Name: "sub", Op: "Sub", Inputs: []string{"a", "m"}, Outputs: []string{"y"}},
	}
	g.Outputs = []string{"y", "b"}
	if err := g.InferShapes(); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	p, err := engine.Compile(g, 3, engine.Options{Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	x := p.Value("x")
	copy(x.Data, randFloats(r, x.Len()))
	p.Forward(false)
	for _, opset := range []int{13, 18} {
		g.Opset = opset
		m, err := g.ToONNX(graph.WriteOptions{IRVersion: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range m.GetGraph().GetNode() {
			if n.GetOpType() == "ReduceMean" && (len(n.GetInput()) == 2) != (opset >= 18) {
				t.Errorf("opset %d: ReduceMean written with inputs %v", opset, n.GetInput())
			}
		}
		model, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ortrun.RunBytes(model, map[string]ortrun.Tensor{"x": {Shape: []int64{3, 4, 6}, Data: x.Data}}, g.Outputs, ortrun.Options{})
		if err != nil {
			t.Fatalf("opset %d: %v", opset, err)
		}
		for _, o := range g.Outputs {
			if d := maxRelDiff(p.Value(o).Data, want[o].Data); d > 1e-6 {
				t.Errorf("opset %d: output %s differs from ONNX Runtime by %.3g", opset, o, d)
			}
		}
	}
}
