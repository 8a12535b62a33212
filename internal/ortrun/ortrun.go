// Package ortrun runs ONNX models in ONNX Runtime, in-process, so tests can compare
// qnas's own engine against it. The runtime is the CPU build shipped by the npm package
// onnxruntime-node@1.30.0 (installed by scripts/deps.sh) and is loaded with dlopen, so
// running needs cgo; without cgo the package compiles but Init reports an error.
//
// Only float32 tensors of rank ≥ 1 cross the boundary. Run opens a session per call;
// Session keeps one open for repeated runs.
package ortrun

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Tensor is a dense float32 tensor in row-major order; len(Data) must equal the product
// of Shape.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// OptLevel is ONNX Runtime's graph optimization level.
type OptLevel int

// Graph optimization levels; the zero value disables optimizations.
const (
	OptDisable  OptLevel = iota // ORT_DISABLE_ALL: run the graph as written
	OptBasic                    // ORT_ENABLE_BASIC: constant folding, redundant node removal
	OptExtended                 // ORT_ENABLE_EXTENDED: adds fusions such as QDQ → QLinearConv
	OptLayout                   // ORT_ENABLE_LAYOUT: adds layout transformations
	OptAll                      // ORT_ENABLE_ALL: everything
)

func (l OptLevel) String() string {
	switch l {
	case OptDisable:
		return "disable"
	case OptBasic:
		return "basic"
	case OptExtended:
		return "extended"
	case OptLayout:
		return "layout"
	case OptAll:
		return "all"
	}
	return fmt.Sprintf("OptLevel(%d)", int(l))
}

// Options configures a session. The zero value (no graph optimizations, one thread) is
// meant for numerical comparisons: the graph runs as written, deterministically.
type Options struct {
	// GraphOptimization is the graph optimization level.
	GraphOptimization OptLevel
	// Threads is the number of intra-op threads; 0 or less means 1.
	Threads int
	// OptimizedModelPath, when set, is where ONNX Runtime saves the graph it runs after its
	// optimizations (to see, e.g., which QDQ groups it fused).
	OptimizedModelPath string
}

// errNoCgo is what every entry point returns in a build without cgo.
var errNoCgo = errors.New("ortrun: ONNX Runtime needs cgo (this build has CGO_ENABLED=0)")

// LibVersion is the ONNX Runtime release scripts/deps.sh installs.
const LibVersion = "1.30.0"

// LibraryPath returns the ONNX Runtime shared library to load: $QNAS_ORT_LIB if set,
// else the file scripts/deps.sh installs under
// ${QNAS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qnas}. It is an error if the file is
// missing.
func LibraryPath() (string, error) {
	if p := os.Getenv("QNAS_ORT_LIB"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("ortrun: QNAS_ORT_LIB=%s: %w", p, err)
		}
		return p, nil
	}
	cache := os.Getenv("QNAS_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home := os.Getenv("HOME")
			if home == "" {
				return "", errors.New("ortrun: cannot locate ONNX Runtime: HOME, XDG_CACHE_HOME, QNAS_CACHE and QNAS_ORT_LIB are all unset")
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "qnas")
	}
	p := filepath.Join(cache, "onnxruntime-node@"+LibVersion, "node_modules", "onnxruntime-node",
		"bin", "napi-v6", "linux", "x64", "libonnxruntime.so.1")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("ortrun: ONNX Runtime %s not found at %s; run scripts/deps.sh test (or set QNAS_ORT_LIB)", LibVersion, p)
	}
	return p, nil
}

// check reports whether t is a well-formed tensor ONNX Runtime can take.
func (t Tensor) check(name string) error {
	if len(t.Shape) == 0 {
		return fmt.Errorf("ortrun: input %q: rank-0 tensors are not supported", name)
	}
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("ortrun: input %q: negative dimension in shape %v", name, t.Shape)
		}
		if d != 0 && n > (1<<62)/d {
			return fmt.Errorf("ortrun: input %q: shape %v is too large", name, t.Shape)
		}
		n *= d
	}
	if int64(len(t.Data)) != n {
		return fmt.Errorf("ortrun: input %q: shape %v needs %d values, got %d", name, t.Shape, n, len(t.Data))
	}
	return nil
}
