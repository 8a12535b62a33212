package supernet

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/kernels"
	"github.com/qnas/qnas/internal/quant"
)

// oneNode builds a graph of a single node over input x (shape in) and constants.
func oneNode(t testing.TB, n *graph.Node, in graph.Shape, consts map[string]*graph.Tensor) *graph.Graph {
	t.Helper()
	g := graph.New("test")
	g.Opset = 13
	g.Inputs = []string{n.Inputs[0]}
	g.Shapes[n.Inputs[0]] = in
	for k, v := range consts {
		g.Consts[k] = v
	}
	g.Nodes = []*graph.Node{n}
	g.Outputs = n.Outputs
	if err := g.InferShapes(); err != nil {
		t.Fatal(err)
	}
	return g
}

// QuantAct's forward is the quant package's grid; its backward is the straight-through
// estimator: dx = dy inside (lo, clip), 0 outside, and d clip = Σ dy over x ≥ clip (minus
// Σ dy over x ≤ −clip when signed), the same whatever the thread count.
func TestQuantActSTE(t *testing.T) {
	for _, signed := range []bool{false, true} {
		for _, bits := range []int{2, 4, 8} {
			n := &graph.Node{Name: "q", Op: OpQuantAct, Domain: Domain, Inputs: []string{"x", "clip"}, Outputs: []string{"y"}}
			n.SetInt("bits", int64(bits))
			if signed {
				n.SetInt("signed", 1)
			}
			const clip = 1.3
			g := oneNode(t, n, graph.Shape{graph.Batch, 3, 50, 70}, map[string]*graph.Tensor{"clip": graph.NewFloat([]int{1}, []float32{clip})})
			var dclips []float32
			for _, procs := range []int{1, 2} {
				old := runtime.GOMAXPROCS(procs)
				p, err := engine.Compile(g, 9, engine.Options{InputGrads: true})
				if err != nil {
					t.Fatal(err)
				}
				r := rand.New(rand.NewPCG(uint64(bits), 1))
				x, dy := p.Value("x").Data, p.Value("y").Grad
				for i := range x {
					x[i] = float32(r.NormFloat64())
					if !signed && x[i] < 0 && r.IntN(2) == 0 {
						x[i] = 0
					}
					dy[i] = float32(r.NormFloat64())
				}
				p.Forward(true)
				want := make([]float32, len(x))
				quant.FakeQuantAct(x, want, clip, bits, signed)
				var dc float64
				lo := float32(0)
				if signed {
					lo = -clip
				}
				for i := range x {
					if p.Value("y").Data[i] != want[i] {
						t.Fatalf("bits %d signed %v: y[%d] = %v, quant gives %v", bits, signed, i, p.Value("y").Data[i], want[i])
					}
				}
				p.Backward()
				for i, v := range x {
					g := dy[i]
					switch {
					case v >= clip:
						dc += float64(g)
						g = 0
					case v <= lo:
						if signed {
							dc -= float64(g)
						}
						g = 0
					}
					if p.Value("x").Grad[i] != g {
						t.Fatalf("bits %d signed %v: dx[%d] = %v, want %v (x = %v)", bits, signed, i, p.Value("x").Grad[i], g, v)
					}
				}
				got := p.Value("clip").Grad[0]
				if math.Abs(float64(got)-dc) > 1e-3*math.Max(1, math.Abs(dc)) {
					t.Errorf("bits %d signed %v: dclip = %v, want %v", bits, signed, got, dc)
				}
				dclips = append(dclips, got)
				runtime.GOMAXPROCS(old)
			}
			if dclips[0] != dclips[1] {
				t.Errorf("bits %d signed %v: dclip %v with one thread, %v with two", bits, signed, dclips[0], dclips[1])
			}
		}
	}
}

// QuantWeight puts every output channel on its own grid (per-channel bits and scales), along
// axis 0 or, for a Gemm weight without transB, axis 1, and passes the gradient straight
// through.
func TestQuantWeight(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	w := make([]float32, 6*5)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	bits := []int64{2, 3, 4, 5, 8, 32}
	for axis, shape := range [][]int{{6, 5}, {5, 6}} {
		n := &graph.Node{Name: "q", Op: OpQuantWeight, Domain: Domain, Inputs: []string{"w"}, Outputs: []string{"y"}}
		n.SetInts("bits", bits)
		n.SetInt("axis", int64(axis))
		g := graph.New("test")
		g.Opset = 13
		g.Consts["w"] = graph.NewFloat(shape, append([]float32{}, w...))
		g.Inputs = []string{"x"}
		g.Shapes["x"] = graph.Shape(shape)
		g.Nodes = []*graph.Node{n, {Name: "add", Op: "Add", Inputs: []string{"y", "x"}, Outputs: []string{"out"}}}
		g.Outputs = []string{"out"}
		if err := g.InferShapes(); err != nil {
			t.Fatal(err)
		}
		p, err := engine.Compile(g, 1, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		p.Forward(true)
		y := p.Value("y").Data
		at := func(c, i int) int { // element i of channel c
			if axis == 0 {
				return c*5 + i
			}
			return i*6 + c
		}
		for c, b := range bits {
			maxAbs := float32(0)
			for i := 0; i < 5; i++ {
				maxAbs = max(maxAbs, float32(math.Abs(float64(w[at(c, i)]))))
			}
			for i := 0; i < 5; i++ {
				v := y[at(c, i)]
				if b == 32 {
					if v != w[at(c, i)] {
						t.Errorf("axis %d: float channel %d changed", axis, c)
					}
					continue
				}
				s := quant.WeightScale(maxAbs, int(b))
				q := v / s
				if math.Abs(float64(q)-math.Round(float64(q))) > 1e-4 || math.Round(math.Abs(float64(q))) > float64(quant.WeightMax(int(b))) {
					t.Errorf("axis %d channel %d (%d bits): %v is not on the grid of scale %v", axis, c, b, v, s)
				}
			}
		}
		copy(p.Value("out").Grad, make([]float32, 30))
		for i := range p.Value("out").Grad {
			p.Value("out").Grad[i] = float32(i)
		}
		p.Backward()
		for i, gw := range p.Value("w").Grad {
			if gw != float32(i) {
				t.Fatalf("axis %d: dW[%d] = %v, want the output gradient %d", axis, i, gw, i)
			}
		}
	}
}

// BenchmarkQuantAct times a QuantAct forward and backward over 20 M activations (ResNet-20's
// quantized inputs in one step at batch 128), half of them zero as after a ReLU.
func BenchmarkQuantAct(b *testing.B) {
	n := &graph.Node{Name: "q", Op: OpQuantAct, Domain: Domain, Inputs: []string{"x", "clip"}, Outputs: []string{"y"}}
	n.SetInt("bits", 4)
	g := oneNode(b, n, graph.Shape{graph.Batch, 16, 28, 28}, map[string]*graph.Tensor{"clip": graph.NewFloat([]int{1}, []float32{2})})
	p, err := engine.Compile(g, 1600, engine.Options{InputGrads: true})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for i := range p.Value("x").Data {
		p.Value("x").Data[i] = max(0, float32(r.NormFloat64()))
	}
	b.Run("forward", func(b *testing.B) {
		for b.Loop() {
			p.Forward(true)
		}
	})
	b.Run("backward", func(b *testing.B) {
		for b.Loop() {
			p.Backward()
		}
	})
}

// TestQuantActReadsDeferredBatchNorm trains ResNet-20 one step, as the fixed-bit model of
// an architecture (QuantAct) and as the search's supernet (MixedAct), with deferral — the
// BatchNormalizations before the activation quantizers deferred into them (the quantizer
// reading the BatchNormalization's input through its map) and the quantizers before direct
// Convs deferred into those (the Conv quantizing its input as it reads it, and applying the
// quantizer's backward as it writes its input gradient) — and with every op storing its
// output, and checks that the loss, every gradient (the clips' and the logits' included) and
// the running statistics are the same bits: on ResNet-20 and MobileNetV2 (3×3, pointwise and
// depthwise Convs), with the BatchNorms kept and with them folded into the convolutions (no
// BatchNormalization, so the Conv reads the quantizer's input as it is).
func TestQuantActReadsDeferredBatchNorm(t *testing.T) {
	for _, file := range []string{"resnet20_bn.onnx", "resnet20.onnx", "mbv2_bn.onnx", "mbv2.onnx"} {
		t.Run(file, func(t *testing.T) { testDeferredQuantizers(t, file, strings.HasSuffix(file, "_bn.onnx")) })
	}
}

func testDeferredQuantizers(t *testing.T, file string, bn bool) {
	build := func(supernet bool) *graph.Graph {
		sn, err := loadSpace(t, file).NewSupernet(DefaultSearchOptions())
		if err != nil {
			t.Fatal(err)
		}
		logits := randomLogits(sn, rand.New(rand.NewPCG(3, 3)))
		if supernet {
			for k, v := range logits {
				copy(sn.Graph.Consts[k].F, v)
			}
			return sn.Graph
		}
		g, err := sn.Argmax(BOPs(), logits).Resolved().Apply()
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	// Quantizer backward passes the Conv reading them applied, and deferred quantizers whose
	// input needs a gradient.
	var folded, foldable int
	// With observeGrads, every quantizer's output gradient is observed (Plan.ObserveGrad),
	// which keeps its backward in the quantizer; each observer compares what it is handed
	// with the stored run's gradients.
	observeGrads := false
	seen := map[string][]float32{}
	run := func(supernet, store bool) (float64, map[string][]float32, int, int) {
		g := build(supernet)
		p, err := engine.Compile(g, 4, engine.Options{NoDeferral: store})
		if err != nil {
			t.Fatal(err)
		}
		// A BatchNormalization deferred into its reader cannot be observed, nor a
		// quantizer deferred into the Conv reading it.
		deferred, quantizers := 0, 0
		foldable = 0
		p.SetState(&engine.StepState{Temperature: 1})
		for _, n := range g.Nodes {
			if n.Op != OpQuantAct && n.Op != OpMixedAct {
				continue
			}
			if err := p.Observe(n.Inputs[0], func([]float32) {}); err != nil {
				deferred++
			}
			if err := p.Observe(n.Outputs[0], func([]float32) {}); err != nil {
				quantizers++
				if len(p.Value(n.Inputs[0]).Grad) > 0 {
					foldable++
				}
			}
			if name := n.Outputs[0]; observeGrads || store && !supernet {
				err := p.ObserveGrad(name, func(g []float32) {
					if store {
						seen[name] = slices.Clone(g)
						return
					}
					if !slices.Equal(g, seen[name]) {
						t.Errorf("observed gradient of %s differs from the stored run's", name)
					}
					delete(seen, name)
				})
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		r := rand.New(rand.NewPCG(1, 1))
		for i := range p.Value(g.Inputs[0]).Data {
			p.Value(g.Inputs[0]).Data[i] = float32(r.NormFloat64())
		}
		p.Forward(true)
		loss, _ := p.SoftmaxCrossEntropy(g.Outputs[0], []int32{0, 1, 2, 3})
		f0 := foldedBackwards.Load()
		p.Backward()
		folded = int(foldedBackwards.Load() - f0)
		vals := map[string][]float32{}
		for _, v := range p.Values {
			switch v.Kind {
			case engine.Param:
				vals[v.Name+".grad"] = slices.Clone(v.Grad)
			case engine.State:
				vals[v.Name] = slices.Clone(v.Data)
			}
		}
		return loss, vals, deferred, quantizers
	}
	for _, supernet := range []bool{false, true} {
		l1, v1, n1, q1 := run(supernet, false)
		f1, want := folded, foldable
		l0, v0, n0, q0 := run(supernet, true)
		// Each block's first BatchNormalization+Relu feeds the second Conv's quantizer alone.
		if bn && n1 < 9 || n0 != 0 {
			t.Fatalf("supernet %v: quantizer inputs deferred: %d (want at least 9), %d when stored", supernet, n1, n0)
		}
		// Every quantizer but those of the stride-2 Convs and the Gemm feeds a direct Conv
		// alone (where this build has the direct paths).
		direct := kernels.ConvShape{N: 4, C: 16, H: 28, W: 28, OC: 16, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}.MapsInput()
		if !supernet && (direct && q1 < 9 || q0 != 0) {
			t.Fatalf("quantizer outputs deferred: %d (want at least 9), %d when stored", q1, q0)
		}
		// Their backward goes to the Conv too (but where the quantizer's input needs no
		// gradient, as the graph input's), leaving the same bits (below).
		if !supernet && (folded != 0 || f1 != want || direct && want == 0) {
			t.Fatalf("quantizer backward passes the Conv applied: %d of %d (%d deferred), %d when stored", f1, want, q1, folded)
		}
		if l1 != l0 {
			t.Errorf("supernet %v: loss %g deferred, %g stored", supernet, l1, l0)
		}
		for name, a := range v0 {
			if !slices.Equal(a, v1[name]) {
				t.Errorf("supernet %v: %s differs with the deferral", supernet, name)
			}
		}
		if supernet {
			continue
		}
		observeGrads = true
		l2, v2, _, _ := run(supernet, false)
		observeGrads = false
		if folded != 0 || len(seen) != 0 {
			t.Errorf("observed quantizer gradients: %d backward passes applied by the Conv, %d not observed", folded, len(seen))
		}
		if l2 != l0 {
			t.Errorf("loss %g with observed gradients, %g stored", l2, l0)
		}
		for name, a := range v0 {
			if !slices.Equal(a, v2[name]) {
				t.Errorf("%s differs with observed gradients", name)
			}
		}
	}
}
