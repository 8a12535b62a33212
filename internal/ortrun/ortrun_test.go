package ortrun

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/qnas/qnas/internal/testenv"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
)

var resnet8 = testenv.Path("testdata", "models", "resnet8.onnx")

// readCaseTensor decodes a conformance input_*.pb or output_*.pb file.
func readCaseTensor(t *testing.T, file string) (string, Tensor) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lim := onnxio.DefaultLimits()
	tp, err := onnxio.DecodeTensor(f, lim)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	data, err := onnxio.TensorFloat32s(tp, filepath.Dir(file), lim)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return tp.GetName(), Tensor{Shape: slices.Clone(tp.GetDims()), Data: data}
}

// caseFiles returns the numbered files prefix_0.pb, prefix_1.pb, … in dir.
func caseFiles(dir, prefix string) []string {
	var files []string
	for i := 0; ; i++ {
		f := filepath.Join(dir, prefix+"_"+strconv.Itoa(i)+".pb")
		if _, err := os.Stat(f); err != nil {
			return files
		}
		files = append(files, f)
	}
}

func TestConformance(t *testing.T) {
	RequireORT(t)
	root := testenv.Require(t, filepath.Join(testenv.ConformanceDir, "node"), "apt libonnx-testdata")
	cases := []string{
		"test_conv_with_strides_padding",
		"test_relu",
		"test_maxpool_2d_pads",
		"test_batchnorm_example",
		"test_gemm_default_single_elem_vector_bias",
	}
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(root, name)
			modelPath := filepath.Join(dir, "model.onnx")
			model, err := os.ReadFile(modelPath)
			if err != nil {
				t.Fatal(err)
			}
			ins, outs, err := IONames(model)
			if err != nil {
				t.Fatal(err)
			}
			data := filepath.Join(dir, "test_data_set_0")
			inputs := map[string]Tensor{}
			for i, f := range caseFiles(data, "input") {
				n, x := readCaseTensor(t, f)
				if n == "" {
					n = ins[i]
				}
				inputs[n] = x
			}
			want := map[string]Tensor{}
			for i, f := range caseFiles(data, "output") {
				_, y := readCaseTensor(t, f)
				want[outs[i]] = y
			}
			if len(inputs) != len(ins) || len(want) != len(outs) {
				t.Fatalf("test data has %d inputs, %d outputs; model %v → %v", len(inputs), len(want), ins, outs)
			}
			for _, level := range []OptLevel{OptDisable, OptBasic, OptExtended, OptLayout, OptAll} {
				got, err := Run(modelPath, inputs, nil, Options{GraphOptimization: level})
				if err != nil {
					t.Fatalf("%v: %v", level, err)
				}
				compare(t, level.String(), got, want, 1e-5)
			}
			got, err := RunBytes(model, inputs, outs, Options{Threads: 2})
			if err != nil {
				t.Fatalf("RunBytes: %v", err)
			}
			compare(t, "bytes, 2 threads", got, want, 1e-5)
		})
	}
}

// compare checks that got holds exactly the tensors of want, equal within tol relative to
// each tensor's scale (RelDiff).
func compare(t *testing.T, what string, got, want map[string]Tensor, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d outputs, want %d", what, len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Fatalf("%s: output %q missing", what, name)
		}
		if !slices.Equal(g.Shape, w.Shape) || len(g.Data) != len(w.Data) {
			t.Fatalf("%s: %q has shape %v (%d values), want %v (%d)", what, name, g.Shape, len(g.Data), w.Shape, len(w.Data))
		}
		if d := RelDiff(g.Data, w.Data); !(d <= tol) {
			t.Fatalf("%s: %q differs by %.3g relative to its scale, more than %g", what, name, d, tol)
		}
	}
}

func randomBatch(n int, seed uint64) Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	x := Tensor{Shape: []int64{int64(n), 1, 28, 28}, Data: make([]float32, n*28*28)}
	for i := range x.Data {
		x.Data[i] = float32(r.NormFloat64())
	}
	return x
}

func TestResNet8(t *testing.T) {
	RequireORT(t)
	x := randomBatch(4, 1)
	in := map[string]Tensor{"input": x}
	out, err := Run(resnet8, in, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	y, ok := out["logits"]
	if !ok || len(out) != 1 {
		t.Fatalf("outputs %v, want just logits", out)
	}
	if !slices.Equal(y.Shape, []int64{4, 10}) || len(y.Data) != 40 {
		t.Fatalf("logits shape %v (%d values), want [4 10]", y.Shape, len(y.Data))
	}
	for i, v := range y.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("logits[%d] = %v", i, v)
		}
	}
	if slices.Equal(y.Data[:10], y.Data[10:20]) {
		t.Errorf("different images gave identical logits %v", y.Data[:10])
	}

	// Same numbers at every level, thread count and way of opening (bitwise at the
	// default, close elsewhere: fusions and threading may reorder sums).
	model, err := os.ReadFile(resnet8)
	if err != nil {
		t.Fatal(err)
	}
	again, err := RunBytes(model, in, []string{"logits"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again["logits"].Data, y.Data) {
		t.Errorf("second run differs: %v vs %v", again["logits"].Data, y.Data)
	}
	for _, o := range []Options{{GraphOptimization: OptAll}, {Threads: 2}, {GraphOptimization: OptAll, Threads: 2}} {
		got, err := Run(resnet8, in, nil, o)
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		compare(t, fmt.Sprintf("%+v", o), got, out, 1e-5)
	}
	if v := Version(); v != LibVersion {
		t.Errorf("Version() = %q, want %q", v, LibVersion)
	}
}

// TestSession reuses one session: concurrently, and for a batch of another size.
func TestSession(t *testing.T) {
	RequireORT(t)
	s, err := NewSession(resnet8, nil, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !slices.Equal(s.InputNames(), []string{"input"}) || !slices.Equal(s.OutputNames(), []string{"logits"}) {
		t.Fatalf("names %v → %v", s.InputNames(), s.OutputNames())
	}
	want := make([][]float32, 4)
	for i := range want {
		out, err := s.Run(map[string]Tensor{"input": randomBatch(i+1, uint64(i))})
		if err != nil {
			t.Fatal(err)
		}
		want[i] = out["logits"].Data
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range 4 {
		wg.Go(func() {
			out, err := s.Run(map[string]Tensor{"input": randomBatch(i+1, uint64(i))})
			if err == nil && !slices.Equal(out["logits"].Data, want[i]) {
				err = fmt.Errorf("concurrent run %d differs", i)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(map[string]Tensor{"input": randomBatch(1, 0)}); err == nil {
		t.Fatal("Run after Close succeeded")
	}
}

func TestInitConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = Init() })
	}
	wg.Wait()
	for _, err := range errs[1:] {
		if (err == nil) != (errs[0] == nil) {
			t.Fatalf("Init results differ: %v", errs)
		}
	}
	RequireORT(t)
}

// singleNode builds a model running one node from inputs x (float [2,3]) to y.
func singleNode(op string, yType onnxpb.TensorProto_DataType) []byte {
	vi := func(name string, dt onnxpb.TensorProto_DataType) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
			Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt))}}}}
	}
	m := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name:   proto.String("g"),
			Node:   []*onnxpb.NodeProto{{OpType: proto.String(op), Input: []string{"x"}, Output: []string{"y"}}},
			Input:  []*onnxpb.ValueInfoProto{vi("x", onnxpb.TensorProto_FLOAT)},
			Output: []*onnxpb.ValueInfoProto{vi("y", yType)},
		},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func TestErrors(t *testing.T) {
	RequireORT(t)
	x := Tensor{Shape: []int64{2, 3}, Data: []float32{-1, 2, -3, 4, -5, 6}}
	relu := singleNode("Relu", onnxpb.TensorProto_FLOAT)
	out, err := RunBytes(relu, map[string]Tensor{"x": x}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if y := out["y"]; !slices.Equal(y.Data, []float32{0, 2, 0, 4, 0, 6}) || !slices.Equal(y.Shape, x.Shape) {
		t.Fatalf("Relu gave %+v", y)
	}

	garbage := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 64)
	model, err := os.ReadFile(resnet8)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.onnx")
	if err := os.WriteFile(bad, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	in := map[string]Tensor{"input": randomBatch(1, 0)}
	for _, c := range []struct {
		name string
		run  func() (map[string]Tensor, error)
		want string
	}{
		// Names given: the bytes reach ONNX Runtime, which must refuse them.
		{"garbage bytes", func() (map[string]Tensor, error) {
			return RunBytes(garbage, in, []string{"logits"}, Options{})
		}, "ortrun: model"},
		{"garbage file", func() (map[string]Tensor, error) { return Run(bad, in, []string{"logits"}, Options{}) }, bad},
		{"truncated model", func() (map[string]Tensor, error) {
			return RunBytes(model[:len(model)/2], in, []string{"logits"}, Options{})
		}, "ortrun: model"},
		// Names discovered: the wire-format scan refuses first.
		{"garbage, names discovered", func() (map[string]Tensor, error) { return RunBytes(garbage, in, nil, Options{}) }, "not an ONNX model"},
		{"empty model", func() (map[string]Tensor, error) { return RunBytes(nil, in, nil, Options{}) }, "empty model"},
		{"missing file", func() (map[string]Tensor, error) {
			return Run(filepath.Join(t.TempDir(), "none.onnx"), in, nil, Options{})
		}, "no such file"},
		{"unknown output", func() (map[string]Tensor, error) { return Run(resnet8, in, []string{"nope"}, Options{}) }, "nope"},
		{"unknown input", func() (map[string]Tensor, error) {
			return Run(resnet8, map[string]Tensor{"nope": randomBatch(1, 0)}, nil, Options{})
		}, "nope"},
		{"no inputs", func() (map[string]Tensor, error) { return Run(resnet8, nil, nil, Options{}) }, "got 0 inputs"},
		{"short data", func() (map[string]Tensor, error) {
			return Run(resnet8, map[string]Tensor{"input": {Shape: []int64{1, 1, 28, 28}, Data: make([]float32, 783)}}, nil, Options{})
		}, "needs 784 values, got 783"},
		{"wrong shape", func() (map[string]Tensor, error) {
			return Run(resnet8, map[string]Tensor{"input": {Shape: []int64{1, 1, 784}, Data: make([]float32, 784)}}, nil, Options{})
		}, "ortrun: "},
		{"scalar input", func() (map[string]Tensor, error) {
			return Run(resnet8, map[string]Tensor{"input": {Data: []float32{1}}}, nil, Options{})
		}, "rank-0"},
		{"bad level", func() (map[string]Tensor, error) { return Run(resnet8, in, nil, Options{GraphOptimization: 9}) }, "optimization level 9"},
		{"int64 output", func() (map[string]Tensor, error) {
			return RunBytes(singleNode("Shape", onnxpb.TensorProto_INT64), map[string]Tensor{"x": x}, nil, Options{})
		}, `output "y" is ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64; only float32`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := c.run()
			if err == nil {
				t.Fatalf("succeeded: %v", out)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
			t.Log(err)
		})
	}
}

func TestIONames(t *testing.T) {
	// An IR-3-style graph lists its initializer among the inputs; ONNX Runtime does not
	// count it as a session input.
	m := &onnxpb.ModelProto{Graph: &onnxpb.GraphProto{
		Initializer: []*onnxpb.TensorProto{onnxio.NewFloat32Tensor("w", []int64{1}, []float32{2})},
		Input:       []*onnxpb.ValueInfoProto{{Name: proto.String("x")}, {Name: proto.String("w")}},
		Output:      []*onnxpb.ValueInfoProto{{Name: proto.String("y")}, {Name: proto.String("z")}},
	}}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ins, outs, err := IONames(b)
	if err != nil || !slices.Equal(ins, []string{"x"}) || !slices.Equal(outs, []string{"y", "z"}) {
		t.Fatalf("IONames = %v, %v, %v", ins, outs, err)
	}
	for _, bad := range [][]byte{nil, {0xff}, b[:len(b)-1], []byte("hello, world")} {
		if _, _, err := IONames(bad); err == nil {
			t.Errorf("IONames(%q) succeeded", bad)
		}
	}
}

func TestLibraryPath(t *testing.T) {
	t.Setenv("QNAS_ORT_LIB", "")
	t.Setenv("QNAS_CACHE", "")
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", dir)
	_, err := LibraryPath()
	want := filepath.Join(dir, "qnas", "onnxruntime-node@1.30.0", "node_modules", "onnxruntime-node", "bin", "napi-v6", "linux", "x64", "libonnxruntime.so.1")
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "scripts/deps.sh") {
		t.Fatalf("LibraryPath error %v, want one naming %s and scripts/deps.sh", err, want)
	}
	if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(want, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := LibraryPath(); p != want || err != nil {
		t.Fatalf("LibraryPath() = %q, %v; want %q", p, err, want)
	}
	t.Setenv("QNAS_CACHE", filepath.Join(dir, "other"))
	if _, err := LibraryPath(); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "other", "onnxruntime-node@")) {
		t.Fatalf("QNAS_CACHE ignored: %v", err)
	}
	t.Setenv("QNAS_ORT_LIB", want)
	if p, err := LibraryPath(); p != want || err != nil {
		t.Fatalf("with QNAS_ORT_LIB: %q, %v", p, err)
	}
	t.Setenv("QNAS_ORT_LIB", filepath.Join(dir, "missing.so"))
	if _, err := LibraryPath(); err == nil || !strings.Contains(err.Error(), "QNAS_ORT_LIB") {
		t.Fatalf("missing QNAS_ORT_LIB file: %v", err)
	}
}

// rssKiB returns the process's resident set size.
func rssKiB(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// TestNoLeak opens, runs and closes many sessions; resident memory must stay flat.
func TestNoLeak(t *testing.T) {
	RequireORT(t)
	if testing.Short() {
		t.Skip("short")
	}
	in := map[string]Tensor{"input": randomBatch(8, 3)}
	run := func(n int) {
		for range n {
			if _, err := Run(resnet8, in, nil, Options{Threads: 2}); err != nil {
				t.Fatal(err)
			}
		}
		runtime.GC()
	}
	run(10) // warm up allocator pools
	before := rssKiB(t)
	start := time.Now()
	const n = 100
	run(n)
	after := rssKiB(t)
	t.Logf("%d sessions in %v; RSS %d → %d KiB", n, time.Since(start), before, after)
	if after-before > 20<<10 {
		t.Errorf("RSS grew by %d KiB over %d sessions", after-before, n)
	}
}
