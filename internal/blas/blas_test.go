package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	gblas "gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

func TestRegistered(t *testing.T) {
	if blas32.Implementation() != impl {
		t.Fatalf("blas32 uses %T, want %T", blas32.Implementation(), impl)
	}
	if Name() != "openblas" && Name() != "gonum" {
		t.Fatalf("Name() = %q", Name())
	}
	old := Threads()
	defer SetThreads(old)
	SetThreads(1)
	if Name() == "openblas" && (Threads() != 1 || !SplitByCaller()) {
		t.Fatalf("after SetThreads(1): Threads() = %d, SplitByCaller() = %v", Threads(), SplitByCaller())
	}
	if Name() == "gonum" && (Threads() != runtime.GOMAXPROCS(0) || !SplitByCaller()) {
		t.Fatalf("gonum: Threads() = %d, SplitByCaller() = %v", Threads(), SplitByCaller())
	}
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// TestSgemm compares the registered Sgemm with a float64 triple loop for all
// transpose combinations, padded leading dimensions and alpha/beta values.
func TestSgemm(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, d := range [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 9, 33}, {64, 65, 31}, {4, 3, 0}} {
		for _, tA := range []gblas.Transpose{gblas.NoTrans, gblas.Trans} {
			for _, tB := range []gblas.Transpose{gblas.NoTrans, gblas.Trans} {
				for _, ab := range [][2]float32{{1, 0}, {0.5, 1}, {-2, 0.25}, {0, 2}} {
					m, n, k := d[0], d[1], d[2]
					ar, ac := m, k
					if tA == gblas.Trans {
						ar, ac = k, m
					}
					br, bc := k, n
					if tB == gblas.Trans {
						br, bc = n, k
					}
					lda, ldb, ldc := ac+2, bc+1, n+3
					a := randSlice(r, max(ar*lda, 1))
					b := randSlice(r, max(br*ldb, 1))
					c := randSlice(r, m*ldc)
					want := make([]float64, len(c))
					for i := 0; i < m; i++ {
						for j := 0; j < ldc; j++ {
							want[i*ldc+j] = float64(c[i*ldc+j])
							if j >= n {
								continue
							}
							var s float64
							for p := 0; p < k; p++ {
								ai, bi := i*lda+p, p*ldb+j
								if tA == gblas.Trans {
									ai = p*lda + i
								}
								if tB == gblas.Trans {
									bi = j*ldb + p
								}
								av, bv := a[ai], b[bi]
								s += float64(av) * float64(bv)
							}
							want[i*ldc+j] = float64(ab[0])*s + float64(ab[1])*float64(c[i*ldc+j])
						}
					}
					blas32.Implementation().Sgemm(tA, tB, m, n, k, ab[0], a, lda, b, ldb, ab[1], c, ldc)
					for i := range c {
						if math.Abs(float64(c[i])-want[i]) > 1e-4*(1+math.Abs(want[i])) {
							t.Fatalf("%v tA=%v tB=%v ab=%v: c[%d] = %v, want %v", d, tA, tB, ab, i, c[i], want[i])
						}
					}
				}
			}
		}
	}
}

func TestSgemv(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, tA := range []gblas.Transpose{gblas.NoTrans, gblas.Trans} {
		for _, inc := range []int{1, 2} {
			m, n, lda := 7, 5, 6
			a := randSlice(r, m*lda)
			lx, ly := n, m
			if tA == gblas.Trans {
				lx, ly = m, n
			}
			x := randSlice(r, (lx-1)*inc+1)
			y := randSlice(r, (ly-1)*inc+1)
			want := make([]float64, ly)
			for i := range ly {
				var s float64
				for j := range lx {
					ai := i*lda + j
					if tA == gblas.Trans {
						ai = j*lda + i
					}
					av := a[ai]
					s += float64(av) * float64(x[j*inc])
				}
				want[i] = 1.5*s - 0.5*float64(y[i*inc])
			}
			blas32.Implementation().Sgemv(tA, m, n, 1.5, a, lda, x, inc, -0.5, y, inc)
			for i := range ly {
				if math.Abs(float64(y[i*inc])-want[i]) > 1e-4*(1+math.Abs(want[i])) {
					t.Fatalf("tA=%v inc=%d: y[%d] = %v, want %v", tA, inc, i, y[i*inc], want[i])
				}
			}
		}
	}
}

// withThreads runs f with n threads for one BLAS call (and GOMAXPROCS = n,
// which is what bounds gonum's goroutines).
func withThreads(n int, f func()) {
	oldT, oldP := Threads(), runtime.GOMAXPROCS(n)
	SetThreads(n)
	defer func() { SetThreads(oldT); runtime.GOMAXPROCS(oldP) }()
	f()
}

// BenchmarkSgemm measures C = A·B for the shapes quoted in facts.md; 64×25088×288
// is the batched im2col GEMM of a 3×3 conv 32→64 at 14×14, batch 128. The
// split=go variants run OpenBLAS single-threaded in two goroutines, each on
// half the columns of C.
func BenchmarkSgemm(b *testing.B) {
	for _, d := range [][3]int{{512, 512, 512}, {64, 25088, 288}} {
		m, n, k := d[0], d[1], d[2]
		r := rand.New(rand.NewPCG(5, 6))
		x, y, z := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
		for _, th := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/%dx%dx%d/threads=%d", Name(), m, n, k, th), func(b *testing.B) {
				withThreads(th, func() {
					for b.Loop() {
						blas32.Implementation().Sgemm(gblas.NoTrans, gblas.NoTrans, m, n, k, 1, x, k, y, n, 0, z, n)
					}
					b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			})
		}
		b.Run(fmt.Sprintf("%s/%dx%dx%d/threads=2,split=go", Name(), m, n, k), func(b *testing.B) {
			withThreads(1, func() {
				runtime.GOMAXPROCS(2)
				h := n / 2
				for b.Loop() {
					var wg sync.WaitGroup
					for w := range 2 {
						j0, j1 := w*h, n
						if w == 0 {
							j1 = h
						}
						wg.Go(func() {
							blas32.Implementation().Sgemm(gblas.NoTrans, gblas.NoTrans, m, j1-j0, k, 1, x, k, y[j0:], n, 0, z[j0:], n)
						})
					}
					wg.Wait()
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		})
	}
}
