package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/qnas/qnas/onnxio"
)

// runFiles lists the files a run reads and writes, so that the output policy is checked
// before any work (docs/robustness.md, "Outputs"): every output is a regular file or a new
// path in an existing, writable folder (no directory, device, FIFO, socket or symbolic
// link), and no two of the files name the same one, so no output replaces an input,
// another output, a sidecar, a checkpoint or the report.
type runFiles struct {
	reads, writes []namedFile
}

// namedFile is a path and what it is to the run, as messages name it ("-o", "--report").
type namedFile struct{ what, path string }

// read adds an input; an empty path is skipped.
func (f *runFiles) read(what, path string) {
	if path != "" {
		f.reads = append(f.reads, namedFile{what, path})
	}
}

// write adds an output; an empty path is skipped.
func (f *runFiles) write(what, path string) {
	if path != "" {
		f.writes = append(f.writes, namedFile{what, path})
	}
}

// check applies the policy; the error (a usage error) names the file and its role.
func (f *runFiles) check() error {
	for i, w := range f.writes {
		if err := onnxio.CheckOutputPath(w.path); err != nil {
			return usageError{fmt.Errorf("%s: %w", w.what, err)}
		}
		for _, r := range f.reads {
			if onnxio.SameFile(w.path, r.path) {
				return usageError{fmt.Errorf("%s: refusing to overwrite %s %s (%s is the same file)", w.path, r.what, r.path, w.what)}
			}
		}
		for _, o := range f.writes[:i] {
			if onnxio.SameFile(w.path, o.path) {
				return usageError{fmt.Errorf("%s: %s and %s name the same file; each output needs its own", w.path, o.what, w.what)}
			}
		}
	}
	for _, w := range f.writes {
		if err := onnxio.CheckWritableFolder(w.path); err != nil {
			return usageError{fmt.Errorf("%s: %w", w.what, err)}
		}
	}
	return nil
}

// noteStaleCheckpoint tells, on stderr, that a run starting afresh will replace the
// checkpoint an earlier run left at path.
func noteStaleCheckpoint(stderr io.Writer, path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
		fmt.Fprintf(stderr, "qnas: note: %s is left from an earlier run; this run starts afresh and replaces it (to continue that run instead, add --resume %s)\n", path, path)
	}
}

// hashBytes returns a short SHA-256 of b.
func hashBytes(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])[:16]
}

// fileHash returns a short SHA-256 of a file's content, which checkpoints record of the
// model they were made from.
func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16], nil
}
