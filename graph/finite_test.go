package graph_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
)

func TestCheckFinite(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	convBN := func(w, b, variance []float32) *onnxpb.ModelProto {
		return newModel(13).input("x", -1, 1, 4, 4).
			floats("conv1.weight", []int64{3, 1, 1, 1}, w).floats("conv1.bias", []int64{3}, b).
			floats("g", []int64{3}, []float32{1, 1, 1}).floats("be", []int64{3}, []float32{0, 0, 0}).
			floats("mu", []int64{3}, []float32{0, 0, 0}).floats("var", []int64{3}, variance).
			node("Conv", "conv1", []string{"x", "conv1.weight", "conv1.bias"}, []string{"a"}).
			node("BatchNormalization", "bn1", []string{"a", "g", "be", "mu", "var"}, []string{"y"}).
			output("y").build()
	}
	ok := []float32{1, 2, 3}
	cases := []struct {
		name string
		m    *onnxpb.ModelProto
		want string // "" : finite
	}{
		{"finite", convBN(ok, ok, ok), ""},
		{"NaN weights", convBN([]float32{nan, 1, nan}, ok, ok), `node "conv1" (Conv): weight "conv1.weight" has 2 NaN values`},
		{"one NaN", convBN([]float32{nan, 1, 2}, ok, ok), `weight "conv1.weight" has 1 NaN value`},
		{"Inf bias", convBN(ok, []float32{inf, -inf, 1}, ok), `node "conv1" (Conv): bias "conv1.bias" has 1 +Inf and 1 -Inf values`},
		{"mixed", convBN([]float32{nan, inf, -inf}, ok, ok), `weight "conv1.weight" has 1 NaN, 1 +Inf and 1 -Inf values`},
		{"BN variance", convBN(ok, ok, []float32{1, nan, 1}), `node "bn1" (BatchNormalization): variance "var" has 1 NaN value`},
		{"NaN attribute", newModel(13).input("x", -1, 4).
			node("LeakyRelu", "lr", []string{"x"}, []string{"y"}, floatAttr("alpha", nan)).output("y").build(),
			`node "lr" (LeakyRelu): attribute "alpha" is NaN`},
		{"Inf Clip bound is fine", newModel(9).input("x", -1, 4).
			node("Clip", "c", []string{"x"}, []string{"y"}, floatAttr("min", -inf), floatAttr("max", 6)).output("y").build(), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, err := graph.FromONNX(c.m, graph.ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			direct := g.Clone().CheckFinite()
			for _, fold := range []bool{false, true} {
				err := g.Clone().Canonicalize(graph.CanonicalOptions{FoldBN: fold})
				if c.want == "" {
					if err != nil || direct != nil {
						t.Fatalf("CheckFinite %v, Canonicalize %v; want no error", direct, err)
					}
					continue
				}
				if err == nil || err.Error() != c.want && !strings.HasSuffix(err.Error(), c.want) {
					t.Errorf("FoldBN %v: Canonicalize error %v, want %q", fold, err, c.want)
				}
			}
			if c.want != "" && (direct == nil || !strings.Contains(direct.Error(), c.want)) {
				t.Errorf("CheckFinite: %v, want %q", direct, c.want)
			}
		})
	}
}

// NaN in a Constant node's value and in a constant computed by folding are caught too:
// both are float constant inputs of a node by the time check-finite runs.
func TestCheckFiniteFoldedConstants(t *testing.T) {
	nan := float32(math.NaN())
	m := newModel(13).input("x", -1, 2).
		node("Constant", "k", nil, []string{"k"}, tensorAttr("value", onnxio.NewFloat32Tensor("", []int64{2}, []float32{1, nan}))).
		node("Add", "add", []string{"x", "k"}, []string{"y"}).output("y").build()
	g, err := graph.FromONNX(m, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = g.Canonicalize(graph.CanonicalOptions{})
	if err == nil || !strings.Contains(err.Error(), `node "add" (Add): input "k" has 1 NaN value`) {
		t.Fatalf("got %v", err)
	}
	zero := newModel(13).input("x", -1, 2).floats("a", []int64{2}, []float32{0, 1}).floats("b", []int64{2}, []float32{0, 1}).
		node("Div", "div", []string{"a", "b"}, []string{"q"}).
		node("Mul", "mul", []string{"x", "q"}, []string{"y"}).output("y").build()
	g, err = graph.FromONNX(zero, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Canonicalize(graph.CanonicalOptions{}); err == nil || !strings.Contains(err.Error(), `node "mul" (Mul)`) {
		t.Fatalf("0/0 folded into a weight: got %v", err)
	}
}

func TestCheckFiniteIsFirstPass(t *testing.T) {
	if names := graph.PassNames(); len(names) == 0 || names[0] != "check-finite" || !slices.Contains(names, "fold-constants") {
		t.Fatalf("passes: %v", names)
	}
}
