package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/onnxio"
	"google.golang.org/protobuf/proto"
)

// Case is one ONNX conformance node test: its graph and the first test data set.
type Case struct {
	Name    string
	Graph   *graph.Graph
	Inputs  map[string]*graph.Tensor // the graph's remaining (float) inputs
	Outputs []*graph.Tensor          // reference outputs, in graph output order
}

// LoadCase imports the conformance test in dir with FixedShapes. Inputs that qnas needs as
// constants — integer tensors (shapes, axes, pads) and scalars (Clip bounds) — are bound to
// the values of test_data_set_0 as initializers.
func LoadCase(dir string) (*Case, error) {
	m, err := onnxio.Load(filepath.Join(dir, "model.onnx"), onnxio.DefaultLimits())
	if err != nil {
		return nil, err
	}
	gp := m.Proto.GetGraph()
	inits := map[string]bool{}
	for _, in := range gp.GetInitializer() {
		inits[in.GetName()] = true
	}
	data := filepath.Join(dir, "test_data_set_0")
	readPB := func(name string) (*graph.Tensor, error) {
		f, err := os.Open(filepath.Join(data, name))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		t, err := onnxio.DecodeTensor(f, onnxio.DefaultLimits())
		if err != nil {
			return nil, err
		}
		shape := make([]int, len(t.GetDims()))
		for i, d := range t.GetDims() {
			shape[i] = int(d)
		}
		if onnxio.IsIntegerType(t.GetDataType()) {
			v, err := onnxio.TensorInt64s(t, data, onnxio.DefaultLimits())
			return graph.NewInt(shape, v), err
		}
		v, err := onnxio.TensorFloat32s(t, data, onnxio.DefaultLimits())
		return graph.NewFloat(shape, v), err
	}
	c := &Case{Name: filepath.Base(dir), Inputs: map[string]*graph.Tensor{}}
	k := 0
	var runtime []string
	for _, vi := range gp.GetInput() {
		if inits[vi.GetName()] {
			continue
		}
		file := fmt.Sprintf("input_%d.pb", k)
		k++
		tt := vi.GetType().GetTensorType()
		if tt == nil {
			continue
		}
		isInt := onnxio.IsIntegerType(tt.GetElemType())
		scalar := tt.GetShape() != nil && len(tt.GetShape().GetDim()) == 0
		if !isInt && !scalar {
			runtime = append(runtime, vi.GetName(), file)
			continue
		}
		f, err := os.Open(filepath.Join(data, file))
		if err != nil {
			return nil, err
		}
		v, err := onnxio.DecodeTensor(f, onnxio.DefaultLimits())
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		v.Name = proto.String(vi.GetName())
		gp.Initializer = append(gp.Initializer, v)
	}
	c.Graph, err = graph.FromONNX(m.Proto, graph.ImportOptions{Dir: m.Dir, FixedShapes: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	for i := 0; i < len(runtime); i += 2 {
		t, err := readPB(runtime[i+1])
		if err != nil {
			return nil, err
		}
		c.Inputs[runtime[i]] = t
	}
	outs, _ := filepath.Glob(filepath.Join(data, "output_*.pb"))
	sort.Strings(outs)
	for _, o := range outs {
		t, err := readPB(filepath.Base(o))
		if err != nil {
			return nil, err
		}
		c.Outputs = append(c.Outputs, t)
	}
	return c, nil
}

// NodeCases lists the conformance node test folders.
func NodeCases(t interface {
	Helper()
	Fatalf(string, ...any)
	Skipf(string, ...any)
}) []string {
	t.Helper()
	root := filepath.Join(ConformanceDir, "node")
	if _, err := os.Stat(root); err != nil {
		if os.Getenv("QNAS_REQUIRE_TESTDATA") == "1" {
			t.Fatalf("%s is missing (apt libonnx-testdata); run scripts/deps.sh", root)
		}
		t.Skipf("%s is missing (apt libonnx-testdata); run scripts/deps.sh", root)
	}
	dirs, _ := filepath.Glob(filepath.Join(root, "*"))
	var out []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "model.onnx")); err == nil {
			out = append(out, d)
		}
	}
	return out
}
