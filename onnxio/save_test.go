package onnxio

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// entries lists the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileAtomicFailure(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.json")
	boom := errors.New("boom")
	err := WriteFileAtomic(p, func(w io.Writer) error {
		w.Write(bytes.Repeat([]byte("x"), 3<<20)) // more than the buffer: reaches the file
		return boom
	})
	e := wantError(t, err, "boom")
	if !errors.Is(err, boom) || e.File != p {
		t.Errorf("error %v does not wrap the write error or name the file", err)
	}
	if names := entries(t, dir); len(names) != 0 {
		t.Errorf("failed write left %v", names)
	}

	// A failing write over an existing file leaves the old content.
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = WriteFileAtomic(p, func(w io.Writer) error { io.WriteString(w, "new"); return boom })
	wantError(t, err, "boom")
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("failed write changed the file to %q", b)
	}
	if names := entries(t, dir); !slices.Equal(names, []string{"out.json"}) {
		t.Errorf("failed write left %v", names)
	}

	// A panic in write removes the temporary file too.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic was swallowed")
			}
		}()
		WriteFileAtomic(p, func(w io.Writer) error { panic("oops") })
	}()
	if names := entries(t, dir); !slices.Equal(names, []string{"out.json"}) {
		t.Errorf("panicking write left %v", names)
	}

	// Writing into a missing folder or over a folder fails cleanly.
	wantError(t, WriteFileAtomic(filepath.Join(dir, "no", "such.json"), func(io.Writer) error { return nil }), "folder", "does not exist")
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantError(t, WriteFileAtomic(filepath.Join(dir, "d"), func(io.Writer) error { return nil }), "is a directory")
	// Saving a nil model is an error and leaves nothing.
	wantError(t, Save(filepath.Join(dir, "nil.onnx"), nil), "nil")
	if names := entries(t, dir); !slices.Equal(names, []string{"d", "out.json"}) {
		t.Errorf("left %v", names)
	}
}

func TestWriteFileAtomicSuccess(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "r.json")
	if err := WriteFileAtomic(p, func(w io.Writer) error { _, err := io.WriteString(w, "{}\n"); return err }); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "{}\n" || fi.Mode().Perm() != 0o644 {
		t.Errorf("content %q, mode %v", b, fi.Mode())
	}
	// Replacing keeps the old file's permissions.
	os.Chmod(p, 0o600)
	if err := WriteFileAtomic(p, func(w io.Writer) error { _, err := io.WriteString(w, "2"); return err }); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Stat(p)
	if b, _ := os.ReadFile(p); string(b) != "2" || fi.Mode().Perm() != 0o600 {
		t.Errorf("content %q, mode %v", b, fi.Mode())
	}
	if names := entries(t, dir); !slices.Equal(names, []string{"r.json"}) {
		t.Errorf("left %v", names)
	}
	// A relative path in the working folder works.
	t.Chdir(dir)
	if err := WriteFileAtomic("rel.txt", func(w io.Writer) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.onnx")
	m := newModel(NewFloat32Tensor("w", []int64{2}, []float32{1, 2}))
	if err := Save(p, m); err != nil {
		t.Fatal(err)
	}
	lm, err := Load(p, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if lm.Path != p || lm.Dir != dir {
		t.Errorf("Path %q Dir %q", lm.Path, lm.Dir)
	}
	b, _ := os.ReadFile(p)
	if !bytes.Equal(b, encodeModel(t, lm.Proto)) {
		t.Error("saved bytes differ from the encoding")
	}
	// Decode from a reader gives the same model.
	dm, err := Decode(bytes.NewReader(b), DefaultLimits())
	if err != nil || !bytes.Equal(encodeModel(t, dm), b) {
		t.Errorf("Decode: %v", err)
	}
	// EncodeTensor / DecodeTensor round trip.
	var tb bytes.Buffer
	if err := EncodeTensor(&tb, m.Graph.Initializer[0]); err != nil {
		t.Fatal(err)
	}
	x, err := DecodeTensor(&tb, DefaultLimits())
	if err != nil || x.GetName() != "w" {
		t.Fatalf("DecodeTensor: %v %v", x, err)
	}
	wantError(t, Encode(io.Discard, nil), "nil")
	var nilModel *onnxpb.ModelProto
	wantError(t, Encode(io.Discard, nilModel), "nil")
}

func TestUnknownFieldsKept(t *testing.T) {
	data := encodeModel(t, newModel(NewFloat32Tensor("w", []int64{1}, []float32{1})))
	// Fields 99 (varint) and 98 (bytes) are not in the schema.
	data = protowire.AppendTag(data, 99, protowire.VarintType)
	data = protowire.AppendVarint(data, 7)
	data = protowire.AppendTag(data, 98, protowire.BytesType)
	data = protowire.AppendBytes(data, []byte("future"))
	m, err := DecodeBytes(data, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.ProtoReflect().GetUnknown()) == 0 {
		t.Fatal("unknown fields dropped")
	}
	if !bytes.Equal(encodeModel(t, m), data) {
		t.Error("unknown fields not written back unchanged")
	}
}

func TestSaveRefusesInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.onnx")
	if err := Save(in, newModel()); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(in)
	m, err := Load(in, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	m.Proto.ProducerName = nil // a change that would show

	sym := filepath.Join(dir, "sym.onnx")
	hard := filepath.Join(dir, "hard.onnx")
	if err := os.Symlink(in, sym); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
	if err := os.Link(in, hard); err != nil {
		t.Skipf("hard links unavailable: %v", err)
	}
	t.Chdir(dir)
	for _, out := range []string{in, sym, hard, "in.onnx", "./sub/../in.onnx"} {
		err := SaveChecked(out, in, m.Proto)
		wantError(t, err, "refusing to overwrite the input model", in, out)
		wantError(t, m.Save(out), "refusing to overwrite")
	}
	if b, _ := os.ReadFile(in); !bytes.Equal(b, orig) {
		t.Error("input model changed")
	}
	if names := entries(t, dir); !slices.Equal(names, []string{"hard.onnx", "in.onnx", "sym.onnx"}) {
		t.Errorf("left %v", names)
	}
	// Another file, and an unset input path, are fine.
	if err := SaveChecked(filepath.Join(dir, "out.onnx"), in, m.Proto); err != nil {
		t.Error(err)
	}
	if err := SaveChecked(filepath.Join(dir, "out.onnx"), "", m.Proto); err != nil {
		t.Error(err)
	}
	if err := m.Save(filepath.Join(dir, "out2.onnx")); err != nil {
		t.Error(err)
	}
}
