package export_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/ortrun"
	"github.com/qnas/qnas/internal/quant"
	"github.com/qnas/qnas/search"
	"github.com/qnas/qnas/supernet"
)

// With power-of-two scales (Space.Pow2Scales, the --pow2-scales of quantize and optimize)
// every scale the export writes is a power of two, the model trained is the model exported,
// and ONNX Runtime computes what qnas computes at every optimization level: sums of
// integers times powers of two are exact in float32, so its float kernels (levels disable
// and basic), its integer kernels (extended, all) and qnas's engine reach the same integers
// whatever their order of summation. Checked on a mixed-precision ResNet with BatchNorm
// and a folded MobileNetV2, fine-tuned two epochs (the second on the frozen form export
// writes): the same prediction on every test image, logits equal up to float rounding.
func TestPow2ScalesMatchONNXRuntimeExactly(t *testing.T) {
	trainSet, test := embeddedData(t)
	for _, model := range []string{"resnet8_bn.onnx", "mbv2.onnx"} {
		t.Run(model, func(t *testing.T) {
			_, s := restoredSpace(t, model, trainSet)
			s.Pow2Scales = true
			res, trained := fineTuneMixed(t, s, trainSet)
			eg, err := supernet.ExportForm(trained)
			if err != nil {
				t.Fatal(err)
			}
			m, err := export.Freeze(eg, res)
			if err != nil {
				t.Fatal(err)
			}
			path, rm := writeAndRead(t, m)
			n := 0
			for _, nd := range rm.Graph.Nodes {
				if nd.Op != "QuantizeLinear" && nd.Op != "DequantizeLinear" {
					continue
				}
				sc := rm.Graph.Consts[nd.Input(1)]
				if sc == nil {
					t.Fatalf("%s: scale %q is not a constant", nd.Name, nd.Input(1))
				}
				for _, v := range sc.F {
					if e := math.Log2(float64(v)); e != math.Round(e) {
						t.Errorf("%s: scale %g is not a power of two", nd.Name, v)
						break
					}
				}
				n++
			}
			if n == 0 {
				t.Fatal("no QuantizeLinear or DequantizeLinear in the export")
			}
			want := qnasLogits(t, m.Graph, test, fixtureNorm)
			tl := qnasLogits(t, trained, test, fixtureNorm)
			agree, accT, accF := agreement(argmax(tl, test.N), argmax(want, test.N), test.Labels)
			t.Logf("trained vs exported: agreement %.4f, accuracy %.4f vs %.4f, largest logit difference %g", agree, accT, accF, maxDiff(tl, want))
			if agree != 1 {
				t.Errorf("the exported model agrees with the trained one on %.2f%% of the images", 100*agree)
			}
			ortrun.RequireORT(t)
			for _, level := range levels {
				got := ortLogits(t, path, test, level, fixtureNorm)
				agree, _, _ := agreement(argmax(want, test.N), argmax(got, test.N), test.Labels)
				scale := 0.0
				for _, v := range want {
					scale = math.Max(scale, math.Abs(float64(v)))
				}
				d := maxDiff(got, want) / scale
				t.Logf("ONNX Runtime at %s: agreement %.4f, largest logit difference %.2g of the largest logit", level, agree, d)
				if agree != 1 || d > 1e-5 {
					t.Errorf("ONNX Runtime at %s: agreement %.4f, largest logit difference %.2g of the largest logit", level, agree, d)
				}
			}
		})
	}
}

// The power of two of a filter of at most quant.Pow2HeldBits bits that export folds a
// BatchNormalization into is chosen when the architecture is applied, and re-estimating
// the statistics (post-training quantization, the re-estimate before the last fine-tuning
// epoch) moves the filter's grid with the BatchNorm's factor instead of moving it to
// another power of two: otherwise the statistics, measured on one grid, would describe a
// model that exports another (measured on ResNet-20 at 3 bits: 15 % of the filters flipped
// after one re-estimate and kept flipping, and accuracy after calibration swung by up to 8
// points). A filter of more bits takes the power nearest its folded weight's grid under the
// new statistics (a held power saturated MobileNetV2's 8-bit filters by up to 6.8×). Here
// the running variances are moved as far as a re-estimate might (factors 0.3–3): the
// exported scales of 2- and 3-bit filters stay those chosen at Apply, the others' are the
// powers nearest their folded grids, training and export still round every weight alike,
// and so does the folded form the last fine-tuning epoch trains.
func TestPow2GridsSurviveReestimatedStatistics(t *testing.T) {
	trainSet, _ := embeddedData(t)
	_, s := restoredSpace(t, "resnet8_bn.onnx", trainSet)
	s.Pow2Scales = true
	res, err := s.Resolve(mixedArch(s, rand.New(rand.NewPCG(2, 5))))
	if err != nil {
		t.Fatal(err)
	}
	g, _, err := search.Quantize(res, trainSet, search.QuantizeConfig{Epochs: 0, CalibBatches: 4, Batch: 64, Norm: fixtureNorm})
	if err != nil {
		t.Fatal(err)
	}
	scales := func(g *graph.Graph) map[string][]float32 {
		m, err := export.Freeze(g.Clone(), res)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]float32{}
		for _, n := range m.Graph.Nodes {
			if n.Op == "DequantizeLinear" && m.Graph.Consts[n.Input(0)] != nil {
				out[n.Input(0)] = m.Graph.Consts[n.Input(1)].F // a weight's
			}
		}
		return out
	}
	before := scales(g)
	r := rand.New(rand.NewPCG(7, 8))
	moved := 0
	for _, n := range g.Nodes {
		if n.Op != supernet.OpQuantWeight || len(n.Inputs) != 4 {
			continue
		}
		moved++
		for i, v := range g.Consts[n.Inputs[2]].F {
			g.Consts[n.Inputs[2]].F[i] = v * float32(math.Exp(r.Float64()*2.3-1.2))
		}
	}
	if moved == 0 {
		t.Fatal("no weight quantizer reads a BatchNorm's statistics")
	}
	after := scales(g)
	if len(before) == 0 || len(after) != len(before) {
		t.Fatalf("weight scales of %d layers before, %d after", len(before), len(after))
	}
	held, followed := 0, 0
	for _, n := range g.Nodes {
		if n.Op != supernet.OpQuantWeight || len(n.Inputs) != 4 {
			continue
		}
		name := n.Inputs[0] + "_quantized"
		b, a := before[name], after[name]
		if b == nil || len(a) != len(b) {
			t.Fatalf("%s: exported scales %v before, %v after", n.Name, b, a)
		}
		bits, _ := n.Ints("bits", nil)
		eps, _ := n.Float("epsilon", 1e-5)
		w := g.Consts[n.Inputs[0]].F
		per := len(w) / len(b)
		for c := range b {
			if bits[c] <= quant.Pow2HeldBits {
				held++
				if a[c] != b[c] {
					t.Errorf("%s, filter %d (%d bits): the exported scale moved with the statistics: %g, then %g", n.Name, c, bits[c], b[c], a[c])
				}
				continue
			}
			f, _ := quant.FoldBN(g.Consts[n.Inputs[1]].F[c], 0, 0, g.Consts[n.Inputs[2]].F[c], 0, float32(eps))
			_, want, _ := quant.Pow2WeightScales(quant.MaxAbs(w[c*per:(c+1)*per]), int(bits[c]), f, f)
			if a[c] != want {
				t.Errorf("%s, filter %d (%d bits): exported scale %g after the statistics moved, want the power nearest the folded grid, %g", n.Name, c, bits[c], a[c], want)
			}
			if a[c] != b[c] {
				followed++
			}
		}
	}
	if held == 0 || followed == 0 {
		t.Fatalf("%d filters held their power of two, %d of more bits moved to another: the test needs both", held, followed)
	}
	// Training and export still round every weight to the same integers: the quantizer's
	// output times the BatchNorm factor is the exported integers times their scale.
	m, err := export.Freeze(g.Clone(), res)
	if err != nil {
		t.Fatal(err)
	}
	keep := map[string]bool{}
	for _, n := range g.Nodes {
		if n.Op == supernet.OpQuantWeight {
			keep[n.Outputs[0]] = true
		}
	}
	p, err := engine.Compile(g, 1, engine.Options{Inference: true, Keep: keep})
	if err != nil {
		t.Fatal(err)
	}
	p.Forward(false)
	for _, n := range g.Nodes {
		if n.Op != supernet.OpQuantWeight || len(n.Inputs) != 4 {
			continue
		}
		ints, sc := m.Graph.Consts[n.Inputs[0]+"_quantized"], m.Graph.Consts[n.Inputs[0]+"_scale"]
		if ints == nil || sc == nil {
			t.Fatalf("%s: no exported weight %s_quantized", n.Name, n.Inputs[0])
		}
		eps, _ := n.Float("epsilon", 1e-5)
		wq := p.Value(n.Outputs[0]).Data
		per := len(wq) / len(sc.F)
		for i, v := range wq {
			c := i / per
			a, _ := quant.FoldBN(g.Consts[n.Inputs[1]].F[c], 0, 0, g.Consts[n.Inputs[2]].F[c], 0, float32(eps))
			if want := float64(ints.I[i]) * float64(sc.F[c]); math.Abs(float64(v)*a-want) > 1e-6*math.Abs(want) {
				t.Fatalf("%s, filter %d: trained %g × a %g, exported %d × %g", n.Name, c, v, a, ints.I[i], sc.F[c])
			}
		}
	}
	// The last fine-tuning epoch folds those BatchNorms into the convs and trains the folded
	// weights, each filter on the power of two nearest its folded weight's grid, as export
	// chooses it for a conv without a BatchNorm: whatever powers the factors chose before.
	tg, _, err := supernet.TrainAsExported(g)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := engine.Compile(tg, 1, engine.Options{Inference: true, Keep: keep})
	if err != nil {
		t.Fatal(err)
	}
	tp.Forward(false)
	withBN := map[string]bool{}
	for _, n := range g.Nodes {
		if n.Op == supernet.OpQuantWeight && len(n.Inputs) == 4 {
			withBN[n.Name] = true
		}
	}
	folded := 0
	for _, n := range tg.Nodes {
		if n.Op != supernet.OpQuantWeight || !withBN[n.Name] {
			continue
		}
		if len(n.Inputs) != 1 {
			t.Fatalf("%s: the folded weight's quantizer reads %v, want the weight alone", n.Name, n.Inputs)
		}
		bits, err := n.Ints("bits", nil)
		if err != nil {
			t.Fatal(err)
		}
		w, wq := tg.Consts[n.Inputs[0]].F, tp.Value(n.Outputs[0]).Data
		per := len(w) / len(bits)
		for c, b := range bits {
			wc := w[c*per : (c+1)*per]
			_, sc, ok := quant.Pow2WeightScales(quant.MaxAbs(wc), int(b), 1, 1)
			if !ok {
				t.Fatalf("%s, filter %d: no power-of-two scale for %d bits", n.Name, c, b)
			}
			top := float64(quant.WeightMax(int(b)))
			for i, v := range wc {
				want := math.Max(-top, math.Min(top, math.RoundToEven(float64(v)/float64(sc)))) * float64(sc)
				if got := float64(wq[c*per+i]); got != want {
					t.Fatalf("%s, filter %d: folded weight %g quantized to %g, want %g on the grid of %g", n.Name, c, v, got, want, sc)
				}
			}
		}
		folded++
	}
	if folded == 0 {
		t.Fatal("no folded weight compared")
	}
	// The factors are training state: checkpoints hold them, so a run resumed before the
	// last epoch quantizes on the grids of the run it continues (the last epoch's powers
	// follow from its weights alone).
	tr, err := engine.Compile(g, 2, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range g.Nodes {
		if n.Op == supernet.OpQuantWeight && len(n.Inputs) == 4 {
			if v := tr.Value(n.Inputs[3]); v.Kind != engine.State {
				t.Errorf("%s: factors %s are of kind %v, not state", n.Name, v.Name, v.Kind)
			}
		}
	}
}
