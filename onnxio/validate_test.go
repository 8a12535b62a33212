package onnxio

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// claimTensor is a FLOAT tensor claiming dims but holding only four bytes.
func claimTensor(name string, dims ...int64) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{
		Name:     proto.String(name),
		DataType: proto.Int32(TypeFloat),
		Dims:     dims,
		RawData:  []byte{0, 0, 128, 63},
	}
}

func TestHugeClaimRefusedWithoutAllocating(t *testing.T) {
	const big = 1 << 20
	data := encodeModel(t, newModel(claimTensor("huge", big, big, big)))
	for _, lim := range []Limits{DefaultLimits(), {MaxTensorElements: 1 << 62, MaxTotalTensorBytes: 1 << 62}} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		_, err := DecodeBytes(data, lim)
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		wantError(t, err, `graph.initializer["huge"]`)
		if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
			t.Errorf("refusing the model allocated %d bytes", got)
		}
		if elapsed > time.Second {
			t.Errorf("refusing the model took %v", elapsed)
		}
	}
	// TensorFloat32s on such a tensor refuses before allocating too.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := TensorFloat32s(claimTensor("huge", big, big, big), "", Limits{MaxTensorElements: 1 << 62})
	runtime.ReadMemStats(&after)
	wantError(t, err, "raw_data has 4 bytes")
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("TensorFloat32s allocated %d bytes", got)
	}
}

func TestBadDims(t *testing.T) {
	for _, tc := range []struct {
		dims []int64
		want string
	}{
		{[]int64{2, -3}, "dims[1] = -3 is negative"},
		{[]int64{1 << 40, 1 << 40}, "overflows int64"},
		{[]int64{1 << 31, 1 << 31, 1 << 31, 1 << 31, 1 << 31}, "overflows int64"},
		{[]int64{1 << 16, 1 << 16}, "more than the limit of 2147483648"},
		{[]int64{-1, 0}, "dims[0] = -1 is negative"},
	} {
		_, err := DecodeBytes(encodeModel(t, newModel(claimTensor("w", tc.dims...))), DefaultLimits())
		e := wantError(t, err, tc.want)
		if e.Path != `graph.initializer["w"]` {
			t.Errorf("dims %v: path %q", tc.dims, e.Path)
		}
	}
	// A zero dimension makes any product of the others fine.
	zero := &onnxpb.TensorProto{Name: proto.String("z"), DataType: proto.Int32(TypeFloat), Dims: []int64{0, 1 << 62, 1 << 62}}
	if _, err := DecodeBytes(encodeModel(t, newModel(zero)), DefaultLimits()); err != nil {
		t.Errorf("empty tensor refused: %v", err)
	}
}

func TestErrorRendering(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(p, encodeModel(t, newModel(claimTensor("w", 2, -3))), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, DefaultLimits())
	e := wantError(t, err)
	if e.File != p {
		t.Errorf("File = %q, want %q", e.File, p)
	}
	if want := p + `: graph.initializer["w"]: dims[1] = -3 is negative`; err.Error() != want {
		t.Errorf("got %q, want %q", err.Error(), want)
	}
	e2 := &Error{File: "model.onnx", Msg: "two\nlines"}
	if got := e2.Error(); got != "model.onnx: two lines" {
		t.Errorf("got %q", got)
	}
	if got := (&Error{Msg: "m"}).Error(); got != "m" {
		t.Errorf("got %q", got)
	}
	inner := errors.New("inner")
	if !errors.Is(&Error{Msg: "x", Err: inner}, inner) {
		t.Error("Unwrap does not expose Err")
	}
}

func TestErrorPathInSubgraph(t *testing.T) {
	sub := &onnxpb.GraphProto{Node: []*onnxpb.NodeProto{
		{OpType: proto.String("Relu")},
		constNode("c", claimTensor("bad", -1)),
	}}
	m := newModel()
	m.Graph.Node = append(m.Graph.Node, ifNode(sub))
	_, err := DecodeBytes(encodeModel(t, m), DefaultLimits())
	e := wantError(t, err, "dims[0] = -1 is negative")
	if want := `graph.node[1].attribute["then_branch"].g.node[1].attribute["value"].t`; e.Path != want {
		t.Errorf("path %q, want %q", e.Path, want)
	}
	// Unnamed initializers are located by index; functions by name.
	m = newModel(claimTensor("", -2))
	_, err = DecodeBytes(encodeModel(t, m), DefaultLimits())
	if e := wantError(t, err); e.Path != "graph.initializer[0]" {
		t.Errorf("path %q", e.Path)
	}
	m = newModel()
	m.Functions = []*onnxpb.FunctionProto{{Name: proto.String("f"), Node: []*onnxpb.NodeProto{constNode("c", claimTensor("", 3))}}}
	_, err = DecodeBytes(encodeModel(t, m), DefaultLimits())
	if e := wantError(t, err, "raw_data has 4 bytes, want 12"); e.Path != `functions["f"].node[0].attribute["value"].t` {
		t.Errorf("path %q", e.Path)
	}
}

// nested returns a model whose graph nests If subgraphs depth deep (the main graph
// counting as 1).
func nested(depth int) *onnxpb.ModelProto {
	g := &onnxpb.GraphProto{Node: []*onnxpb.NodeProto{{OpType: proto.String("Relu")}}}
	for d := 1; d < depth; d++ {
		g = &onnxpb.GraphProto{Node: []*onnxpb.NodeProto{ifNode(g)}}
	}
	m := newModel()
	m.Graph = g
	return m
}

func TestGraphDepthLimit(t *testing.T) {
	data := encodeModel(t, nested(40))
	wantError(t, func() error { _, err := DecodeBytes(data, DefaultLimits()); return err }(),
		"graphs are nested more than 32 deep")
	data = encodeModel(t, nested(3))
	if _, err := DecodeBytes(data, Limits{MaxGraphDepth: 3}); err != nil {
		t.Errorf("depth 3 refused at limit 3: %v", err)
	}
	_, err := DecodeBytes(data, Limits{MaxGraphDepth: 2})
	e := wantError(t, err, "nested more than 2 deep")
	if e.Path != `graph.node[0].attribute["then_branch"].g.node[0].attribute["then_branch"].g` {
		t.Errorf("path %q", e.Path)
	}
	// Training graphs and function bodies count too.
	m := newModel()
	m.TrainingInfo = []*onnxpb.TrainingInfoProto{{Algorithm: nested(3).Graph}}
	_, err = DecodeBytes(encodeModel(t, m), Limits{MaxGraphDepth: 2})
	wantError(t, err, "training_info[0].algorithm.node[0]")
	m = newModel()
	m.Functions = []*onnxpb.FunctionProto{{Name: proto.String("f"), Node: nested(3).Graph.Node}}
	_, err = DecodeBytes(encodeModel(t, m), Limits{MaxGraphDepth: 2})
	wantError(t, err, `functions["f"].node[0]`)
}

func TestNodeLimit(t *testing.T) {
	m := newModel()
	for range 9 {
		m.Graph.Node = append(m.Graph.Node, &onnxpb.NodeProto{OpType: proto.String("Relu")})
	}
	data := encodeModel(t, m)
	if _, err := DecodeBytes(data, Limits{MaxNodes: 10}); err != nil {
		t.Errorf("10 nodes refused at limit 10: %v", err)
	}
	_, err := DecodeBytes(data, Limits{MaxNodes: 9})
	wantError(t, err, "more than 9 nodes")
	// Nodes of subgraphs count.
	_, err = DecodeBytes(encodeModel(t, nested(5)), Limits{MaxNodes: 4})
	wantError(t, err, "more than 4 nodes")
}

func TestTotalTensorBytesLimit(t *testing.T) {
	a := NewFloat32Tensor("a", []int64{1000}, make([]float32, 1000))
	b := NewFloat32Tensor("b", []int64{1000}, make([]float32, 1000))
	data := encodeModel(t, newModel(a, b))
	if _, err := DecodeBytes(data, Limits{MaxTotalTensorBytes: 8000}); err != nil {
		t.Errorf("8000 bytes refused at limit 8000: %v", err)
	}
	_, err := DecodeBytes(data, Limits{MaxTotalTensorBytes: 7999})
	wantError(t, err, `graph.initializer["b"]`, "exceeds the limit of 7999 bytes")
}

// countingReader yields zeros forever and counts what it hands out.
type countingReader struct{ n int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	clear(p)
	r.n += int64(len(p))
	return len(p), nil
}

func TestModelBytesLimit(t *testing.T) {
	r := &countingReader{}
	_, err := Decode(r, Limits{MaxModelBytes: 1000})
	wantError(t, err, "larger than the limit of 1000 bytes")
	if r.n > 1001 {
		t.Errorf("read %d bytes of an endless input with a limit of 1000", r.n)
	}
	r = &countingReader{}
	_, err = DecodeTensor(r, Limits{MaxModelBytes: 1000})
	wantError(t, err, "larger than the limit")
	if r.n > 1001 {
		t.Errorf("read %d bytes", r.n)
	}
	// A file over the limit is refused by its size.
	p := filepath.Join(t.TempDir(), "big.onnx")
	if err := os.WriteFile(p, make([]byte, 2000), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(p, Limits{MaxModelBytes: 1000})
	wantError(t, err, p, "more than the limit of 1000")
	// Exactly at the limit is fine.
	data := encodeModel(t, newModel())
	if _, err := Decode(strings.NewReader(string(data)), Limits{MaxModelBytes: int64(len(data))}); err != nil {
		t.Errorf("model at the limit refused: %v", err)
	}
	_, err = Decode(strings.NewReader(string(data)), Limits{MaxModelBytes: int64(len(data)) - 1})
	wantError(t, err, "larger than the limit")
}

func TestReadErrorIsError(t *testing.T) {
	_, err := Decode(io.MultiReader(strings.NewReader("x"), errReader{}), DefaultLimits())
	wantError(t, err, "read failed", "disk on fire")
	_, err = Load(filepath.Join(t.TempDir(), "missing.onnx"), DefaultLimits())
	wantError(t, err, "missing.onnx", "no such file")
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestNoGraph(t *testing.T) {
	_, err := DecodeBytes(nil, DefaultLimits())
	wantError(t, err, "model has no graph")
	m := newModel()
	m.Graph = nil
	_, err = DecodeBytes(encodeModel(t, m), DefaultLimits())
	wantError(t, err, "model has no graph")
}

func TestTensorChecks(t *testing.T) {
	f32 := proto.Int32(TypeFloat)
	ok := []*onnxpb.TensorProto{
		{DataType: f32, Dims: []int64{2}, FloatData: []float32{1, 2}},
		{DataType: f32, Dims: []int64{0, 4}},                 // empty
		{DataType: f32, Dims: []int64{0}, RawData: []byte{}}, // empty, raw present
		{DataType: f32, FloatData: []float32{7}},             // scalar
		{DataType: proto.Int32(TypeString), Dims: []int64{2}, StringData: [][]byte{[]byte("a"), nil}},
		{DataType: proto.Int32(TypeFloat16), Dims: []int64{3}, Int32Data: []int32{0x3c00, 0, 0x7bff}},
		{DataType: proto.Int32(TypeInt4), Dims: []int64{3}, Int32Data: []int32{0x21, 0x03}},
		{DataType: proto.Int32(TypeInt4), Dims: []int64{3}, RawData: []byte{0x21, 0x03}},
		{DataType: proto.Int32(TypeUint2), Dims: []int64{5}, RawData: []byte{0xff, 0x01}},
		{DataType: proto.Int32(TypeComplex64), Dims: []int64{2}, FloatData: []float32{1, 2, 3, 4}},
		{DataType: proto.Int32(TypeUint32), Dims: []int64{1}, Uint64Data: []uint64{5}},
		{DataType: f32, Dims: []int64{4}, Segment: &onnxpb.TensorProto_Segment{Begin: proto.Int64(0), End: proto.Int64(2)}, FloatData: []float32{1, 2}},
	}
	for i, x := range ok {
		if err := ValidateTensor(x, DefaultLimits()); err != nil {
			t.Errorf("ok[%d]: %v", i, err)
		}
	}
	bad := []struct {
		t    *onnxpb.TensorProto
		want string
	}{
		{&onnxpb.TensorProto{Dims: []int64{1}, FloatData: []float32{1}}, "data_type is not set"},
		{&onnxpb.TensorProto{DataType: proto.Int32(99), Dims: []int64{1}}, "data_type 99 is not a known"},
		{&onnxpb.TensorProto{DataType: f32, Dims: []int64{3}, FloatData: []float32{1, 2}}, "float_data has 2 values, want 3"},
		{&onnxpb.TensorProto{DataType: f32, Dims: []int64{2}, RawData: make([]byte, 7)}, "raw_data has 7 bytes, want 8"},
		{&onnxpb.TensorProto{DataType: f32, Dims: []int64{2}}, "FLOAT tensor of 2 elements has no data"},
		{&onnxpb.TensorProto{DataType: f32, Dims: []int64{1}, FloatData: []float32{1}, RawData: make([]byte, 4)}, "both raw_data and float_data"},
		{&onnxpb.TensorProto{DataType: f32, Dims: []int64{1}, FloatData: []float32{1}, Int64Data: []int64{1}}, "both float_data and int64_data"},
		{&onnxpb.TensorProto{DataType: f32, Dims: []int64{1}, Int64Data: []int64{1}}, "FLOAT tensor stores its values in int64_data, want float_data"},
		{&onnxpb.TensorProto{DataType: proto.Int32(TypeString), Dims: []int64{1}, RawData: []byte("a")}, "STRING tensor has raw_data"},
		{&onnxpb.TensorProto{DataType: proto.Int32(TypeInt4), Dims: []int64{3}, RawData: []byte{1, 2, 3}}, "raw_data has 3 bytes, want 2"},
		{&onnxpb.TensorProto{DataType: proto.Int32(TypeComplex64), Dims: []int64{2}, FloatData: []float32{1, 2}}, "float_data has 2 values, want 4"},
		{&onnxpb.TensorProto{DataType: f32, Dims: []int64{4}, Segment: &onnxpb.TensorProto_Segment{Begin: proto.Int64(3), End: proto.Int64(1)}}, "segment [3, 1)"},
		{&onnxpb.TensorProto{DataType: f32, Dims: []int64{1}, DataLocation: onnxpb.TensorProto_DataLocation(7).Enum()}, "data_location 7"},
		{&onnxpb.TensorProto{DataType: f32, Dims: []int64{1}, FloatData: []float32{1}, ExternalData: kv("location", "x")}, "external_data is set but data_location is not EXTERNAL"},
		{ext(kv("location", "x", "offset", "-1")), `offset "-1" is not a non-negative integer`},
		{ext(kv("location", "x", "length", "4k")), `length "4k" is not a non-negative integer`},
		{ext(kv("location", "x", "length", "5")), "external data length 5 does not match the 8 bytes"},
		{ext(kv("location", "x", "colour", "red")), `unknown external data key "colour"`},
		{ext(kv("location", "x", "location", "y")), `key "location" is repeated`},
		{ext(kv("offset", "0")), "external data has no location"},
		{ext(kv("location", "")), "external data has no location"},
		{ext(kv("location", "../x")), `location "../x" is absolute or leaves`},
		{ext(kv("location", "a/../../x")), "leaves the model's folder"},
		{ext(kv("location", "/etc/passwd")), "is absolute"},
		{ext(kv("location", "\\\\server\\x")), "is absolute"},
		{ext(kv("location", "C:/x")), "is absolute"},
		{ext(kv("location", "x\x00y")), "is absolute"},
	}
	for _, tc := range bad {
		err := ValidateTensor(tc.t, DefaultLimits())
		wantError(t, err, tc.want)
	}
	// A tensor with external data and inline data at once.
	x := ext(kv("location", "x"))
	x.RawData = make([]byte, 8)
	wantError(t, ValidateTensor(x, DefaultLimits()), "stored inline as well")
}

// kv builds external_data entries from alternating keys and values.
func kv(s ...string) []*onnxpb.StringStringEntryProto {
	var out []*onnxpb.StringStringEntryProto
	for i := 0; i+1 < len(s); i += 2 {
		out = append(out, &onnxpb.StringStringEntryProto{Key: proto.String(s[i]), Value: proto.String(s[i+1])})
	}
	return out
}

// ext returns an external FLOAT tensor of two elements with the given keys.
func ext(keys []*onnxpb.StringStringEntryProto) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{
		Name:         proto.String("e"),
		DataType:     proto.Int32(TypeFloat),
		Dims:         []int64{2},
		DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
		ExternalData: keys,
	}
}

func TestSparseChecks(t *testing.T) {
	good := &onnxpb.SparseTensorProto{
		Dims:    []int64{3, 4},
		Values:  NewFloat32Tensor("v", []int64{2}, []float32{1, 2}),
		Indices: NewInt64Tensor("i", []int64{2, 2}, []int64{0, 1, 2, 3}),
	}
	m := newModel()
	m.Graph.SparseInitializer = []*onnxpb.SparseTensorProto{good}
	if _, err := DecodeBytes(encodeModel(t, m), DefaultLimits()); err != nil {
		t.Errorf("valid sparse tensor refused: %v", err)
	}
	bad := proto.Clone(good).(*onnxpb.SparseTensorProto)
	bad.Indices = NewInt64Tensor("i", []int64{2, 3}, make([]int64, 6))
	m.Graph.SparseInitializer = []*onnxpb.SparseTensorProto{bad}
	_, err := DecodeBytes(encodeModel(t, m), DefaultLimits())
	if e := wantError(t, err, "indices have dims [2 3], want [2] or [2 2]"); e.Path != `graph.sparse_initializer["v"]` {
		t.Errorf("path %q", e.Path)
	}
	bad = proto.Clone(good).(*onnxpb.SparseTensorProto)
	bad.Values.Dims = []int64{-2}
	m.Graph.SparseInitializer = []*onnxpb.SparseTensorProto{bad}
	_, err = DecodeBytes(encodeModel(t, m), DefaultLimits())
	wantError(t, err, "dims[0] = -2 is negative")
	bad = proto.Clone(good).(*onnxpb.SparseTensorProto)
	bad.Values.RawData = bad.Values.RawData[:4]
	m.Graph.SparseInitializer = []*onnxpb.SparseTensorProto{bad}
	_, err = DecodeBytes(encodeModel(t, m), DefaultLimits())
	wantError(t, err, `graph.sparse_initializer["v"].values: raw_data has 4 bytes, want 8`)
}
