// Package kernels is the numeric core of the qnas training engine: forward
// and backward passes of the CNN operators over float32 slices in NCHW
// layout.
//
// Conventions shared by every kernel:
//
//   - The caller owns all memory. Kernels never allocate tensors; the ones
//     that need temporary space take a scratch slice whose length a
//     ScratchLen method reports. Slices must have exactly the documented
//     length (scratch may be longer); kernels panic otherwise, like gonum's
//     BLAS does.
//   - Outputs are overwritten, never accumulated into. Gradient outputs that
//     the caller does not need may be nil and are then not computed.
//   - Elementwise kernels allow the output to alias the input.
//   - Work is spread over runtime.GOMAXPROCS(0) goroutines. Matrix
//     products go through gonum's blas32, whose implementation (OpenBLAS or
//     pure Go) package internal/blas chooses; when blas.SplitByCaller (the
//     default) convolutions split the batch over the goroutines, each
//     making single-threaded BLAS calls, and large GEMMs are cut into bands.
//   - Backward functions sit next to their forward functions and take the
//     upstream gradient dy (or dY) and produce the gradients of the inputs.
package kernels

import (
	"fmt"
	"runtime"
	"sync"
)

// parGrain is the least work, in rough multiply-adds, worth a goroutine.
// Tests set it to 0 to force every parallel path.
var parGrain = 1 << 15

// parFor splits the tasks [0, n) into contiguous ranges, one per worker, and
// runs fn on them concurrently; cost is the rough work of one task. Small
// jobs run on the calling goroutine.
func parFor(n, cost int, fn func(lo, hi int)) {
	w := min(runtime.GOMAXPROCS(0), n)
	if parGrain > 0 {
		w = min(w, n*cost/parGrain)
	}
	if w <= 1 {
		if n > 0 {
			fn(0, n)
		}
		return
	}
	var wg sync.WaitGroup
	for i := 1; i < w; i++ {
		wg.Go(func() { fn(i*n/w, (i+1)*n/w) })
	}
	fn(0, n/w)
	wg.Wait()
}

// need panics unless s holds exactly n elements.
func need(what string, s []float32, n int) {
	if len(s) != n {
		panic(fmt.Sprintf("kernels: len(%s) = %d, want %d", what, len(s), n))
	}
}

// needOpt is need for optional slices, which may be nil.
func needOpt(what string, s []float32, n int) {
	if s != nil {
		need(what, s, n)
	}
}

// span returns the output positions [lo, hi) among out whose input index
// o·stride + off lies inside [0, n).
func span(out, n, stride, off int) (lo, hi int) {
	if n-1-off < 0 {
		return 0, 0
	}
	if off < 0 {
		lo = (-off + stride - 1) / stride
	}
	hi = min((n-1-off)/stride+1, out)
	return min(lo, hi), hi
}
