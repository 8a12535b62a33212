package graph_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// importCanonical imports m and canonicalizes it (FoldBN as given), summarizing on success.
// A panic is returned as an error that says so.
func importCanonical(m *onnxpb.ModelProto, opts graph.ImportOptions, foldBN bool) (g *graph.Graph, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	g, err = graph.FromONNX(m, opts)
	if err != nil {
		return nil, err
	}
	if err := g.Canonicalize(graph.CanonicalOptions{FoldBN: foldBN}); err != nil {
		return nil, err
	}
	graph.Summarize(g)
	return g, nil
}

// writeFuzzSeed stores m, serialized, as a seed of FuzzImport under
// testdata/fuzz/FuzzImport when QNAS_WRITE_FUZZ_SEEDS=1 (go test runs the seeds as
// regression cases; regenerate them after changing a case).
func writeFuzzSeed(t *testing.T, m *onnxpb.ModelProto) {
	if os.Getenv("QNAS_WRITE_FUZZ_SEEDS") != "1" {
		return
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	dir := filepath.Join("testdata", "fuzz", "FuzzImport")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tensorAttr(name string, t *onnxpb.TensorProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: t}
}

func stringAttr(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

// Models that crashed or misbehaved in an earlier version (found by reading the rules
// and by FuzzImport). Each must import to an error (or, where noted, a graph) without a
// panic. want is a substring of the error, "" for success.
func TestHostileModelsRegressions(t *testing.T) {
	// empty holds no elements but claims a dimension of 2^40 before its zero one.
	empty := func(b *modelBuilder, name string) *modelBuilder {
		b.g.Initializer = append(b.g.Initializer, onnxio.NewFloat32Tensor(name, []int64{1 << 40, 0}, nil))
		return b
	}
	bn := func(b *modelBuilder, c int) *modelBuilder {
		v := make([]float32, c)
		return b.floats("g", []int64{int64(c)}, v).floats("be", []int64{int64(c)}, v).
			floats("mu", []int64{int64(c)}, v).floats("var", []int64{int64(c)}, v)
	}
	cases := []struct {
		name   string
		m      *onnxpb.ModelProto
		foldBN bool
		want   string
		shape  string // when set, the shape of output y
	}{
		{
			// FoldBatchNorm read an int64 bias as float and indexed past its (empty) F.
			name: "conv with int64 bias, BN folded",
			m: bn(newModel(13).input("x", -1, 1, 4, 4).floats("w", []int64{2, 1, 1, 1}, []float32{1, 2}).ints("b", 1, 2), 2).
				node("Conv", "c", []string{"x", "w", "b"}, []string{"a"}).
				node("BatchNormalization", "bn", []string{"a", "g", "be", "mu", "var"}, []string{"y"}).output("y").build(),
			foldBN: true, want: `bias "b" is int64`,
		},
		{
			// FoldBatchNorm divided by the number of output channels, 0 here.
			name: "conv with zero output channels, BN folded",
			m: bn(newModel(13).input("x", -1, 1, 4, 4).floats("w", []int64{0, 1, 1, 1}, nil), 0).
				node("Conv", "c", []string{"x", "w"}, []string{"a"}).
				node("BatchNormalization", "bn", []string{"a", "g", "be", "mu", "var"}, []string{"y"}).output("y").build(),
			foldBN: true,
		},
		{
			// (e − s + step − 1) overflowed for step near MaxInt64 and gave a dimension of −1,
			// which reads as the batch.
			name: "slice with step MaxInt64",
			m: newModel(13).input("x", -1, 4).ints("s", 0).ints("e", 4).ints("a", 1).ints("st", math.MaxInt64).
				node("Slice", "sl", []string{"x", "s", "e", "a", "st"}, []string{"y"}).output("y").build(),
			shape: "Nx1",
		},
		{
			name: "slice with step MinInt64",
			m: newModel(13).input("x", -1, 4).ints("s", -1).ints("e", math.MinInt64).ints("a", 1).ints("st", math.MinInt64).
				node("Slice", "sl", []string{"x", "s", "e", "a", "st"}, []string{"y"}).output("y").build(),
			shape: "Nx1",
		},
		{
			// A node writing the empty name "" was kept alive by omitted optional inputs and
			// its cost rule then read a missing shape.
			name: "conv writing the empty name",
			m: newModel(13).input("x", -1, 1, 4, 4).floats("w", []int64{1, 1, 1, 1}, []float32{1}).
				node("Conv", "c0", []string{"x", "w"}, []string{""}).
				node("Conv", "c1", []string{"x", "w", ""}, []string{"y"}).output("y").build(),
		},
		{
			// Dropout writing "" renamed every omitted input to its own input.
			name: "dropout writing the empty name",
			m: newModel(13).input("x", -1, 1, 4, 4).floats("w", []int64{1, 1, 1, 1}, []float32{1}).
				node("Dropout", "d", []string{"x"}, []string{""}).
				node("Conv", "c", []string{"x", "w", ""}, []string{"y"}).output("y").build(),
		},
		{
			name: "ConstantOfShape value of the wrong kind",
			m: newModel(13).input("x", -1, 2).ints("shp", 2).
				node("ConstantOfShape", "k", []string{"shp"}, []string{"k"}, floatAttr("value", 3)).
				node("Add", "add", []string{"x", "k"}, []string{"y"}).output("y").build(),
			want: "one-element tensor",
		},
		{
			name: "ConstantOfShape of 2^62 elements",
			m: newModel(13).input("x", -1, 2).ints("shp", 1<<31-1, 1<<31-1).
				node("ConstantOfShape", "k", []string{"shp"}, []string{"k"}).
				node("Add", "add", []string{"x", "k"}, []string{"y"}).output("y").build(),
			want: "elements per sample",
		},
		{
			name: "reshape to a product overflowing int64",
			m: newModel(13).input("x", -1, 2).ints("t", 1<<31-1, 1<<31-1, 1<<31-1, 0).
				node("Reshape", "r", []string{"x", "t"}, []string{"y"}, intAttr("allowzero", 1)).output("y").build(),
			want: `node "r"`,
		},
		{
			name: "gather with a negative axis beyond the rank",
			m: newModel(13).input("x", -1, 2).ints("i", 0).
				node("Gather", "g", []string{"x", "i"}, []string{"y"}, intAttr("axis", math.MinInt64)).output("y").build(),
			want: `node "g"`,
		},
		{
			// Folding looped over the 2^40 outer positions of an empty tensor.
			name: "gather from an empty tensor with a huge dimension",
			m: empty(newModel(13).input("x", -1, 2), "e").ints("i").
				node("Gather", "g", []string{"e", "i"}, []string{"z"}, intAttr("axis", 1)).
				node("Relu", "r", []string{"x"}, []string{"y"}).output("y").output("z").build(),
		},
		{
			name: "concat of empty tensors with a huge dimension",
			m: empty(empty(newModel(13).input("x", -1, 2), "e"), "f").
				node("Concat", "c", []string{"e", "f"}, []string{"z"}, intAttr("axis", 1)).
				node("Relu", "r", []string{"x"}, []string{"y"}).output("y").output("z").build(),
		},
		{
			name: "transpose and slice of an empty tensor with a huge dimension",
			m: empty(newModel(13).input("x", -1, 2), "e").ints("s", 0).ints("en", 1).
				node("Transpose", "t", []string{"e"}, []string{"et"}).
				node("Slice", "sl", []string{"et", "s", "en"}, []string{"z"}).
				node("Relu", "r", []string{"x"}, []string{"y"}).output("y").output("z").build(),
		},
		{
			name: "auto_pad with control characters",
			m: newModel(13).input("x", -1, 1, 4, 4).floats("w", []int64{1, 1, 1, 1}, []float32{1}).
				node("Conv", "c", []string{"x", "w"}, []string{"y"}, stringAttr("auto_pad", "SAME\nUPPER")).output("y").build(),
			want: "auto_pad",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			writeFuzzSeed(t, c.m)
			start := time.Now()
			g, err := importCanonical(c.m, graph.ImportOptions{}, c.foldBN)
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v", d)
			}
			switch {
			case err != nil && strings.Contains(err.Error(), "panic"):
				t.Fatal(err)
			case c.want == "" && err != nil && strings.Contains(err.Error(), "index out of range"):
				t.Fatal(err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if c.shape != "" && (err != nil || g.Shapes["y"].String() != c.shape) {
				t.Errorf("y: shape %v (error %v), want %s", g.Shapes["y"], err, c.shape)
			}
		})
	}
}

// Sizes that a file claims but that qnas must not allocate are refused quickly: huge
// dimensions, negative ones, products overflowing int64, deep subgraph nesting. Each
// case must finish within a second and allocate less than 16 MiB in total.
func TestHugeClaimsRefusedQuickly(t *testing.T) {
	dimInput := func(dims ...int64) *onnxpb.ModelProto {
		return newModel(13).input("x", dims...).node("Relu", "r", []string{"x"}, []string{"y"}).output("y").build()
	}
	nested := func(depth int) *onnxpb.ModelProto {
		m := newModel(13).input("x", -1, 2).node("Relu", "r", []string{"x"}, []string{"y"}).output("y").build()
		g := &onnxpb.GraphProto{Name: proto.String("leaf")}
		for range depth {
			sub := &onnxpb.GraphProto{Name: proto.String("sub")}
			sub.Node = []*onnxpb.NodeProto{{OpType: proto.String("If"), Input: []string{"c"}, Output: []string{"o"},
				Attribute: []*onnxpb.AttributeProto{{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: g}}}}
			g = sub
		}
		m.Graph.Node = append(m.Graph.Node, &onnxpb.NodeProto{OpType: proto.String("If"), Input: []string{"x"}, Output: []string{"z"},
			Attribute: []*onnxpb.AttributeProto{{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: g}}})
		return m
	}
	// Claims 2^40 floats in raw_data and holds 8 bytes.
	huge := &onnxpb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(onnxio.TypeFloat), Dims: []int64{1 << 20, 1 << 20}, RawData: make([]byte, 8)}
	claim := newModel(13).input("x", -1, 1<<20).node("MatMul", "mm", []string{"x", "w"}, []string{"y"}).output("y").build()
	claim.Graph.Initializer = append(claim.Graph.Initializer, huge)
	cases := []struct {
		name string
		m    *onnxpb.ModelProto
		want string
	}{
		{"input dims of 2^40", dimInput(-1, 1<<40, 1), "graph.input"},
		{"input dims of 2^24 cubed", dimInput(-1, 1<<24, 1<<24, 1<<24), "elements per sample"},
		{"input with a negative dim", dimInput(-1, 3, -7), "graph.input"},
		{"initializer claiming 2^40 elements", claim, "initializer"},
		{"conv output of 2^40 elements", newModel(13).input("x", -1, 1, 1<<15, 1<<15).
			floats("w", []int64{1 << 10, 1, 1, 1}, make([]float32, 1<<10)).
			node("Conv", "c", []string{"x", "w"}, []string{"y"}).output("y").build(), `node "c"`},
		{"ConstantOfShape of 2^40", newModel(13).input("x", -1, 2).ints("shp", 1<<20, 1<<20).
			node("ConstantOfShape", "k", []string{"shp"}, []string{"k"}).
			node("Add", "add", []string{"x", "k"}, []string{"y"}).output("y").build(), `node "k"`},
		{"ConstantOfShape negative", newModel(13).input("x", -1, 2).ints("shp", -4).
			node("ConstantOfShape", "k", []string{"shp"}, []string{"k"}).
			node("Add", "add", []string{"x", "k"}, []string{"y"}).output("y").build(), `node "k"`},
		{"ConstantOfShape product overflowing int64", newModel(13).input("x", -1, 2).ints("shp", 1<<30, 1<<30, 1<<30, 1<<30).
			node("ConstantOfShape", "k", []string{"shp"}, []string{"k"}).
			node("Add", "add", []string{"x", "k"}, []string{"y"}).output("y").build(), `node "k"`},
		{"reshape target overflowing int64", newModel(13).input("x", -1, 2).ints("t", -1, 1<<31-1, 1<<31-1, 1<<31-1).
			node("Reshape", "r", []string{"x", "t"}, []string{"y"}).output("y").build(), `node "r"`},
		{"pad to 2^40", newModel(13).input("x", -1, 1, 1<<20, 1<<10).ints("pads", 0, 0, 0, 0, 0, 0, 0, 1<<20).
			node("Pad", "p", []string{"x", "pads"}, []string{"y"}).node("Relu", "r", []string{"y"}, []string{"z"}).output("z").build(), `node "p"`},
		{"subgraphs nested 100 deep", nested(100), "nest"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			writeFuzzSeed(t, c.m)
			b, err := proto.Marshal(c.m)
			if err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			var g *graph.Graph
			m, err := onnxio.DecodeBytes(b, onnxio.DefaultLimits())
			if err == nil {
				g, err = importCanonical(m, graph.ImportOptions{}, false)
			}
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatalf("accepted: %v", g.Shapes)
			}
			if strings.Contains(err.Error(), "panic") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want one containing %q", err, c.want)
			}
			if elapsed > time.Second {
				t.Errorf("took %v", elapsed)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
				t.Errorf("allocated %d MiB", alloc>>20)
			}
			t.Logf("%v in %v", err, elapsed)
		})
	}
}
