package onnxio

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// floatBytes packs float32 values little endian.
func floatBytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// extTensor returns a FLOAT tensor of dims stored in location at offset.
func extTensor(name, location string, offset int, dims ...int64) *onnxpb.TensorProto {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return &onnxpb.TensorProto{
		Name:         proto.String(name),
		DataType:     proto.Int32(TypeFloat),
		Dims:         dims,
		DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
		ExternalData: kv("location", location, "offset", strconv.Itoa(offset), "length", strconv.FormatInt(4*n, 10)),
	}
}

// externalModel writes weights.bin and model.onnx into dir: initializer "w" (6 values
// at offset 16), a Constant "c" (2 values at offset 40) and, inside an If subgraph, a
// Constant "s" (1 value at offset 48).
func externalModel(t *testing.T, dir string) string {
	t.Helper()
	data := append([]byte("sixteen bytes!!!"), floatBytes(1, 2, 3, 4, 5, 6, -1, -2, 42)...)
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	m := newModel(extTensor("w", "weights.bin", 16, 2, 3))
	sub := &onnxpb.GraphProto{Node: []*onnxpb.NodeProto{constNode("s", extTensor("s", "weights.bin", 48))}}
	m.Graph.Node = append(m.Graph.Node, constNode("c", extTensor("c", "weights.bin", 40, 2)), ifNode(sub))
	p := filepath.Join(dir, "model.onnx")
	if err := Save(p, m); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExternalData(t *testing.T) {
	dir := t.TempDir()
	p := externalModel(t, dir)
	m, err := Load(p, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if !HasExternalData(m.Proto) {
		t.Fatal("HasExternalData = false")
	}
	w := m.Proto.Graph.Initializer[0]
	got, err := TensorFloat32s(w, m.Dir, DefaultLimits())
	if err != nil || !slices.Equal(got, []float32{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("external w = %v, %v", got, err)
	}
	raw, err := ReadExternalData(w, m.Dir, DefaultLimits())
	if err != nil || len(raw) != 24 {
		t.Fatalf("ReadExternalData: %d bytes, %v", len(raw), err)
	}
	// A model in another folder cannot be saved before its data is inlined.
	other := t.TempDir()
	wantError(t, m.Save(filepath.Join(other, "copy.onnx")), "external data", "inline it")
	// Saving next to the original is fine: the locations still resolve.
	if err := m.Save(filepath.Join(dir, "sibling.onnx")); err != nil {
		t.Fatalf("save next to the input: %v", err)
	}

	if err := InlineExternalData(m, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if HasExternalData(m.Proto) {
		t.Fatal("external tensors left after InlineExternalData")
	}
	for _, x := range []*onnxpb.TensorProto{w, m.Proto.Graph.Node[1].Attribute[0].T, m.Proto.Graph.Node[2].Attribute[0].G.Node[0].Attribute[0].T} {
		if x.DataLocation != nil || x.ExternalData != nil || len(x.RawData) == 0 {
			t.Fatalf("tensor %q not inlined: %v", x.GetName(), x)
		}
	}
	cp := filepath.Join(other, "copy.onnx")
	if err := m.Save(cp); err != nil {
		t.Fatal(err)
	}
	m2, err := Load(cp, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]float32{{1, 2, 3, 4, 5, 6}} {
		got, err := TensorFloat32s(m2.Proto.Graph.Initializer[i], m2.Dir, DefaultLimits())
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("inlined initializer %d = %v, %v", i, got, err)
		}
	}
	got, _ = TensorFloat32s(m2.Proto.Graph.Node[1].Attribute[0].T, m2.Dir, DefaultLimits())
	if !slices.Equal(got, []float32{-1, -2}) {
		t.Errorf("inlined Constant = %v", got)
	}
	got, _ = TensorFloat32s(m2.Proto.Graph.Node[2].Attribute[0].G.Node[0].Attribute[0].T, m2.Dir, DefaultLimits())
	if !slices.Equal(got, []float32{42}) {
		t.Errorf("inlined subgraph Constant = %v", got)
	}
}

func TestExternalDataRefused(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.bin")
	if err := os.WriteFile(secret, floatBytes(9, 9, 9, 9), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), floatBytes(1, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustLink := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Skipf("symlinks unavailable: %v", err)
		}
	}
	mustLink(secret, "escape.bin")           // symlink to a file outside
	mustLink(outside, "outdir")              // symlink to a folder outside
	mustLink("weights.bin", "alias.bin")     // symlink staying inside
	mustLink("../weights.bin", "sub/up.bin") // relative symlink staying inside

	for _, tc := range []struct {
		location string
		offset   int
		loadErr  string // error from Load (syntactic checks)
		readErr  string // error from TensorFloat32s; "" means it must work
	}{
		{location: "weights.bin"},
		{location: "./weights.bin"},
		{location: "sub/../weights.bin"},
		{location: "alias.bin"},
		{location: "sub/up.bin"},
		{location: "../weights.bin", loadErr: "leaves the model's folder"},
		{location: "sub/../../weights.bin", loadErr: "leaves the model's folder"},
		{location: secret, loadErr: "is absolute"},
		{location: "escape.bin", readErr: "outside the model's folder"},
		{location: "outdir/secret.bin", readErr: "outside the model's folder"},
		{location: "missing.bin", readErr: "no such file"},
		{location: "sub", readErr: "not a regular file"},
		{location: "weights.bin", offset: 4, readErr: "too short"},
		{location: "weights.bin", offset: 1 << 40, readErr: "too short"},
	} {
		m := newModel(extTensor("w", tc.location, tc.offset, 2))
		p := filepath.Join(dir, "model.onnx")
		if err := Save(p, m); err != nil {
			t.Fatal(err)
		}
		lm, err := Load(p, DefaultLimits())
		if tc.loadErr != "" {
			e := wantError(t, err, tc.loadErr)
			if e.Path != `graph.initializer["w"]` || e.File != p {
				t.Errorf("%s: error at %q in %q", tc.location, e.Path, e.File)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.location, err)
			continue
		}
		got, err := TensorFloat32s(lm.Proto.Graph.Initializer[0], lm.Dir, DefaultLimits())
		if tc.readErr == "" {
			if err != nil || !slices.Equal(got, []float32{1, 2}) {
				t.Errorf("%s: %v, %v", tc.location, got, err)
			}
			continue
		}
		wantError(t, err, tc.readErr)
		e := wantError(t, InlineExternalData(lm, DefaultLimits()), tc.readErr, `graph.initializer["w"]`)
		if e.File != p {
			t.Errorf("InlineExternalData error names %q", e.File)
		}
		if !HasExternalData(lm.Proto) {
			t.Errorf("%s: failed InlineExternalData changed the model", tc.location)
		}
	}
}

func TestExternalDataLimits(t *testing.T) {
	dir := t.TempDir()
	p := externalModel(t, dir)
	m, err := Load(p, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	// 6 + 2 + 1 floats = 36 bytes in all.
	wantError(t, InlineExternalData(m, Limits{MaxTotalTensorBytes: 35}), "exceeds the limit of 35 bytes")
	if !HasExternalData(m.Proto) {
		t.Fatal("failed InlineExternalData changed the model")
	}
	_, err = ReadExternalData(m.Proto.Graph.Initializer[0], m.Dir, Limits{MaxTotalTensorBytes: 20})
	wantError(t, err, "exceeds the limit of 20 bytes")
	_, err = Load(p, Limits{MaxTotalTensorBytes: 35})
	wantError(t, err, "exceeds the limit of 35 bytes")
	if err := InlineExternalData(m, Limits{MaxTotalTensorBytes: 36}); err != nil {
		t.Fatal(err)
	}
	_, err = ReadExternalData(m.Proto.Graph.Initializer[0], m.Dir, DefaultLimits())
	wantError(t, err, "not stored externally")
}
