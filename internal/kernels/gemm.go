package kernels

import (
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	qblas "github.com/qnas/qnas/internal/blas"
)

// splitByCaller reports whether the kernels should parallelize matrix
// products themselves (blas.SplitByCaller). Tests and benchmarks replace it.
var splitByCaller = qblas.SplitByCaller

// GemmShape describes ONNX Gemm without alpha and beta: Y = A'·B' + bias,
// with A' (M×K) = A or Aᵀ and B' (K×N) = B or Bᵀ. A fully connected layer
// with a PyTorch weight (out×in) is M = batch, K = in, N = out, TransB.
type GemmShape struct {
	M, N, K        int
	TransA, TransB bool
}

func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// views returns A and B as stored.
func (s GemmShape) views(a, b []float32) (ga, gb blas32.General) {
	need("a", a, s.M*s.K)
	need("b", b, s.K*s.N)
	ga = general(s.M, s.K, s.K, a)
	if s.TransA {
		ga = general(s.K, s.M, s.M, a)
	}
	gb = general(s.K, s.N, s.N, b)
	if s.TransB {
		gb = general(s.N, s.K, s.K, b)
	}
	return ga, gb
}

// Gemm computes y (M×N) = A'·B' + bias, where bias (length N, added to
// every row) may be nil.
func Gemm(s GemmShape, a, b, bias, y []float32) {
	ga, gb := s.views(a, b)
	need("y", y, s.M*s.N)
	needOpt("bias", bias, s.N)
	beta := float32(0)
	if bias != nil {
		for i := range s.M {
			copy(y[i*s.N:(i+1)*s.N], bias)
		}
		beta = 1
	}
	gemm(trans(s.TransA), trans(s.TransB), ga, gb, beta, general(s.M, s.N, s.N, y))
}

// GemmBackward computes the gradients of Gemm's A, B and bias from dy;
// each of da, db and dbias may be nil. da and db have the stored (possibly
// transposed) layouts of a and b.
func GemmBackward(s GemmShape, a, b, dy, da, db, dbias []float32) {
	ga, gb := s.views(a, b)
	need("dy", dy, s.M*s.N)
	needOpt("da", da, s.M*s.K)
	needOpt("db", db, s.K*s.N)
	needOpt("dbias", dbias, s.N)
	gy := general(s.M, s.N, s.N, dy)
	if da != nil {
		if s.TransA { // dA (K×M) = B'·dYᵀ
			gemm(trans(s.TransB), blas.Trans, gb, gy, 0, general(s.K, s.M, s.M, da))
		} else { // dA (M×K) = dY·B'ᵀ
			gemm(blas.NoTrans, trans(!s.TransB), gy, gb, 0, general(s.M, s.K, s.K, da))
		}
	}
	if db != nil {
		if s.TransB { // dB (N×K) = dYᵀ·A'
			gemm(blas.Trans, trans(s.TransA), gy, ga, 0, general(s.N, s.K, s.K, db))
		} else { // dB (K×N) = A'ᵀ·dY
			gemm(trans(!s.TransA), blas.NoTrans, ga, gy, 0, general(s.K, s.N, s.N, db))
		}
	}
	if dbias != nil {
		parFor(s.N, s.M, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				var t float32
				for i := range s.M {
					t += dy[i*s.N+j]
				}
				dbias[j] = t
			}
		})
	}
}

// gemm computes c = a'·b' + beta·c like blas32.Gemm with alpha 1. When
// splitByCaller, it splits the longer side of c into GOMAXPROCS bands and
// multiplies them concurrently.
func gemm(tA, tB blas.Transpose, a, b blas32.General, beta float32, c blas32.General) {
	k := a.Cols
	if tA != blas.NoTrans {
		k = a.Rows
	}
	W := 1
	if splitByCaller() && c.Rows*c.Cols*k >= 8*parGrain {
		W = min(runtime.GOMAXPROCS(0), max(c.Rows, c.Cols))
	}
	if W <= 1 {
		blas32.Gemm(tA, tB, 1, a, b, beta, c)
		return
	}
	byRows := c.Rows >= c.Cols
	var wg sync.WaitGroup
	for i := range W {
		as, bs, cs := a, b, c
		if byRows {
			i0, i1 := i*c.Rows/W, (i+1)*c.Rows/W
			cs.Rows, cs.Data = i1-i0, c.Data[i0*c.Stride:]
			if tA == blas.NoTrans {
				as.Rows, as.Data = i1-i0, a.Data[i0*a.Stride:]
			} else {
				as.Cols, as.Data = i1-i0, a.Data[i0:]
			}
		} else {
			j0, j1 := i*c.Cols/W, (i+1)*c.Cols/W
			cs.Cols, cs.Data = j1-j0, c.Data[j0:]
			if tB == blas.NoTrans {
				bs.Cols, bs.Data = j1-j0, b.Data[j0:]
			} else {
				bs.Rows, bs.Data = j1-j0, b.Data[j0*b.Stride:]
			}
		}
		wg.Go(func() { blas32.Gemm(tA, tB, 1, as, bs, beta, cs) })
	}
	wg.Wait()
}
