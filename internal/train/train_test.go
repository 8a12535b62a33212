package train

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/testenv"
)

var fmnistNorm = data.Normalize{Mean: []float32{0.2860}, Std: []float32{0.3530}}

func load(t *testing.T, name string) *graph.Graph {
	t.Helper()
	g, err := graph.Load(testenv.Path("testdata", "models", name), graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Canonicalize(graph.CanonicalOptions{}); err != nil {
		t.Fatal(err)
	}
	return g
}

// With its classifier zeroed, a fixture starts at chance (loss ln 10); one epoch on the
// embedded subset brings the loss down and the accuracy up.
func TestTrainingLowersLoss(t *testing.T) {
	g := load(t, "resnet8_bn.onnx")
	for _, n := range g.Nodes {
		if n.Op == "Gemm" {
			clear(g.Consts[n.Inputs[1]].F)
			clear(g.Consts[n.Inputs[2]].F)
		}
	}
	train, err := data.Embedded(data.Train)
	if err != nil {
		t.Fatal(err)
	}
	test, err := data.Embedded(data.Test)
	if err != nil {
		t.Fatal(err)
	}
	before, err := Evaluate(g, test, fmnistNorm, 250, nil)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(before.Loss-math.Log(10)) > 1e-4 {
		t.Fatalf("zeroed classifier: loss %.4f, want ln 10", before.Loss)
	}
	stats, err := Train(g, data.Subset(train, 2048), Config{Epochs: 1, Batch: 64, LR: 0.05, Momentum: 0.9, Seed: 1, Norm: fmnistNorm})
	if err != nil {
		t.Fatal(err)
	}
	after, err := Evaluate(g, test, fmnistNorm, 250, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("train loss %.3f; test loss %.3f → %.3f, accuracy %.1f%% → %.1f%%", stats[0].Loss, before.Loss, after.Loss, 100*before.Accuracy, 100*after.Accuracy)
	if after.Loss > 0.8 || after.Accuracy < 0.7 {
		t.Errorf("after one epoch: loss %.3f, accuracy %.3f", after.Loss, after.Accuracy)
	}
}

func TestDataMismatchIsAnError(t *testing.T) {
	g := load(t, "resnet8.onnx")
	d := &data.Dataset{N: 2, C: 3, H: 32, W: 32, Classes: 10, Pixels: make([]uint8, 2*3*32*32), Labels: []int32{0, 1}, Source: "cifar"}
	if _, err := Evaluate(g, d, data.Normalize{}, 2, nil); err == nil {
		t.Fatal("3×32×32 data accepted by a 1×28×28 model")
	}
}

// DivergedSummary says what diverged, for a caller that records it instead of stopping
// (optimize's baselines), without the advice and the state of the files meant for a user
// whose run stopped; other errors give "".
func TestDivergedSummary(t *testing.T) {
	d := &DivergedError{What: "training", Epoch: 2, Step: 7, Start: 0.4, Now: math.NaN(), LR: 5, Hint: "lower --lr", Checkpoint: "x.ckpt"}
	a := &AccuracyDropError{PTQ: 0.9, Now: 0.1, LR: 5, Hint: "lower --lr"}
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("seed 4: %w", d), "epoch 2 step 7: the training loss became NaN: the run diverged at learning rate 5"},
		{a, "fine-tuning lowered the test accuracy from 90.00% (after calibration alone) to 10.00%: the run diverged at learning rate 5"},
		{errors.New("disk full"), ""},
		{nil, ""},
	} {
		if got := DivergedSummary(c.err); got != c.want {
			t.Errorf("DivergedSummary(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	if !strings.HasSuffix(d.Error(), "; lower --lr; nothing was written, the last good state is in x.ckpt") {
		t.Errorf("Error() = %q", d.Error())
	}
}

// Evaluation keeps the fixtures' batch of 256 at 28×28 and shrinks it for a MobileNetV2 at
// 224×224, whose plan at 256 would take several GiB, to one that fits in EvalMemory.
func TestEvalBatchFollowsMemory(t *testing.T) {
	g := load(t, "mbv2_bn.onnx")
	if b, err := evalBatch(g, 256); err != nil || b != 256 {
		t.Fatalf("28×28: evaluation batch %d (%v), want 256", b, err)
	}
	s := g.Shapes[g.Inputs[0]]
	g.Shapes[g.Inputs[0]] = graph.Shape{s[0], s[1], 224, 224}
	if err := g.InferShapes(); err != nil {
		t.Fatal(err)
	}
	b, err := evalBatch(g, 256)
	if err != nil {
		t.Fatal(err)
	}
	p, err := engine.Compile(g, b, engine.Options{Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("224×224: batch %d, %d MiB", b, p.Bytes()>>20)
	if b < 2 || b >= 256 || p.Bytes() > EvalMemory*5/4 {
		t.Errorf("224×224: batch %d takes %d bytes; want a batch between 2 and 255 within about %d", b, p.Bytes(), EvalMemory)
	}
}
