package graph_test

import (
	"fmt"

	"errors"
	"google.golang.org/protobuf/proto"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/testenv"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
)

// loadWithConstInputs imports a conformance model with its integer inputs and scalar float
// inputs (shapes, axes, bounds, which qnas requires to be constant) bound to the values of
// test_data_set_0 as initializers.
func loadWithConstInputs(t *testing.T, dir string) (*graph.Graph, error) {
	m, err := onnxio.Load(filepath.Join(dir, "model.onnx"), onnxio.DefaultLimits())
	if err != nil {
		return nil, err
	}
	gp := m.Proto.GetGraph()
	inits := map[string]bool{}
	for _, in := range gp.GetInitializer() {
		inits[in.GetName()] = true
	}
	k := 0
	for _, vi := range gp.GetInput() {
		if inits[vi.GetName()] {
			continue
		}
		idx := k
		k++
		tt := vi.GetType().GetTensorType()
		if tt == nil {
			continue
		}
		isInt := onnxio.IsIntegerType(tt.GetElemType())
		scalar := tt.GetShape() != nil && len(tt.GetShape().GetDim()) == 0
		if !isInt && !scalar {
			continue
		}
		f, err := os.Open(filepath.Join(dir, "test_data_set_0", fmt.Sprintf("input_%d.pb", idx)))
		if err != nil {
			continue
		}
		v, err := onnxio.DecodeTensor(f, onnxio.DefaultLimits())
		f.Close()
		if err != nil {
			t.Fatalf("%s: input %d: %v", dir, idx, err)
		}
		v.Name = proto.String(vi.GetName())
		gp.Initializer = append(gp.Initializer, v)
	}
	g, err := graph.FromONNX(m.Proto, graph.ImportOptions{Dir: m.Dir, FixedShapes: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return g, nil
}

var _ onnxpb.ModelProto

// TestConformanceShapes imports every ONNX conformance node test whose ops are all in the
// registry and checks the inferred output shapes against the reference outputs.
func TestConformanceShapes(t *testing.T) {
	root := testenv.Require(t, filepath.Join(testenv.ConformanceDir, "node"), "apt libonnx-testdata")
	dirs, err := filepath.Glob(filepath.Join(root, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var passed, unsupportedOp int
	refused := map[string]string{}
	for _, dir := range dirs {
		model := filepath.Join(dir, "model.onnx")
		if _, err := os.Stat(model); err != nil {
			continue
		}
		g, err := loadWithConstInputs(t, dir)
		if err == nil {
			err = g.Canonicalize(graph.CanonicalOptions{})
		}
		if err != nil {
			var ue *graph.UnsupportedError
			if errors.As(err, &ue) {
				unsupportedOp++
				continue
			}
			refused[filepath.Base(dir)] = err.Error()
			continue
		}
		outs, _ := filepath.Glob(filepath.Join(dir, "test_data_set_0", "output_*.pb"))
		sort.Strings(outs)
		if len(outs) != len(g.Outputs) {
			t.Errorf("%s: %d reference outputs, graph has %d", filepath.Base(dir), len(outs), len(g.Outputs))
			continue
		}
		ok := true
		for i, o := range outs {
			f, err := os.Open(o)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := onnxio.DecodeTensor(f, onnxio.DefaultLimits())
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", o, err)
			}
			var want []int
			for _, d := range ref.GetDims() {
				want = append(want, int(d))
			}
			got := []int(g.Shapes[g.Outputs[i]])
			if c, isConst := g.Consts[g.Outputs[i]]; isConst {
				got = c.Shape
			}
			if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("%s: output %q inferred %v, reference %v", filepath.Base(dir), g.Outputs[i], got, want)
				ok = false
			}
		}
		if ok {
			passed++
		}
	}
	names := make([]string, 0, len(refused))
	for k := range refused {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t.Logf("refused %s: %s", k, refused[k])
	}
	t.Logf("conformance shapes: %d passed, %d refused with a reason, %d use ops outside the IR", passed, len(refused), unsupportedOp)
	if passed < 181 {
		t.Errorf("only %d conformance models passed shape inference", passed)
	}
	// Refusals must name a node and say why; they are cases qnas does not model (1-D/3-D
	// convolutions, integer inputs, training-mode BatchNorm, …).
	for k, msg := range refused {
		if !strings.Contains(msg, "node") && !strings.Contains(msg, "graph.input") {
			t.Errorf("%s: refusal does not name the node or input: %s", k, msg)
		}
	}
}
