package graph_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/testenv"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// hostileONNXLimits are the file limits the hostile-input tests decode with: small enough
// that one case never reads more than a few MB, large enough for the fixtures.
var hostileONNXLimits = onnxio.Limits{
	MaxModelBytes: 1 << 24, MaxTensorElements: 1 << 22, MaxTotalTensorBytes: 1 << 26,
	MaxGraphDepth: 8, MaxNodes: 1 << 14,
}

// hostileGraphLimits keep constant folding of hostile inputs small so a fuzzing run spends
// its time on many inputs rather than on filling big tensors; activations keep the
// default bound (inference allocates nothing in proportion to it).
var hostileGraphLimits = graph.Limits{MaxConstFoldElems: 1 << 20, MaxConstFoldTotal: 1 << 22}

// allocatedBytes returns the bytes allocated by the process so far (cheap: no
// stop-the-world, unlike runtime.ReadMemStats).
func allocatedBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// allocBudget is what handling a hostile input of n bytes may allocate: a multiple of
// its size (int8 data widens to int64, and runHostile imports twice and clones) plus the
// folding budget of hostileGraphLimits with room to spare. More means something was
// allocated because the file claimed it.
func allocBudget(n int) uint64 { return 100*uint64(n) + 256<<20 }

// hostileOutcome is what happened to one hostile input.
type hostileOutcome struct {
	decoded  bool  // onnxio accepted the bytes
	imported bool  // graph.FromONNX accepted the model (either shape mode)
	canon    bool  // Canonicalize succeeded with FoldBN false or true
	err      error // the first error, if any
}

// runHostile feeds data through everything qnas does with a model it is given: decode,
// import (with the batch symbolic and with fixed shapes), Canonicalize with and without
// BatchNorm folding, Summarize, Dump and ToONNX. Errors must be one line; a panic
// propagates to the caller; other misbehavior is returned as bad. External data is
// looked up in dir.
func runHostile(data []byte, dir string) (out hostileOutcome, bad error) {
	note := func(err error) {
		if err == nil {
			return
		}
		if strings.ContainsAny(err.Error(), "\r\n") && bad == nil {
			bad = fmt.Errorf("error spans lines: %q", err.Error())
		}
		if out.err == nil {
			out.err = err
		}
	}
	m, err := onnxio.DecodeBytes(data, hostileONNXLimits)
	if err != nil {
		note(err)
		return out, bad
	}
	out.decoded = true
	for _, fixed := range []bool{false, true} {
		g, err := graph.FromONNX(m, graph.ImportOptions{Dir: dir, Limits: hostileONNXLimits, FixedShapes: fixed, GraphLimits: hostileGraphLimits})
		if err != nil {
			note(err)
			continue
		}
		out.imported = true
		for _, fold := range []bool{false, true} {
			h := g.Clone()
			if err := h.Canonicalize(graph.CanonicalOptions{FoldBN: fold}); err != nil {
				note(err)
				continue
			}
			out.canon = true
			graph.Summarize(h)
			if err := h.Dump(io.Discard); err != nil {
				return out, fmt.Errorf("Dump: %v", err)
			}
			if w, err := h.ToONNX(graph.WriteOptions{}); err == nil {
				if _, err := proto.Marshal(w); err != nil {
					return out, fmt.Errorf("ToONNX wrote an unencodable model: %v", err)
				}
			} else {
				note(err)
			}
		}
	}
	return out, bad
}

// hostileModelPaths lists every conformance model.onnx (sorted) and the fixtures under
// testdata/models. It skips the test when the conformance data is missing, unless
// QNAS_REQUIRE_TESTDATA=1.
func hostileModelPaths(t testing.TB) []string {
	root := testenv.Require(t, testenv.ConformanceDir, "apt libonnx-testdata")
	var paths []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "model.onnx" {
			paths = append(paths, p)
		}
		return nil
	})
	sort.Strings(paths)
	fixtures, _ := filepath.Glob(testenv.Path("testdata", "models", "*.onnx"))
	sort.Strings(fixtures)
	return append(paths, fixtures...)
}

// boundConformanceModel returns the conformance model in dir with its integer and scalar
// inputs bound to the values of test_data_set_0 as initializers (as testenv.LoadCase
// does), so shape-like inputs are constants and the model gets past import; nil if the
// folder cannot be read.
func boundConformanceModel(dir string) []byte {
	b, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return nil
	}
	m, err := onnxio.DecodeBytes(b, onnxio.DefaultLimits())
	if err != nil {
		return nil
	}
	gp := m.GetGraph()
	inits := map[string]bool{}
	for _, in := range gp.GetInitializer() {
		inits[in.GetName()] = true
	}
	k := 0
	for _, vi := range gp.GetInput() {
		if inits[vi.GetName()] {
			continue
		}
		file := filepath.Join(dir, "test_data_set_0", fmt.Sprintf("input_%d.pb", k))
		k++
		tt := vi.GetType().GetTensorType()
		if tt == nil {
			continue
		}
		scalar := tt.GetShape() != nil && len(tt.GetShape().GetDim()) == 0
		if !onnxio.IsIntegerType(tt.GetElemType()) && !scalar {
			continue
		}
		f, err := os.Open(file)
		if err != nil {
			return nil
		}
		v, err := onnxio.DecodeTensor(f, onnxio.DefaultLimits())
		f.Close()
		if err != nil {
			return nil
		}
		v.Name = proto.String(vi.GetName())
		gp.Initializer = append(gp.Initializer, v)
	}
	var buf bytes.Buffer
	if err := onnxio.Encode(&buf, m); err != nil {
		return nil
	}
	return buf.Bytes()
}

// handBuiltSeeds are small models that reach every op's shape rule and evaluator: a
// Shape→Gather→Concat→Reshape chain, ConstantOfShape, Slice, Split, Pad, Transpose, a
// Conv+BatchNorm pair for BatchNorm folding, pools, Gemm, MatMul and the rest.
func handBuiltSeeds(t testing.TB) [][]byte {
	r := rand.New(rand.NewPCG(3, 4))
	models := []*onnxpb.ModelProto{
		newModel(13).input("x", -1, 2, 6, 6).
			floats("w", []int64{4, 2, 3, 3}, randFloats(r, 72)).floats("b", []int64{4}, randFloats(r, 4)).
			floats("g", []int64{4}, randFloats(r, 4)).floats("be", []int64{4}, randFloats(r, 4)).
			floats("mu", []int64{4}, randFloats(r, 4)).floats("var", []int64{4}, []float32{1, 2, 3, 4}).
			floats("fcw", []int64{3, 16}, randFloats(r, 48)).
			node("Conv", "conv", []string{"x", "w", "b"}, []string{"a"}, intsAttr("pads", 1, 1, 1, 1), intsAttr("strides", 1, 1)).
			node("BatchNormalization", "bn", []string{"a", "g", "be", "mu", "var"}, []string{"a2"}, floatAttr("epsilon", 1e-5)).
			node("Relu", "relu", []string{"a2"}, []string{"c"}).
			node("MaxPool", "pool", []string{"c"}, []string{"d"}, intsAttr("kernel_shape", 2, 2), intsAttr("strides", 2, 2)).
			node("AveragePool", "avg", []string{"d"}, []string{"e"}, intsAttr("kernel_shape", 2, 2), intAttr("ceil_mode", 1)).
			node("Flatten", "flat", []string{"e"}, []string{"f"}).
			node("Gemm", "fc", []string{"f", "fcw"}, []string{"y"}, intAttr("transB", 1)).
			output("y").build(),
		newModel(13).input("x", -1, 4, 3, 3).
			ints("zero", 0).ints("axes0", 0).ints("minus1", -1).ints("shp", 2, 3).
			ints("st", 0, 1).ints("en", 3, 3).ints("ax", 1, 2).ints("sp", 1, 3).ints("pads", 0, 0, 1, 1, 0, 0, 1, 1).
			floats("mm", []int64{36, 5}, randFloats(r, 180)).
			node("Shape", "shape", []string{"x"}, []string{"s"}).
			node("Gather", "gather", []string{"s", "zero"}, []string{"n"}, intAttr("axis", 0)).
			node("Unsqueeze", "unsq", []string{"n", "axes0"}, []string{"n1"}).
			node("Concat", "cat", []string{"n1", "minus1"}, []string{"target"}, intAttr("axis", 0)).
			node("ConstantOfShape", "cos", []string{"shp"}, []string{"k"}).
			node("Transpose", "tr", []string{"k"}, []string{"kt"}, intsAttr("perm", 1, 0)).
			node("Slice", "slice", []string{"x", "st", "en", "ax"}, []string{"xs"}).
			node("Pad", "pad", []string{"xs", "pads"}, []string{"xp"}).
			node("Split", "split", []string{"xp", "sp"}, []string{"p1", "p2"}, intAttr("axis", 1)).
			node("Concat", "cat2", []string{"p1", "p2"}, []string{"xc"}, intAttr("axis", 1)).
			node("Reshape", "flat", []string{"xc", "target"}, []string{"f"}).
			node("MatMul", "mm", []string{"f", "mm"}, []string{"g"}).
			node("Add", "add", []string{"g", "kt"}, []string{"h"}).
			node("Softmax", "sm", []string{"h"}, []string{"y"}).
			output("y").build(),
		newModel(11).input("x", -1, 3, 8, 8).ints("sq", 2, 3).
			node("GlobalAveragePool", "gap", []string{"x"}, []string{"a"}).
			node("Squeeze", "sq", []string{"a"}, []string{"b"}, intsAttr("axes", 2, 3)).
			node("Clip", "clip", []string{"b"}, []string{"c"}).
			node("Cast", "cast", []string{"c"}, []string{"d"}, intAttr("to", 1)).
			node("Dropout", "drop", []string{"d"}, []string{"e"}).
			node("ReduceMean", "rm", []string{"x"}, []string{"m"}, intsAttr("axes", 2, 3), intAttr("keepdims", 0)).
			node("Mul", "mul", []string{"e", "m"}, []string{"y"}).
			output("y").build(),
	}
	var out [][]byte
	for _, m := range models {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzImport feeds arbitrary bytes through decode, import, Canonicalize (with and without
// BatchNorm folding) and Summarize; nothing may panic, hang or allocate what the file
// merely claims. Seeds: hand-built models over every op, some conformance models with
// their shape inputs bound, and the fixtures.
func FuzzImport(f *testing.F) {
	for _, s := range handBuiltSeeds(f) {
		f.Add(s)
	}
	for _, name := range []string{
		"node/test_conv_with_strides_padding", "node/test_batchnorm_example", "node/test_reshape_reduced_dims",
		"node/test_slice_neg_steps", "node/test_gather_2d_indices", "node/test_constantofshape_float_ones",
		"node/test_split_variable_parts_2d_opset18", "node/test_constant_pad", "node/test_transpose_all_permutations_2",
		"node/test_unsqueeze_two_axes", "node/test_flatten_negative_axis1", "node/test_gemm_all_attributes",
		"node/test_concat_3d_axis_negative_2", "pytorch-converted/test_Conv2d_groups",
	} {
		if b := boundConformanceModel(filepath.Join(testenv.ConformanceDir, name)); b != nil {
			f.Add(b)
		}
	}
	fixtures, _ := filepath.Glob(testenv.Path("testdata", "models", "*.onnx"))
	for _, p := range fixtures {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		start, alloc := time.Now(), allocatedBytes()
		if _, bad := runHostile(data, dir); bad != nil {
			t.Fatal(bad)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("one input took %v", d)
		}
		if a := allocatedBytes() - alloc; a > allocBudget(len(data)) {
			t.Fatalf("a %d-byte input allocated %d MiB", len(data), a>>20)
		}
	})
}

// TestHostileCorpus runs truncated and bit-flipped versions of every conformance model
// and fixture (seeded, so reproducible) through decode, import, Canonicalize and
// Summarize: each must end in an error or a graph, never a panic, and quickly.
func TestHostileCorpus(t *testing.T) {
	paths := hostileModelPaths(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(20, 26))
	var cases, errs, imported, canon int
	var slowest time.Duration
	var slowCase string
	start := time.Now()
	run := func(what string, data []byte) hostileOutcome {
		cases++
		t0, alloc := time.Now(), allocatedBytes()
		var out hostileOutcome
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: panic: %v\n%s", what, r, debug.Stack())
				}
			}()
			var bad error
			if out, bad = runHostile(data, dir); bad != nil {
				t.Errorf("%s: %v", what, bad)
			}
		}()
		if d := time.Since(t0); d > slowest {
			slowest, slowCase = d, what
		}
		if a := allocatedBytes() - alloc; a > allocBudget(len(data)) {
			t.Errorf("%s: a %d-byte input allocated %d MiB", what, len(data), a>>20)
		}
		if out.err != nil {
			errs++
		}
		if out.imported {
			imported++
		}
		if out.canon {
			canon++
		}
		return out
	}
	for _, p := range paths {
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p, testenv.ConformanceDir+"/")
		variants := [][]byte{orig}
		if b := boundConformanceModel(filepath.Dir(p)); b != nil && strings.HasPrefix(p, testenv.ConformanceDir) {
			variants = append(variants, b)
		}
		for vi, seed := range variants {
			tag := fmt.Sprintf("%s[v%d]", name, vi)
			out := run(tag, seed)
			if len(seed) == 0 {
				continue
			}
			// A model that imports gets many mutations (they reach shape inference and
			// folding); one refused at import gets a few (they exercise the importer).
			nCuts, nFlips := 3, 5
			if out.imported {
				nCuts, nFlips = 12, 60
			}
			// Truncations: at random points, plus one byte short.
			cuts := []int{len(seed) - 1}
			for range nCuts {
				cuts = append(cuts, rng.IntN(len(seed)))
			}
			for _, n := range cuts {
				run(fmt.Sprintf("%s cut at %d", tag, n), seed[:n])
			}
			// 1–4 random byte flips or overwrites, many times.
			for k := range nFlips {
				b := bytes.Clone(seed)
				var desc []string
				for range 1 + rng.IntN(4) {
					i := rng.IntN(len(b))
					if rng.IntN(2) == 0 {
						b[i] ^= 1 << rng.IntN(8)
					} else {
						b[i] = byte(rng.UintN(256))
					}
					desc = append(desc, fmt.Sprint(i))
				}
				run(fmt.Sprintf("%s flip #%d at %s", tag, k, strings.Join(desc, ",")), b)
			}
		}
	}
	elapsed := time.Since(start)
	t.Logf("hostile corpus: %d cases, %d errors, %d imported, %d canonicalized, from %d models in %v (slowest %v: %s)",
		cases, errs, imported, canon, len(paths), elapsed.Round(time.Millisecond), slowest.Round(time.Millisecond), slowCase)
	if cases < 10000 {
		t.Errorf("only %d hostile cases, want at least 10000", cases)
	}
	if slowest > 2*time.Second {
		t.Errorf("case %s took %v", slowCase, slowest)
	}
}
