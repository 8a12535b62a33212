//go:build linux

package onnxio

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A process killed while replacing a file leaves a hidden ".NAME.tmpPID-N" beside it (a link
// cannot replace a file, so the new content needs a name of its own for an instant). The
// next write of the same file removes such names of processes that no longer run, and
// leaves those of running processes alone.
func TestStaleTempNamesAreRemoved(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.onnx")
	write := func(s string) {
		t.Helper()
		if err := WriteFileAtomic(out, func(w io.Writer) error { _, err := io.WriteString(w, s); return err }); err != nil {
			t.Fatal(err)
		}
	}
	write("first")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, fmt.Sprintf(".out.onnx.tmp%d-0", dead.Process.Pid))
	live := filepath.Join(dir, fmt.Sprintf(".out.onnx.tmp%d-0", os.Getppid()))
	other := filepath.Join(dir, fmt.Sprintf(".other.onnx.tmp%d-0", dead.Process.Pid))
	for _, p := range []string{stale, live, other} {
		if err := os.WriteFile(p, []byte("left"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("second")
	if b, _ := os.ReadFile(out); string(b) != "second" {
		t.Fatalf("out.onnx holds %q", b)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the hidden name of a dead process was kept: %v", err)
	}
	for _, p := range []string{live, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("%d files in the folder, want out.onnx and the two foreign names", len(entries))
	}
}
