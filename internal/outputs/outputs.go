// Package outputs applies qnas's output policy (docs/robustness.md, "Outputs") to the
// files a run reads and writes, before any work: every output is a regular file or a new
// path in an existing, writable folder (no directory, device, FIFO, socket or symbolic
// link), and no two of the files name the same one, so no output replaces an input,
// another output, a sidecar, a checkpoint or the report.
package outputs

import (
	"fmt"

	"github.com/qnas/qnas/internal/field"
	"github.com/qnas/qnas/onnxio"
)

// Files lists a run's inputs and outputs, each with its role: the setting that names it
// ("Output.Path", or a command's flag) or what it is ("the encodings sidecar").
type Files struct {
	reads, writes []file
}

type file struct{ role, path string }

// Read adds an input; an empty path is skipped.
func (f *Files) Read(role, path string) {
	if path != "" {
		f.reads = append(f.reads, file{role, path})
	}
}

// Write adds an output; an empty path is skipped.
func (f *Files) Write(role, path string) {
	if path != "" {
		f.writes = append(f.writes, file{role, path})
	}
}

// Check applies the policy. The error is a *field.Error naming the role of the output at
// fault, and the file.
func (f *Files) Check() error {
	for i, w := range f.writes {
		if err := onnxio.CheckOutputPath(w.path); err != nil {
			return field.Errorf(w.role, ": %v", err)
		}
		for _, r := range f.reads {
			if onnxio.SameFile(w.path, r.path) {
				return field.Errorf(w.role, ": %s: refusing to overwrite %s %s (the same file)", w.path, r.role, r.path)
			}
		}
		for _, o := range f.writes[:i] {
			if onnxio.SameFile(w.path, o.path) {
				return field.Errorf(w.role, ": %s: %s names the same file; each output needs its own", w.path, o.role)
			}
		}
	}
	for _, w := range f.writes {
		if err := onnxio.CheckWritableFolder(w.path); err != nil {
			return field.Errorf(w.role, ": %v", err)
		}
	}
	return nil
}

// String lists the files, for messages and tests.
func (f *Files) String() string { return fmt.Sprint(f.reads, f.writes) }
