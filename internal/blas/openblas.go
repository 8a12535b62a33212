//go:build cgo && !purego

package blas

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

import (
	"os"
	"sync/atomic"

	gblas "gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

const name = "openblas"

var impl gblas.Float32 = openblas{}

// nthreads mirrors openblas_get_num_threads so that Threads needs no cgo call.
var nthreads atomic.Int32

// init leaves OpenBLAS single-threaded unless OPENBLAS_NUM_THREADS says
// otherwise: package kernels then splits work over goroutines itself, which
// measured faster than OpenBLAS's own threads, whose idle workers spin and
// take a core from the goroutines doing im2col.
func init() {
	if os.Getenv("OPENBLAS_NUM_THREADS") == "" {
		C.openblas_set_num_threads(1)
	}
	nthreads.Store(int32(C.openblas_get_num_threads()))
}

func setThreads(n int) {
	C.openblas_set_num_threads(C.int(n))
	nthreads.Store(int32(C.openblas_get_num_threads()))
}

func threads() int { return int(nthreads.Load()) }

func splitByCaller() bool { return nthreads.Load() <= 1 }

// openblas is gonum's pure-Go BLAS with the level-2/3 routines that matter
// for training (Sgemm, Sgemv) replaced by OpenBLAS calls.
type openblas struct {
	gonum.Implementation
}

func cTrans(t gblas.Transpose) (C.enum_CBLAS_TRANSPOSE, bool) {
	switch t {
	case gblas.NoTrans:
		return C.CblasNoTrans, false
	case gblas.Trans, gblas.ConjTrans:
		return C.CblasTrans, true
	}
	panic("blas: illegal transpose")
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C on row-major matrices, with
// the argument checks of gonum's implementation.
func (openblas) Sgemm(tA, tB gblas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, aT := cTrans(tA)
	tb, bT := cTrans(tB)
	switch {
	case m < 0:
		panic("blas: m < 0")
	case n < 0:
		panic("blas: n < 0")
	case k < 0:
		panic("blas: k < 0")
	case aT && lda < max(1, m), !aT && lda < max(1, k):
		panic("blas: bad leading dimension of A")
	case bT && ldb < max(1, k), !bT && ldb < max(1, n):
		panic("blas: bad leading dimension of B")
	case ldc < max(1, n):
		panic("blas: bad leading dimension of C")
	}
	if m == 0 || n == 0 {
		return
	}
	if len(c) < (m-1)*ldc+n {
		panic("blas: insufficient length of c")
	}
	if k == 0 || alpha == 0 {
		// OpenBLAS would not read A or B; scale C without touching them.
		gonum.Implementation{}.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if (aT && len(a) < (k-1)*lda+m) || (!aT && len(a) < (m-1)*lda+k) {
		panic("blas: insufficient length of a")
	}
	if (bT && len(b) < (n-1)*ldb+k) || (!bT && len(b) < (k-1)*ldb+n) {
		panic("blas: insufficient length of b")
	}
	C.cblas_sgemm(C.CblasRowMajor, ta, tb, C.blasint(m), C.blasint(n), C.blasint(k),
		C.float(alpha), (*C.float)(&a[0]), C.blasint(lda),
		(*C.float)(&b[0]), C.blasint(ldb),
		C.float(beta), (*C.float)(&c[0]), C.blasint(ldc))
}

// Sgemv computes y = alpha·op(A)·x + beta·y on a row-major matrix. Negative
// increments are left to gonum.
func (openblas) Sgemv(tA gblas.Transpose, m, n int, alpha float32, a []float32, lda int, x []float32, incX int, beta float32, y []float32, incY int) {
	ta, aT := cTrans(tA)
	if incX <= 0 || incY <= 0 || m == 0 || n == 0 || alpha == 0 || lda < max(1, n) {
		gonum.Implementation{}.Sgemv(tA, m, n, alpha, a, lda, x, incX, beta, y, incY)
		return
	}
	lenX, lenY := n, m
	if aT {
		lenX, lenY = m, n
	}
	switch {
	case (lenX-1)*incX >= len(x):
		panic("blas: insufficient length of x")
	case (lenY-1)*incY >= len(y):
		panic("blas: insufficient length of y")
	case len(a) < lda*(m-1)+n:
		panic("blas: insufficient length of a")
	}
	C.cblas_sgemv(C.CblasRowMajor, ta, C.blasint(m), C.blasint(n),
		C.float(alpha), (*C.float)(&a[0]), C.blasint(lda),
		(*C.float)(&x[0]), C.blasint(incX),
		C.float(beta), (*C.float)(&y[0]), C.blasint(incY))
}
