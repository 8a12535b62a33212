package graph_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/onnxio/onnxpb"
)

// layerNormModel writes torch.onnx's opset-13 layer_norm over the last len(axes) axes of
// x (N×3×4×8), with the square as Pow(d, 2) or Mul(d, d), and optional scale and bias
// (constants of shape norm). extra lists more graph outputs.
func layerNormModel(axes []int64, pow, scale, bias bool, extra ...string) *onnxpb.ModelProto {
	r := rand.New(rand.NewPCG(1, 2))
	b := newModel(13).input("x", -1, 3, 4, 8)
	norm := []int64{4, 8}[2-len(axes):]
	n := int(norm[0])
	if len(norm) == 2 {
		n *= int(norm[1])
	}
	b.node("ReduceMean", "/ln/ReduceMean", []string{"x"}, []string{"mean"}, intsAttr("axes", axes...))
	b.node("Sub", "/ln/Sub", []string{"x", "mean"}, []string{"d"})
	if pow {
		b.floats("two", nil, []float32{2})
		b.node("Pow", "/ln/Pow", []string{"d", "two"}, []string{"sq"})
	} else {
		b.node("Mul", "/ln/Mul_sq", []string{"d", "d"}, []string{"sq"})
	}
	b.node("ReduceMean", "/ln/ReduceMean_1", []string{"sq"}, []string{"var"}, intsAttr("axes", axes...))
	b.floats("eps", nil, []float32{1e-6})
	b.node("Add", "/ln/Add", []string{"var", "eps"}, []string{"ve"})
	b.node("Sqrt", "/ln/Sqrt", []string{"ve"}, []string{"s"})
	b.node("Div", "/ln/Div", []string{"d", "s"}, []string{"y"})
	out := "y"
	if scale {
		b.floats("w", norm, randFloats(r, n))
		b.node("Mul", "/ln/Mul", []string{"w", out}, []string{"yw"}) // constant first, as torch writes it
		out = "yw"
	}
	if bias {
		b.floats("b", norm, randFloats(r, n))
		b.node("Add", "/ln/Add_1", []string{out, "b"}, []string{"yb"})
		out = "yb"
	}
	b.node("Relu", "relu", []string{out}, []string{"out"})
	b.output("out")
	for _, e := range extra {
		b.output(e)
	}
	return b.build()
}

func TestFoldLayerNorm(t *testing.T) {
	for _, c := range []struct {
		name             string
		axes             []int64
		pow, scale, bias bool
		wantAxis         int64
		wantInputs       int
	}{
		{"torch form", []int64{-1}, true, true, true, -1, 3},
		{"square as Mul, two axes, no bias", []int64{2, 3}, false, true, false, -2, 2},
		{"no affine", []int64{-1}, true, false, false, -1, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := canonical(t, layerNormModel(c.axes, c.pow, c.scale, c.bias), false)
			if ops := opsOf(g); !slices.Equal(ops, []string{"LayerNormalization", "Relu"}) {
				t.Fatalf("ops after canonicalization: %v", ops)
			}
			ln := g.Nodes[0]
			if ln.Name != "/ln/LayerNormalization" || len(ln.Inputs) != c.wantInputs || ln.Inputs[0] != "x" || g.Nodes[1].Inputs[0] != ln.Outputs[0] {
				t.Errorf("fused node %s(%v) -> %v", ln.Name, ln.Inputs, ln.Outputs)
			}
			axis, _ := ln.Int("axis", 0)
			eps, _ := ln.Float("epsilon", 0)
			if axis != c.wantAxis || eps != 1e-6 {
				t.Errorf("axis %d epsilon %g, want %d and 1e-6", axis, eps, c.wantAxis)
			}
			scale := g.Consts[ln.Inputs[1]]
			want := []int{8}
			if c.wantAxis == -2 {
				want = []int{4, 8}
			}
			if !slices.Equal(scale.Shape, want) || (!c.scale && scale.F[0] != 1) {
				t.Errorf("scale %v %v", scale.Shape, scale.F[:2])
			}
		})
	}
	// Not the decomposition: a middle axis, or an intermediate someone else reads.
	for name, m := range map[string]*onnxpb.ModelProto{
		"middle axis":         layerNormModel([]int64{2}, true, true, true),
		"intermediate output": layerNormModel([]int64{-1}, true, true, true, "d"),
	} {
		g := canonical(t, m, false)
		if slices.Contains(opsOf(g), "LayerNormalization") {
			t.Errorf("%s: folded: %v", name, opsOf(g))
		}
	}
}

// Two LayerNorms reading one scale constant each get their own copy (a learned parameter
// each, as in the source model).
func TestFoldLayerNormUnshares(t *testing.T) {
	b := newModel(13).input("x", -1, 6)
	b.floats("eps", nil, []float32{1e-5}).floats("w", []int64{6}, []float32{1, 2, 3, 4, 5, 6})
	for _, p := range []string{"a", "b"} {
		in := "x"
		if p == "b" {
			in = "a/out"
		}
		b.node("ReduceMean", p+"/ReduceMean", []string{in}, []string{p + "/m"}, intsAttr("axes", -1))
		b.node("Sub", p+"/Sub", []string{in, p + "/m"}, []string{p + "/d"})
		b.node("Mul", p+"/Sq", []string{p + "/d", p + "/d"}, []string{p + "/sq"})
		b.node("ReduceMean", p+"/ReduceMean_1", []string{p + "/sq"}, []string{p + "/v"}, intsAttr("axes", -1))
		b.node("Add", p+"/Add", []string{p + "/v", "eps"}, []string{p + "/ve"})
		b.node("Sqrt", p+"/Sqrt", []string{p + "/ve"}, []string{p + "/s"})
		b.node("Div", p+"/Div", []string{p + "/d", p + "/s"}, []string{p + "/y"})
		b.node("Mul", p+"/Mul", []string{p + "/y", "w"}, []string{p + "/out"})
	}
	g := canonical(t, b.output("b/out").build(), false)
	if len(g.Nodes) != 2 || g.Nodes[0].Op != "LayerNormalization" || g.Nodes[1].Op != "LayerNormalization" {
		t.Fatalf("ops: %v", opsOf(g))
	}
	s0, s1 := g.Nodes[0].Inputs[1], g.Nodes[1].Inputs[1]
	if s0 == s1 || !slices.Equal(g.Consts[s0].F, g.Consts[s1].F) || g.Consts[s0].F[5] != 6 {
		t.Errorf("scales %s %v and %s %v", s0, g.Consts[s0].F, s1, g.Consts[s1].F)
	}
}

// geluModel writes x·(1 + erf(x/√2))·½ as torch.onnx does (div, half last) or with a
// multiplication by 1/√2 and the half applied to x first.
func geluModel(torch bool, one float32) *onnxpb.ModelProto {
	b := newModel(13).input("x", -1, 5)
	b.floats("one", nil, []float32{one}).floats("half", nil, []float32{0.5})
	if torch {
		b.floats("sqrt2", nil, []float32{1.4142135})
		b.node("Div", "/act/Div", []string{"x", "sqrt2"}, []string{"u"})
	} else {
		b.floats("rsqrt2", nil, []float32{float32(1 / math.Sqrt2)})
		b.node("Mul", "/act/Mul_s", []string{"rsqrt2", "x"}, []string{"u"})
	}
	b.node("Erf", "/act/Erf", []string{"u"}, []string{"e"})
	b.node("Add", "/act/Add", []string{"one", "e"}, []string{"a"})
	if torch {
		b.node("Mul", "/act/Mul", []string{"x", "a"}, []string{"m"})
		b.node("Mul", "/act/Mul_1", []string{"m", "half"}, []string{"y"})
	} else {
		b.node("Mul", "/act/Mul_h", []string{"x", "half"}, []string{"h"})
		b.node("Mul", "/act/Mul", []string{"h", "a"}, []string{"y"})
	}
	return b.output("y").build()
}

func TestFoldGelu(t *testing.T) {
	for _, torch := range []bool{true, false} {
		g := canonical(t, geluModel(torch, 1), false)
		if len(g.Nodes) != 1 || g.Nodes[0].Op != "Gelu" || g.Nodes[0].Inputs[0] != "x" || g.Nodes[0].Outputs[0] != "y" ||
			g.Nodes[0].Name != "/act/Gelu" {
			t.Errorf("torch form %v: %v", torch, opsOf(g))
		}
		if len(g.Consts) != 0 {
			t.Errorf("constants left: %v", g.Consts)
		}
	}
	if g := canonical(t, geluModel(true, 2), false); slices.Contains(opsOf(g), "Gelu") {
		t.Errorf("1 + erf replaced by 2 + erf folded: %v", opsOf(g))
	}
}

// A graph of opset 13 holding LayerNormalization and Gelu (the fold passes' result) is
// written as their decompositions, which import and fold back to the same nodes.
func TestLoweredForOldOpsets(t *testing.T) {
	g := canonical(t, layerNormModel([]int64{-1}, true, true, true), false)
	m, err := g.ToONNX(graph.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, n := range m.GetGraph().GetNode() {
		ops = append(ops, n.GetOpType())
	}
	want := []string{"ReduceMean", "Sub", "Mul", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Add", "Relu"}
	if !slices.Equal(ops, want) {
		t.Errorf("written ops %v, want %v", ops, want)
	}
	back := canonical(t, m, false)
	if !slices.Equal(opsOf(back), []string{"LayerNormalization", "Relu"}) {
		t.Errorf("re-imported: %v", opsOf(back))
	}
	g.Opset = 17
	if m, err = g.ToONNX(graph.WriteOptions{}); err != nil || m.GetGraph().GetNode()[0].GetOpType() != "LayerNormalization" {
		t.Errorf("opset 17: %v %v", err, m.GetGraph().GetNode()[0].GetOpType())
	}
	gg := canonical(t, geluModel(true, 1), false)
	if m, err = gg.ToONNX(graph.WriteOptions{}); err != nil || len(m.GetGraph().GetNode()) != 5 {
		t.Fatalf("Gelu at opset 13: %v", err)
	}
	if back := canonical(t, m, false); !slices.Equal(opsOf(back), []string{"Gelu"}) {
		t.Errorf("Gelu re-imported: %v", opsOf(back))
	}
	// A ReduceMean read at opset 18 (axes as an input) and written at 13 (axes as an
	// attribute) leaves no initializer behind: what a model qnas packed at opset 21 and
	// writes back at its own opset must be the file it packed.
	r18 := canonical(t, newModel(18).input("x", -1, 3, 4).ints("axes", -1).
		node("ReduceMean", "rm", []string{"x", "axes"}, []string{"y"}).output("y").build(), false)
	r18.Opset = 13
	m, err = r18.ToONNX(graph.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := m.GetGraph().GetNode()[0]; len(n.GetInput()) != 1 || len(m.GetGraph().GetInitializer()) != 0 {
		t.Errorf("ReduceMean at opset 13: inputs %v, initializers %d", n.GetInput(), len(m.GetGraph().GetInitializer()))
	}
}

// layerScaleModel writes a channels-last pointwise layer as torch.onnx writes ConvNeXt's:
// Transpose to N×H×W×C, MatMul by W [4, 5], Add of the bias (constant first), Transpose back,
// Mul by the layer scale γ of shape gshape, then a Relu. extra lists more graph outputs.
func layerScaleModel(gshape []int64, shareW bool, extra ...string) *onnxpb.ModelProto {
	r := rand.New(rand.NewPCG(3, 4))
	b := newModel(13).input("x", -1, 4, 3, 3)
	n := 1
	for _, d := range gshape {
		n *= int(d)
	}
	b.floats("w", []int64{4, 5}, randFloats(r, 20)).floats("b", []int64{5}, randFloats(r, 5)).floats("gamma", gshape, randFloats(r, n))
	b.node("Transpose", "t1", []string{"x"}, []string{"xt"}, intsAttr("perm", 0, 2, 3, 1))
	b.node("MatMul", "fc", []string{"xt", "w"}, []string{"mm"})
	b.node("Add", "fc/Add", []string{"b", "mm"}, []string{"yb"})
	b.node("Transpose", "t2", []string{"yb"}, []string{"y"}, intsAttr("perm", 0, 3, 1, 2))
	b.node("Mul", "scale", []string{"gamma", "y"}, []string{"ys"})
	b.node("Relu", "relu", []string{"ys"}, []string{"out"})
	b.output("out")
	if shareW {
		b.node("MatMul", "fc2", []string{"xt", "w"}, []string{"mm2"}).output("mm2")
	}
	for _, e := range extra {
		b.output(e)
	}
	return b.build()
}

func TestFoldScale(t *testing.T) {
	m := layerScaleModel([]int64{5, 1, 1}, false)
	src, err := graph.FromONNX(m, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, bias, gamma := src.Consts["w"].F, src.Consts["b"].F, src.Consts["gamma"].F
	g := canonical(t, m, false)
	if ops := opsOf(g); !slices.Equal(ops, []string{"Transpose", "MatMul", "Add", "Transpose", "Relu"}) {
		t.Fatalf("ops after canonicalization: %v", ops)
	}
	if g.Nodes[3].Outputs[0] != "ys" || g.Nodes[4].Inputs[0] != "ys" || g.Consts["gamma"] != nil {
		t.Errorf("the chain does not write the Mul's output: %v -> %v", g.Nodes[3].Outputs, g.Nodes[4].Inputs)
	}
	for i, v := range g.Consts["w"].F {
		if want := w[i] * gamma[i%5]; v != want {
			t.Fatalf("w[%d] = %v, want %v·%v", i, v, w[i], gamma[i%5])
		}
	}
	for c, v := range g.Consts["b"].F {
		if want := bias[c] * gamma[c]; v != want {
			t.Errorf("b[%d] = %v, want %v", c, v, want)
		}
	}
	// Left alone: a scale varying along a spatial axis, an intermediate someone else reads,
	// a weight another layer shares.
	for name, m := range map[string]*onnxpb.ModelProto{
		"spatial scale":       layerScaleModel([]int64{3, 1}, false),
		"intermediate output": layerScaleModel([]int64{5, 1, 1}, false, "yb"),
		"shared weight":       layerScaleModel([]int64{5, 1, 1}, true),
	} {
		if g := canonical(t, m, false); !slices.Contains(opsOf(g), "Mul") {
			t.Errorf("%s: folded: %v", name, opsOf(g))
		}
	}
}
