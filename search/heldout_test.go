package search

import (
	"math"
	"testing"

	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/supernet"
)

// HeldOut evaluates on the search's held-out share of the training data, the same samples
// its architecture steps read, and ranks architectures as their accuracy does: w8a8 keeps
// the float model's accuracy there, w2a2 loses more.
func TestHeldOutRanksArchitectures(t *testing.T) {
	trainSet, norm := embedded(t, data.Train)
	g := loadFixture(t, "resnet8_bn.onnx")
	s, err := supernet.NewSpace(g)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultSearchConfig(supernet.BOPs(), supernet.Budget{})
	cfg.Batch, cfg.CalibBatches, cfg.Norm, cfg.Seed = 128, 4, norm, 7
	_, held, err := data.Holdout(trainSet, cfg.HoldOut, cfg.Seed)
	if err != nil {
		t.Fatal(err)
	}
	fl, err := train.Evaluate(g, held, norm, 250, nil)
	if err != nil {
		t.Fatal(err)
	}
	eval := func(w, a int) train.Eval {
		r, err := s.Resolve(&supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{w}, ABits: a}})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := HeldOut(r, trainSet, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	w8, w2 := eval(8, 8), eval(2, 2)
	if want := int(math.Round(cfg.HoldOut * float64(trainSet.N))); w8.Samples != want || w8.Samples != held.N {
		t.Errorf("evaluated %d samples; the search holds out %d", w8.Samples, want)
	}
	if w8.Accuracy < fl.Accuracy-0.02 {
		t.Errorf("w8a8 %.3f on the held-out data, float %.3f", w8.Accuracy, fl.Accuracy)
	}
	if !(w2.Loss > w8.Loss) || w2.Accuracy >= w8.Accuracy {
		t.Errorf("w2a2 loss %.4f accuracy %.3f, w8a8 loss %.4f accuracy %.3f", w2.Loss, w2.Accuracy, w8.Loss, w8.Accuracy)
	}
}
