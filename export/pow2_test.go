package export_test

import (
	"math"
	"testing"

	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/internal/ortrun"
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
