package graph_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// modelBuilder assembles small ONNX models for tests.
type modelBuilder struct {
	g     *onnxpb.GraphProto
	opset int64
}

func newModel(opset int64) *modelBuilder {
	return &modelBuilder{g: &onnxpb.GraphProto{Name: proto.String("test")}, opset: opset}
}

func (b *modelBuilder) input(name string, dims ...int64) *modelBuilder {
	shape := &onnxpb.TensorShapeProto{}
	for i, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if i == 0 && d < 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	b.g.Input = append(b.g.Input, &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
		Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(1), Shape: shape}}}})
	return b
}

func (b *modelBuilder) output(name string) *modelBuilder {
	b.g.Output = append(b.g.Output, &onnxpb.ValueInfoProto{Name: proto.String(name)})
	return b
}

func (b *modelBuilder) floats(name string, dims []int64, v []float32) *modelBuilder {
	b.g.Initializer = append(b.g.Initializer, onnxio.NewFloat32Tensor(name, dims, v))
	return b
}

func (b *modelBuilder) ints(name string, v ...int64) *modelBuilder {
	b.g.Initializer = append(b.g.Initializer, onnxio.NewInt64Tensor(name, []int64{int64(len(v))}, v))
	return b
}

func (b *modelBuilder) node(op, name string, in, out []string, attrs ...*onnxpb.AttributeProto) *modelBuilder {
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(name), Input: in, Output: out, Attribute: attrs})
	return b
}

func (b *modelBuilder) build() *onnxpb.ModelProto {
	return &onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: b.g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(b.opset)}}}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func intsAttr(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func floatAttr(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

func randFloats(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func canonical(t *testing.T, m *onnxpb.ModelProto, foldBN bool) *graph.Graph {
	t.Helper()
	g, err := graph.FromONNX(m, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Canonicalize(graph.CanonicalOptions{FoldBN: foldBN}); err != nil {
		t.Fatal(err)
	}
	return g
}

// The Shape→Gather→Unsqueeze→Concat→Reshape chain that older exporters write for
// x.view(x.size(0), -1) folds to a constant target that keeps the batch symbolic.
func TestShapeChainFoldsKeepingBatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m := newModel(13).input("x", -1, 64, 1, 1).
		ints("zero", 0).ints("axes0", 0).ints("minus1", -1).
		floats("W", []int64{10, 64}, randFloats(r, 640)).floats("B", []int64{10}, randFloats(r, 10)).
		node("Shape", "shape", []string{"x"}, []string{"s"}).
		node("Gather", "gather", []string{"s", "zero"}, []string{"n"}, intAttr("axis", 0)).
		node("Unsqueeze", "unsq", []string{"n", "axes0"}, []string{"n1"}).
		node("Concat", "cat", []string{"n1", "minus1"}, []string{"target"}, intAttr("axis", 0)).
		node("Reshape", "flat", []string{"x", "target"}, []string{"f"}).
		node("Gemm", "fc", []string{"f", "W", "B"}, []string{"y"}, intAttr("transB", 1)).
		output("y").build()
	// Gather's indices are a 1-element vector here; make them a scalar as exporters do.
	m.Graph.Initializer[0].Dims = nil
	g := canonical(t, m, false)
	var ops []string
	for _, n := range g.Nodes {
		ops = append(ops, n.Op)
	}
	if !slices.Equal(ops, []string{"Reshape", "Gemm"}) {
		t.Fatalf("nodes after folding: %v, want [Reshape Gemm]", ops)
	}
	if s := g.Shapes["f"]; !slices.Equal(s, graph.Shape{graph.Batch, 64}) {
		t.Errorf("reshape output %v, want Nx64", s)
	}
	target := g.Consts[g.Nodes[0].Inputs[1]]
	if !slices.Equal(target.I, []int64{-1, 64}) {
		t.Errorf("canonical reshape target %v, want [-1 64]", target.I)
	}
	if s := g.Shapes["y"]; !slices.Equal(s, graph.Shape{graph.Batch, 10}) {
		t.Errorf("output %v, want Nx10", s)
	}
}

// A Reshape exported with a fixed batch of 1 keeps the batch symbolic.
func TestFixedBatchReshapeBecomesBatch(t *testing.T) {
	m := newModel(13).input("x", 1, 8, 2, 2).ints("t", 1, 32).
		node("Reshape", "r", []string{"x", "t"}, []string{"y"}).output("y").build()
	g := canonical(t, m, false)
	if s := g.Shapes["y"]; !slices.Equal(s, graph.Shape{graph.Batch, 32}) {
		t.Fatalf("shape %v, want Nx32", s)
	}
}

func TestUnsupportedOpNamesNodeAndList(t *testing.T) {
	m := newModel(13).input("x", -1, 3, 8, 8).
		node("Relu", "ok", []string{"x"}, []string{"a"}).
		node("LpNormalization", "norm7", []string{"a"}, []string{"y"}).output("y").build()
	_, err := graph.FromONNX(m, graph.ImportOptions{})
	var ue *graph.UnsupportedError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v, want UnsupportedError", err)
	}
	msg := err.Error()
	for _, want := range []string{`"norm7"`, "LpNormalization", "supported: ", "Conv", "BatchNormalization"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message spans lines: %q", msg)
	}
}

func TestOtherDomainIsUnsupported(t *testing.T) {
	m := newModel(13).input("x", -1, 3, 8, 8).node("Relu", "r", []string{"x"}, []string{"y"}).output("y").build()
	m.Graph.Node[0].Domain = proto.String("com.microsoft")
	_, err := graph.FromONNX(m, graph.ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "com.microsoft::Relu") {
		t.Fatalf("error %v, want the foreign domain named", err)
	}
}

func TestSortAndCycles(t *testing.T) {
	m := newModel(13).input("x", -1, 3).
		node("Relu", "second", []string{"a"}, []string{"y"}).
		node("Relu", "first", []string{"x"}, []string{"a"}).output("y").build()
	g := canonical(t, m, false)
	if g.Nodes[0].Name != "first" {
		t.Errorf("order %s, %s", g.Nodes[0].Name, g.Nodes[1].Name)
	}
	cyc := newModel(13).input("x", -1, 3).
		node("Add", "a", []string{"x", "c"}, []string{"b"}).
		node("Relu", "c", []string{"b"}, []string{"c"}).output("c").build()
	if _, err := graph.FromONNX(cyc, graph.ImportOptions{}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: error %v", err)
	}
	undef := newModel(13).input("x", -1, 3).node("Add", "a", []string{"x", "ghost"}, []string{"y"}).output("y").build()
	if _, err := graph.FromONNX(undef, graph.ImportOptions{}); err == nil || !strings.Contains(err.Error(), `"ghost"`) {
		t.Errorf("undefined value: error %v", err)
	}
}

// naiveConv computes a stride-1, pad-1 3×3 convolution of one sample for the BN-fold test.
func naiveConv(x []float32, c, h, w int, wt, bias []float32, oc int) []float32 {
	out := make([]float32, oc*h*w)
	for o := 0; o < oc; o++ {
		for i := 0; i < h; i++ {
			for j := 0; j < w; j++ {
				s := float64(0)
				if bias != nil {
					s = float64(bias[o])
				}
				for ci := 0; ci < c; ci++ {
					for ki := 0; ki < 3; ki++ {
						for kj := 0; kj < 3; kj++ {
							y, xx := i+ki-1, j+kj-1
							if y < 0 || y >= h || xx < 0 || xx >= w {
								continue
							}
							s += float64(x[(ci*h+y)*w+xx]) * float64(wt[((o*c+ci)*3+ki)*3+kj])
						}
					}
				}
				out[(o*h+i)*w+j] = float32(s)
			}
		}
	}
	return out
}

func TestFoldBatchNormMatchesConvThenBN(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const c, oc, h, w = 2, 3, 5, 4
	wt, x := randFloats(r, oc*c*9), randFloats(r, c*h*w)
	gamma, beta, mean := randFloats(r, oc), randFloats(r, oc), randFloats(r, oc)
	variance := make([]float32, oc)
	for i := range variance {
		variance[i] = 0.5 + r.Float32()
	}
	const eps = 1e-3
	m := newModel(13).input("x", -1, c, h, w).
		floats("w", []int64{oc, c, 3, 3}, wt).floats("g", []int64{oc}, gamma).floats("b", []int64{oc}, beta).
		floats("m", []int64{oc}, mean).floats("v", []int64{oc}, variance).
		node("Conv", "conv", []string{"x", "w"}, []string{"c"}, intsAttr("pads", 1, 1, 1, 1), intsAttr("kernel_shape", 3, 3)).
		node("BatchNormalization", "bn", []string{"c", "g", "b", "m", "v"}, []string{"y"}, floatAttr("epsilon", eps)).
		output("y").build()
	g := canonical(t, m, true)
	if len(g.Nodes) != 1 || g.Nodes[0].Op != "Conv" || g.Nodes[0].Outputs[0] != "y" {
		t.Fatalf("after folding: %d nodes, first %s", len(g.Nodes), g.Nodes[0].Op)
	}
	conv := g.Nodes[0]
	got := naiveConv(x, c, h, w, g.Consts[conv.Inputs[1]].F, g.Consts[conv.Inputs[2]].F, oc)
	ref := naiveConv(x, c, h, w, wt, nil, oc)
	for o := 0; o < oc; o++ {
		s := float64(gamma[o]) / math.Sqrt(float64(variance[o])+eps)
		for k := 0; k < h*w; k++ {
			want := (float64(ref[o*h*w+k])-float64(mean[o]))*s + float64(beta[o])
			if d := math.Abs(float64(got[o*h*w+k]) - want); d > 1e-4 {
				t.Fatalf("channel %d pos %d: folded %g, conv+BN %g", o, k, got[o*h*w+k], want)
			}
		}
	}
}

func TestCostsOfConvGemmAndDepthwise(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	m := newModel(13).input("x", -1, 8, 16, 16).
		floats("dw", []int64{8, 1, 3, 3}, randFloats(r, 72)).
		floats("pw", []int64{16, 8, 1, 1}, randFloats(r, 128)).floats("pb", []int64{16}, randFloats(r, 16)).
		floats("fw", []int64{16, 10}, randFloats(r, 160)).
		node("Conv", "dwconv", []string{"x", "dw"}, []string{"a"}, intAttr("group", 8), intsAttr("pads", 1, 1, 1, 1), intsAttr("strides", 2, 2)).
		node("Conv", "pwconv", []string{"a", "pw", "pb"}, []string{"b"}).
		node("GlobalAveragePool", "gap", []string{"b"}, []string{"c"}).
		node("Flatten", "flat", []string{"c"}, []string{"d"}).
		node("MatMul", "fc", []string{"d", "fw"}, []string{"y"}).output("y").build()
	g := canonical(t, m, false)
	s := graph.Summarize(g)
	want := []struct {
		name         string
		params, macs int64
	}{
		{"dwconv", 72, 8 * 8 * 8 * 1 * 9}, // 8×8 output, 8 channels, 1 input channel per group, 3×3
		{"pwconv", 144, 8 * 8 * 16 * 8},
		{"fc", 160, 160},
	}
	if len(s.Layers) != len(want) {
		t.Fatalf("%d layers, want %d", len(s.Layers), len(want))
	}
	for i, w := range want {
		l := s.Layers[i]
		if l.Name != w.name || l.Params != w.params || l.MACs != w.macs || l.BOPsW8A8 != 64*w.macs {
			t.Errorf("layer %d: %+v, want %s params %d MACs %d", i, l, w.name, w.params, w.macs)
		}
	}
	if s.MACs != 4608+8192+160 || s.Params != 72+144+160 {
		t.Errorf("totals: %d MACs, %d params", s.MACs, s.Params)
	}
}

func TestClipBothForms(t *testing.T) {
	old := newModel(6).input("x", -1, 4).node("Clip", "c", []string{"x"}, []string{"y"}, floatAttr("min", 0), floatAttr("max", 6)).output("y").build()
	g := canonical(t, old, false)
	lo, hi, err := g.ClipBoundsOf(g.Nodes[0])
	if err != nil || lo != 0 || hi != 6 {
		t.Errorf("opset 6 Clip: %v %v %v", lo, hi, err)
	}
	b := newModel(13).input("x", -1, 4).floats("lo", nil, []float32{0}).floats("hi", nil, []float32{6})
	g = canonical(t, b.node("Clip", "c", []string{"x", "lo", "hi"}, []string{"y"}).output("y").build(), false)
	lo, hi, err = g.ClipBoundsOf(g.Nodes[0])
	if err != nil || lo != 0 || hi != 6 {
		t.Errorf("opset 13 Clip: %v %v %v", lo, hi, err)
	}
}

func TestIdentityAndDropoutRemoved(t *testing.T) {
	m := newModel(13).input("x", -1, 4).
		node("Relu", "r", []string{"x"}, []string{"a"}).
		node("Dropout", "d", []string{"a"}, []string{"b"}).
		node("Identity", "i", []string{"b"}, []string{"y"}).output("y").build()
	g := canonical(t, m, false)
	if len(g.Nodes) != 1 || g.Nodes[0].Op != "Relu" || g.Nodes[0].Outputs[0] != "y" {
		t.Fatalf("nodes: %d, %v", len(g.Nodes), g.Nodes[0])
	}
}

func TestHostileShapesRefused(t *testing.T) {
	cases := map[string]*onnxpb.ModelProto{
		"huge conv output": newModel(13).input("x", -1, 1, 1<<15, 1<<15).floats("w", []int64{1 << 10, 1, 1, 1}, make([]float32, 1<<10)).
			node("Conv", "c", []string{"x", "w"}, []string{"y"}).output("y").build(),
		"bad pads": newModel(13).input("x", -1, 1, 4, 4).floats("w", []int64{1, 1, 3, 3}, make([]float32, 9)).
			node("Conv", "c", []string{"x", "w"}, []string{"y"}, intsAttr("pads", -5, 0, 0, 0)).output("y").build(),
		"group mismatch": newModel(13).input("x", -1, 3, 4, 4).floats("w", []int64{4, 1, 3, 3}, make([]float32, 36)).
			node("Conv", "c", []string{"x", "w"}, []string{"y"}, intAttr("group", 2)).output("y").build(),
		"kernel larger than input": newModel(13).input("x", -1, 1, 2, 2).floats("w", []int64{1, 1, 3, 3}, make([]float32, 9)).
			node("Conv", "c", []string{"x", "w"}, []string{"y"}).output("y").build(),
		"reshape mismatch": newModel(13).input("x", -1, 6).ints("t", -1, 4).
			node("Reshape", "r", []string{"x", "t"}, []string{"y"}).output("y").build(),
	}
	for name, m := range cases {
		g, err := graph.FromONNX(m, graph.ImportOptions{})
		if err == nil {
			err = g.Canonicalize(graph.CanonicalOptions{})
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), `node "`) {
			t.Errorf("%s: error does not name the node: %v", name, err)
		}
	}
}

// A canonical graph written to ONNX and read back is the same graph.
func TestToONNXRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	m := newModel(13).input("x", -1, 2, 6, 6).
		floats("w", []int64{4, 2, 3, 3}, randFloats(r, 72)).floats("fcw", []int64{4, 3}, randFloats(r, 12)).
		node("Conv", "conv", []string{"x", "w"}, []string{"a"}, intsAttr("pads", 1, 1, 1, 1)).
		node("Clip", "relu6", []string{"a"}, []string{"b"}, floatAttr("min", 0), floatAttr("max", 6)).
		node("GlobalAveragePool", "gap", []string{"b"}, []string{"c"}).
		node("Flatten", "flat", []string{"c"}, []string{"d"}).
		node("MatMul", "fc", []string{"d", "fcw"}, []string{"y"}).output("y").build()
	m.OpsetImport[0].Version = proto.Int64(9) // Clip with attributes
	g := canonical(t, m, false)
	g.Meta["qnas.mean"] = "0.5"
	out, err := g.ToONNX(graph.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var a, b strings.Builder
	g.Dump(&a)
	back := canonical(t, out, false)
	back.Dump(&b)
	if a.String() != b.String() {
		t.Errorf("round trip changed the graph:\n%s\nvs\n%s", a.String(), b.String())
	}
	if back.Meta["qnas.mean"] != "0.5" {
		t.Errorf("metadata lost: %v", back.Meta)
	}
}
