// Package blas chooses the float32 BLAS used by qnas, once, for the whole
// process.
//
// The default build (cgo enabled) routes gonum's blas32 Sgemm and Sgemv to
// OpenBLAS, single-threaded unless OPENBLAS_NUM_THREADS is set (see
// SetThreads); every other routine is gonum's pure-Go code. Building with the
// tag purego, or with CGO_ENABLED=0, selects gonum's pure-Go BLAS throughout.
// The choice is registered with blas32.Use when this package is initialized,
// so importing it (even as `import _ ".../internal/blas"`) is enough; Init
// re-registers it in case someone else called blas32.Use since.
package blas

import (
	"gonum.org/v1/gonum/blas/blas32"
)

func init() { Init() }

// Init registers this build's implementation with blas32.Use. It is
// idempotent and cheap.
func Init() { blas32.Use(impl) }

// Name reports the implementation selected at build time: "openblas" or
// "gonum".
func Name() string { return name }

// SetThreads sets how many threads one BLAS call may use (n < 1 means 1):
// openblas_set_num_threads for OpenBLAS, a no-op for gonum, whose Sgemm
// splits work over GOMAXPROCS goroutines by itself. It must not be called
// while BLAS calls are in flight. With OpenBLAS, SetThreads(1) makes
// SplitByCaller true, and package kernels then parallelizes convolutions
// over the batch instead.
func SetThreads(n int) {
	n = max(n, 1)
	setThreads(n)
}

// Threads reports the number of threads one BLAS call may use (for gonum,
// GOMAXPROCS).
func Threads() int { return threads() }

// SplitByCaller reports whether callers should spread BLAS work over
// goroutines themselves rather than count on one call using several cores:
// true for OpenBLAS limited to one thread, and for gonum, whose own
// splitting of the thin products of convolutions scaled 1.0–1.3× on two
// cores where splitting the batch scaled 2.0×.
func SplitByCaller() bool { return splitByCaller() }
