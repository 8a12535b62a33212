package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/qnas/qnas/internal/blas"
)

// withThreads runs f with GOMAXPROCS and the BLAS thread count set to n.
func withThreads(n int, f func()) {
	oldT, oldP := blas.Threads(), runtime.GOMAXPROCS(n)
	blas.SetThreads(n)
	defer func() { blas.SetThreads(oldT); runtime.GOMAXPROCS(oldP) }()
	f()
}

// resnet20Convs are the 3×3 convolutions of a CIFAR-style ResNet-20 on
// 28×28 inputs, batch 128.
var resnet20Convs = []struct {
	name string
	s    ConvShape
}{
	{"16x28x28", ConvShape{N: 128, C: 16, H: 28, W: 28, OC: 16, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}},
	{"32x14x14", ConvShape{N: 128, C: 32, H: 14, W: 14, OC: 32, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}},
	{"64x7x7", ConvShape{N: 128, C: 64, H: 7, W: 7, OC: 64, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}},
}

// resnet20Down are ResNet-20's downsampling convolutions at batch 128: the
// 3×3 stride-2 ones and the 1×1 stride-2 shortcuts.
var resnet20Down = []struct {
	name string
	s    ConvShape
}{
	{"16to32x28x28s2", ConvShape{N: 128, C: 16, H: 28, W: 28, OC: 32, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1}},
	{"32to64x14x14s2", ConvShape{N: 128, C: 32, H: 14, W: 14, OC: 64, KH: 3, KW: 3, SH: 2, SW: 2, PT: 1, PL: 1, PB: 1, PR: 1}},
	{"1x1:16to32x28x28s2", ConvShape{N: 128, C: 16, H: 28, W: 28, OC: 32, KH: 1, KW: 1, SH: 2, SW: 2}},
	{"1x1:32to64x14x14s2", ConvShape{N: 128, C: 32, H: 14, W: 14, OC: 64, KH: 1, KW: 1, SH: 2, SW: 2}},
}

// threadModes are the ways two cores can be used: one pipeline over a BLAS
// that threads each call itself (blas), or batch workers over
// single-threaded BLAS calls (batch, the default).
var threadModes = []struct {
	name        string
	procs, blas int
	split       bool
}{
	{"threads=1", 1, 1, true},
	{"threads=2,blas", 2, 2, false},
	{"threads=2,batch", 2, 1, true},
}

// withMode runs f with GOMAXPROCS procs, blasThreads for OpenBLAS and
// the kernels splitting work themselves or not.
func withMode(procs, blasThreads int, split bool, f func()) {
	withThreads(procs, func() {
		blas.SetThreads(blasThreads)
		old := splitByCaller
		splitByCaller = func() bool { return split }
		defer func() { splitByCaller = old }()
		f()
	})
}

// BenchmarkConvBackward compares the two ways of computing a stride-1 input
// gradient, one thread, dx and dw: convolving dy with the flipped kernel
// (the default) and a GEMM into columns followed by col2im.
func BenchmarkConvBackward(b *testing.B) {
	for _, c := range resnet20Convs {
		s := c.s
		r := rand.New(rand.NewPCG(1, 2))
		x, w, dy := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.YLen())
		dx, dw := make([]float32, s.XLen()), make([]float32, s.WLen())
		for _, viaConv := range []bool{true, false} {
			name := "dx=conv"
			if !viaConv {
				name = "dx=col2im"
			}
			b.Run(c.name+"/"+name, func(b *testing.B) {
				convDxConv = viaConv
				defer func() { convDxConv = true }()
				withThreads(1, func() {
					scratch := make([]float32, s.ScratchLen())
					c0 := cpuTime()
					for b.Loop() {
						Conv2DBackward(s, x, w, dy, dx, dw, nil, scratch)
					}
					b.ReportMetric((cpuTime()-c0).Seconds()*1e3/float64(b.N), "cpu-ms/op")
				})
			})
		}
	}
}

// BenchmarkConv times the ResNet-20 convolutions forward alone and forward
// plus backward (dx, dw, db) in each thread mode, on each path this build
// and CPU have. GFLOP/s counts 2 flops
// per multiply-add, and three GEMM-sized products for forward plus
// backward.
func BenchmarkConv(b *testing.B) {
	for _, c := range append(resnet20Convs[:len(resnet20Convs):len(resnet20Convs)], resnet20Down...) {
		s := c.s
		r := rand.New(rand.NewPCG(1, 2))
		x, w, bias := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.OC)
		y, dy := make([]float32, s.YLen()), randn(r, s.YLen())
		dx, dw, db := make([]float32, s.XLen()), make([]float32, s.WLen()), make([]float32, s.OC)
		for _, path := range convPaths() {
			if path != "im2col-"+blas.Name() && !s.Direct() {
				continue
			}
			for _, m := range threadModes {
				for _, bwd := range []bool{false, true} {
					mode, passes := "fwd", 1
					if bwd {
						mode, passes = "fwd+bwd", 3
					}
					b.Run(fmt.Sprintf("%s/%s/%s/%s", path, c.name, mode, m.name), func(b *testing.B) {
						var cpu time.Duration
						old, oldW := useConv3x3, useWinograd
						useConv3x3, useWinograd = path != "im2col-"+blas.Name(), path == "winograd"
						defer func() { useConv3x3, useWinograd = old, oldW }()
						withMode(m.procs, m.blas, m.split, func() {
							scratch := make([]float32, s.ScratchLen())
							c0 := cpuTime()
							for b.Loop() {
								Conv2D(s, x, w, bias, y, scratch)
								if bwd {
									Conv2DBackward(s, x, w, dy, dx, dw, db, scratch)
								}
							}
							cpu = cpuTime() - c0
						})
						sec := b.Elapsed().Seconds()
						b.ReportMetric(float64(passes*2*s.MACs())*float64(b.N)/sec/1e9, "GFLOP/s")
						b.ReportMetric(float64(s.N*b.N)/sec, "img/s")
						b.ReportMetric(cpu.Seconds()*1e3/float64(b.N), "cpu-ms/op")
					})
				}
			}
		}
	}
}

// convPaths names the convolution paths this build can take: the direct
// kernels where the CPU has them (the 3×3 stride-1 products direct or by
// Winograd's algorithm), and im2col with this build's BLAS.
func convPaths() []string {
	p := []string{"im2col-" + blas.Name()}
	if haveConv3x3 {
		p = append(p, "direct", "winograd")
	}
	return p
}

// cpuTime returns the CPU time (user and system) the process has used, all
// threads included; under load from other processes it is a steadier cost
// measure than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDepthwise times depthwise convolutions forward plus backward
// (dx, dw) on the direct path and the portable loops: MobileNetV2's layers
// at 28×28 input (batch 128) and at 224×224 (batch 32), and a 5×5 one of
// EfficientNet-B0's (batch 32), reporting GFLOP/s (three products) and
// CPU time per call.
func BenchmarkDepthwise(b *testing.B) {
	dw := func(n, c, hw, k, s int) ConvShape {
		p := k / 2
		return ConvShape{N: n, C: c, H: hw, W: hw, OC: c, KH: k, KW: k, SH: s, SW: s, Groups: c, PT: p, PL: p, PB: p, PR: p}
	}
	for _, c := range []struct {
		name string
		s    ConvShape
	}{
		{"96x28x28", dw(128, 96, 28, 3, 1)},
		{"144x28x28/s2", dw(128, 144, 28, 3, 2)},
		{"224:32x112x112", dw(32, 32, 112, 3, 1)},
		{"224:96x112x112/s2", dw(32, 96, 112, 3, 2)},
		{"224:144x56x56", dw(32, 144, 56, 3, 1)},
		{"224:576x14x14", dw(32, 576, 14, 3, 1)},
		{"224:960x7x7", dw(32, 960, 7, 3, 1)},
		{"224:240x28x28/5x5", dw(32, 240, 28, 5, 1)},
		{"224:144x56x56/5x5/s2", dw(32, 144, 56, 5, 2)},
	} {
		s := c.s
		for _, direct := range []bool{true, false} {
			path := "direct"
			if !direct {
				path = "portable"
			}
			if direct && !haveConv3x3 {
				continue
			}
			for _, th := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", path, c.name, th), func(b *testing.B) {
					old := useConv3x3
					useConv3x3 = direct
					defer func() { useConv3x3 = old }()
					benchFwdBwd(b, s, th)
				})
			}
		}
	}
}

// BenchmarkPointwise times pointwise convolutions forward plus backward
// (dx, dw) on MobileNetV2's shapes at 224×224, batch 32, 2 threads,
// reporting GFLOP/s (three products) and CPU time per call.
func BenchmarkPointwise(b *testing.B) {
	for _, c := range []struct{ c, oc, hw int }{
		{16, 96, 112}, {96, 24, 56}, {24, 144, 56}, {144, 32, 28}, {192, 64, 14}, {384, 96, 14},
		{576, 160, 7}, {960, 320, 7}, {320, 1280, 7},
	} {
		s := ConvShape{N: 32, C: c.c, H: c.hw, W: c.hw, OC: c.oc, KH: 1, KW: 1}
		b.Run(fmt.Sprintf("%dto%dx%dx%d", c.c, c.oc, c.hw, c.hw), func(b *testing.B) { benchFwdBwd(b, s, 2) })
	}
}

// benchFwdBwd times Conv2D and Conv2DBackward (dx, dw) of s on random data
// with the given threads, reporting GFLOP/s (three products) and CPU time
// per call.
func benchFwdBwd(b *testing.B, s ConvShape, threads int) {
	r := rand.New(rand.NewPCG(1, 2))
	x, w, dy := randn(r, s.XLen()), randn(r, s.WLen()), randn(r, s.YLen())
	y, dx, dw := make([]float32, s.YLen()), make([]float32, s.XLen()), make([]float32, s.WLen())
	var cpu time.Duration
	withThreads(threads, func() {
		scratch := make([]float32, s.ScratchLen())
		c0 := cpuTime()
		for b.Loop() {
			Conv2D(s, x, w, nil, y, scratch)
			Conv2DBackward(s, x, w, dy, dx, dw, nil, scratch)
		}
		cpu = cpuTime() - c0
	})
	b.ReportMetric(float64(3*2*s.MACs())*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(cpu.Seconds()*1e3/float64(b.N), "cpu-ms/op")
}

// BenchmarkBatchNormReLU times a training-mode BN+ReLU forward and
// backward on the largest ResNet-20 activation (128×16×28×28), and plain
// ReLU forward and backward on the same size, reporting GB/s of the
// tensors read and written.
func BenchmarkBatchNormReLU(b *testing.B) {
	p := BNParams{N: 128, C: 16, HW: 28 * 28, Eps: 1e-5, Momentum: 0.1, ReLU: true}
	n := p.N * p.C * p.HW
	r := rand.New(rand.NewPCG(1, 2))
	x, dy := randn(r, n), randn(r, n)
	y, dx := make([]float32, n), make([]float32, n)
	gamma, beta := randn(r, p.C), randn(r, p.C)
	mean, invStd, rm, rv := make([]float32, p.C), make([]float32, p.C), make([]float32, p.C), make([]float32, p.C)
	dg, db := make([]float32, p.C), make([]float32, p.C)
	for _, th := range []int{1, 2} {
		b.Run(fmt.Sprintf("bn+relu/threads=%d", th), func(b *testing.B) {
			withThreads(th, func() {
				for b.Loop() {
					BatchNormTrain(p, x, gamma, beta, y, mean, invStd, rm, rv)
					BatchNormBackward(p, x, dy, gamma, beta, mean, invStd, dx, dg, db)
				}
			})
			// Forward reads x twice and writes y; backward reads x and
			// dy twice and writes dx.
			b.ReportMetric(float64(8*4*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
		b.Run(fmt.Sprintf("relu/threads=%d", th), func(b *testing.B) {
			withThreads(th, func() {
				for b.Loop() {
					ReLU(x, y)
					ReLUBackward(x, dy, dx)
				}
			})
			b.ReportMetric(float64(5*4*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkMicroKernel times the direct path's two main micro-kernels on one
// core with their data in L1: the 3×3 stride-1 forward tile (4 output
// channels × 96 positions, 16 input channels) and the weight-gradient tile
// (3 output channels × 9 taps over 2400 positions). Against the core's
// peak (2 AVX-512 FMAs per cycle, 64 flops) this says how much of the
// convolutions' time is arithmetic and how much the data movement around it.
func BenchmarkMicroKernel(b *testing.B) {
	if !haveConv3x3 {
		b.Skip("no AVX-512 micro-kernels in this build or on this CPU")
	}
	const nc, wp, cs = 16, 30, 2560 // cs: floats per channel, above what either kernel reads
	x, w, y := make([]float32, nc*cs), make([]float32, nc*9*4), make([]float32, 4*128)
	offs := [6]int{0, wp * 4, 2 * wp * 4}
	b.Run("fwd4x6", func(b *testing.B) {
		for b.Loop() {
			fwdS1[6](&x[0], &w[0], &y[0], nc, cs*4, 128*4, &offs[0])
		}
		b.ReportMetric(float64(b.N)*4*96*9*nc*2/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	b.Run("wgrad3", func(b *testing.B) {
		const nv = 150
		dy, acc := make([]float32, 3*cs), make([]float32, 27)
		for b.Loop() {
			wgradS1[3](&x[0], &dy[0], &acc[0], nv, cs*4, &offs[0])
		}
		b.ReportMetric(float64(b.N)*nv*16*27*2/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}

// BenchmarkWinograd times 3×3 stride-1 convolutions forward, and forward
// plus backward (input and weight gradients), one thread, with the direct
// kernels and with Winograd's algorithm (the size rule lifted): stems of
// few channels, ResNet-20's layers (batch 128), and ResNet-18's at
// 224×224 input (batch 32).
func BenchmarkWinograd(b *testing.B) {
	sh := func(n, c, hw int) ConvShape {
		return ConvShape{N: n, C: c, H: hw, W: hw, OC: c, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}
	}
	stem := sh(128, 1, 28)
	stem.OC = 16
	for _, s := range []ConvShape{stem, sh(128, 8, 28), sh(128, 16, 28), sh(128, 32, 14), sh(128, 64, 7),
		sh(32, 64, 56), sh(32, 128, 28), sh(32, 256, 14), sh(32, 512, 7)} {
		r := rand.New(rand.NewPCG(1, 2))
		x, w, y := randn(r, s.XLen()), randn(r, s.WLen()), make([]float32, s.YLen())
		dy, dx, dw := randn(r, s.YLen()), make([]float32, s.XLen()), make([]float32, s.WLen())
		for _, bwd := range []bool{false, true} {
			for _, wi := range []bool{false, true} {
				mode := "fwd"
				if bwd {
					mode = "fwd+bwd"
				}
				b.Run(fmt.Sprintf("%s/%s/wino=%v", s, mode, wi), func(b *testing.B) {
					old, oldMin, oldMax := useWinograd, winoMinC, winoMaxCC
					useWinograd, winoMinC, winoMaxCC = wi, 1, 1<<30
					defer func() { useWinograd, winoMinC, winoMaxCC = old, oldMin, oldMax }()
					withThreads(1, func() {
						scratch := make([]float32, s.ScratchLen())
						for b.Loop() {
							Conv2D(s, x, w, nil, y, scratch)
							if bwd {
								Conv2DBackward(s, x, w, dy, dx, dw, nil, scratch)
							}
						}
					})
				})
			}
		}
	}
}
