package onnxio

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qnas/qnas/internal/specialfile"
)

// No write replaces a special file: each is refused with an error naming the path, and
// is still what it was afterwards; nothing else appears in the folder.
func TestWriteRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	files := specialfile.Make(t, dir)
	before := entries(t, dir)
	for _, f := range files {
		err := WriteFileAtomic(f.Path, func(w io.Writer) error { _, err := w.Write([]byte("x")); return err })
		wantError(t, err, f.Path, "not a regular file")
		wantError(t, CheckOutputPath(f.Path), f.Path)
	}
	specialfile.Check(t, files)
	if after := entries(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("folder changed: %v → %v", before, after)
	}
	// A regular file and a new path are fine; a missing folder is named.
	for _, p := range []string{filepath.Join(dir, "target.bin"), filepath.Join(dir, "new.bin")} {
		if err := CheckOutputPath(p); err != nil {
			t.Error(err)
		}
	}
	wantError(t, CheckOutputPath(filepath.Join(dir, "no", "x.bin")), "folder", "does not exist")
	wantError(t, CheckOutputPath(filepath.Join(dir, "target.bin", "x.bin")), "not a folder")
	if err := CheckWritableFolder(filepath.Join(dir, "new.bin")); err != nil {
		t.Error(err)
	}
}

// ReadFileLimited refuses a large file before reading it and an endless device after the
// limit.
func TestReadFileLimited(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.json")
	os.WriteFile(p, []byte(`{"a": 1}`), 0o644)
	if b, err := ReadFileLimited(p, 8); err != nil || string(b) != `{"a": 1}` {
		t.Errorf("%q %v", b, err)
	}
	wantError(t, func() error { _, err := ReadFileLimited(p, 7); return err }(), "a.json", "limit of 7")
	wantError(t, func() error { _, err := ReadFileLimited("/dev/zero", 1<<20); return err }(), "/dev/zero", "limit")
	wantError(t, func() error { _, err := ReadFileLimited(dir, 10); return err }(), "directory")
	wantError(t, func() error { _, err := ReadFileLimited(filepath.Join(dir, "none"), 10); return err }(), "none")
}

// WriteFilesAtomic writes all files or, when one cannot be written, none.
func TestWriteFilesAllOrNone(t *testing.T) {
	dir := t.TempDir()
	content := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.onnx")
	os.WriteFile(a, []byte("old"), 0o644)
	fail := func(io.Writer) error { return os.ErrInvalid }
	wantError(t, WriteFilesAtomic([]FileContent{{a, content("new")}, {b, fail}}), "b.onnx", "write failed")
	if got, _ := os.ReadFile(a); string(got) != "old" {
		t.Errorf("a.json holds %q after a failed set", got)
	}
	if names := entries(t, dir); strings.Join(names, ",") != "a.json" {
		t.Errorf("left %v", names)
	}
	if err := WriteFilesAtomic([]FileContent{{a, content("new")}, {b, content("model")}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(a); string(got) != "new" {
		t.Errorf("a.json holds %q", got)
	}
	if got, _ := os.ReadFile(b); string(got) != "model" {
		t.Errorf("b.onnx holds %q", got)
	}
}
