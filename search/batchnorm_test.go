package search

import (
	"math"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/testenv"
)

func loadFixture(t *testing.T, name string) *graph.Graph {
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

func embedded(t *testing.T, split data.Split) (*data.Dataset, data.Normalize) {
	t.Helper()
	d, err := data.Embedded(split)
	if err != nil {
		t.Fatal(err)
	}
	norm, err := data.ParseNormalize("0.2860", "0.3530")
	if err != nil {
		t.Fatal(err)
	}
	return d, norm
}

// logits runs g on the first n test images, in training (batch statistics) or inference mode.
func logits(t *testing.T, g *graph.Graph, d *data.Dataset, norm data.Normalize, n int, train bool) []float32 {
	t.Helper()
	p, err := engine.Compile(g, n, engine.Options{Inference: !train})
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	d.Batch(idx, norm, nil, nil, p.Value(g.Inputs[0]).Data, nil)
	p.SetStatsMomentum(0) // training mode must not move the running statistics here
	p.Forward(train)
	return append([]float32(nil), p.Value(g.Outputs[0]).Data...)
}

// maxRelDiff is max|a−b| relative to the largest |a|.
func maxRelDiff(a, b []float32) float64 {
	var d, m float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
		m = max(m, math.Abs(float64(a[i])))
	}
	return d / m
}

// A folded model gets one BatchNorm per convolution and computes the same logits before
// any training step; a model with its BatchNorms is left alone.
func TestRestoreBatchNorm(t *testing.T) {
	trainSet, norm := embedded(t, data.Train)
	testSet, _ := embedded(t, data.Test)
	for _, c := range []struct {
		model string
		convs int
	}{{"resnet8.onnx", 9}, {"mbv2.onnx", 19}, {"resnet20.onnx", 21}, {"resnet8_bn.onnx", 0}} {
		t.Run(c.model, func(t *testing.T) {
			g := loadFixture(t, c.model)
			want := len(g.UnnormalizedConvs())
			if want != c.convs {
				t.Fatalf("%d convolutions without BatchNorm, want %d", want, c.convs)
			}
			rg, added, err := RestoreBatchNorm(g, trainSet, norm, 4, 128, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(added) != want {
				t.Fatalf("added %d BatchNorms for %d convolutions", len(added), want)
			}
			if want == 0 {
				if rg != g {
					t.Fatal("a model with its BatchNorms was copied")
				}
				return
			}
			if n := len(rg.UnnormalizedConvs()); n != 0 {
				t.Fatalf("%d convolutions still without BatchNorm", n)
			}
			ref := logits(t, g, testSet, norm, 200, false)
			if d := maxRelDiff(ref, logits(t, rg, testSet, norm, 200, false)); d > 1e-5 {
				t.Errorf("inference logits moved by %.2g relative", d)
			}
			// In training mode the batch's statistics stand in for the calibration's: the
			// function moves a little, not a lot.
			if d := maxRelDiff(ref, logits(t, rg, testSet, norm, 200, true)); d > 0.2 {
				t.Errorf("training-mode logits moved by %.2g relative", d)
			}
			// Folding the restored BatchNorms back gives the input's graph size and function.
			fg := rg.Clone()
			if err := fg.FoldBatchNorm(); err != nil {
				t.Fatal(err)
			}
			if len(fg.Nodes) != len(g.Nodes) {
				t.Errorf("folded back: %d nodes, the input %d", len(fg.Nodes), len(g.Nodes))
			}
			if d := maxRelDiff(ref, logits(t, fg, testSet, norm, 200, false)); d > 1e-5 {
				t.Errorf("folded back, logits moved by %.2g relative", d)
			}
		})
	}
}

// A folded export and its BatchNorm-kept twin are put in one training form: the same nodes
// with the same parameters, to float rounding, and each still computes what its input
// computes.
func TestTrainingFormSameForBothExports(t *testing.T) {
	trainSet, norm := embedded(t, data.Train)
	testSet, _ := embedded(t, data.Test)
	for _, m := range []string{"resnet8", "mbv2", "resnet20"} {
		t.Run(m, func(t *testing.T) {
			var forms [2]*graph.Graph
			for i, file := range []string{m + ".onnx", m + "_bn.onnx"} {
				g := loadFixture(t, file)
				fg, added, err := TrainingForm(g, trainSet, norm, 4, 128, nil)
				if err != nil {
					t.Fatal(err)
				}
				own := 0 // the input's BatchNorms (all after convs in these fixtures)
				for _, n := range g.Nodes {
					if n.Op == "BatchNormalization" {
						own++
					}
				}
				if convs := len(g.UnnormalizedConvs()) + own; convs == 0 || len(added) != convs || (i == 0) != (own == 0) {
					t.Fatalf("%s: %d BatchNorms after convs; %d convs without one and %d of its own before", file, len(added), len(g.UnnormalizedConvs()), own)
				}
				if d := maxRelDiff(logits(t, g, testSet, norm, 100, false), logits(t, fg, testSet, norm, 100, false)); d > 1e-5 {
					t.Errorf("%s: inference logits moved by %.2g relative", file, d)
				}
				forms[i] = fg
			}
			folded, kept := forms[0], forms[1]
			byName := map[string]*graph.Node{}
			for _, n := range kept.Nodes {
				byName[n.Name] = n
			}
			if len(folded.Nodes) != len(kept.Nodes) {
				t.Fatalf("%d nodes from the folded export, %d from the kept one", len(folded.Nodes), len(kept.Nodes))
			}
			for _, n := range folded.Nodes {
				k := byName[n.Name]
				if k == nil || k.Op != n.Op || len(k.Inputs) != len(n.Inputs) {
					t.Fatalf("node %q (%s) has no twin in the kept export's form", n.Name, n.Op)
				}
				for i := range n.Inputs {
					a, b := folded.Consts[n.Input(i)], kept.Consts[k.Input(i)]
					if (a == nil) != (b == nil) {
						t.Fatalf("node %q input %d: constant in one form only", n.Name, i)
					}
					if a == nil || a.DType != graph.Float32 {
						continue
					}
					if d := maxRelDiff(a.F, b.F); len(a.F) != len(b.F) || d > 1e-4 {
						t.Errorf("node %q input %d (%s, %s): differs by %.2g relative", n.Name, i, n.Input(i), k.Input(i), d)
					}
				}
			}
		})
	}
}
