package main

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/testenv"
)

// inspect --json gives exactly the MACs and parameter counts the fixture generator counted
// in PyTorch (forward hooks), per layer and in total.
func TestInspectMatchesGenerator(t *testing.T) {
	fx, err := testenv.Fixtures()
	if err != nil {
		t.Fatal(err)
	}
	if len(fx) < 4 {
		t.Errorf("fixtures.json lists %d models, want at least 4", len(fx))
	}
	for file, f := range fx {
		status, out, stderr := runCLI(t, "inspect", "--json", testenv.Path("testdata", "models", file))
		if status != 0 {
			t.Errorf("%s: %s", file, stderr)
			continue
		}
		var s graph.Summary
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatal(err)
		}
		if s.MACs != f.MACs {
			t.Errorf("%s: %d MACs, generator counted %d", file, s.MACs, f.MACs)
		}
		var convGemm, bn int64
		byName := map[string]graph.LayerSummary{}
		for _, l := range s.Layers {
			byName[l.Name] = l
			switch l.Op {
			case "BatchNormalization":
				bn += l.Params
			case "LayerNormalization":
				// The generator does not count these: in the opset-13 file a LayerNorm's
				// scale and shift are the constants of a Mul and an Add.
			default:
				convGemm += l.Params
			}
		}
		if convGemm != f.Params || bn != f.BNParams {
			t.Errorf("%s: params %d + BN %d, generator %d + %d", file, convGemm, bn, f.Params, f.BNParams)
		}
		for _, gl := range f.Layers {
			l, ok := byName[gl.ONNXNode]
			if !ok {
				t.Errorf("%s: no layer %q (module %s)", file, gl.ONNXNode, gl.Module)
				continue
			}
			if l.MACs != gl.MACs || !slices.Equal(l.OutputShape, gl.OutputShape) || l.Params != gl.Params {
				t.Errorf("%s: layer %s: %d MACs %v %d params; generator %d %v %d", file, gl.ONNXNode,
					l.MACs, l.OutputShape, l.Params, gl.MACs, gl.OutputShape, gl.Params)
			}
		}
	}
}

// qnas eval on the full Fashion-MNIST test set reproduces the accuracy the generator
// measured in PyTorch, within 0.05 percentage points.
func TestEvalReproducesFixtureAccuracy(t *testing.T) {
	dir := testenv.Require(t, testenv.FashionMNISTDir, "apt dataset-fashion-mnist")
	fx, err := testenv.Fixtures()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for file, f := range fx {
		if !f.IsAccuracyFixture {
			continue
		}
		n++
		status, out, stderr := runCLI(t, "eval", testenv.Path("testdata", "models", file), "--data", dir,
			"--mean", joinFloats(f.Mean), "--std", joinFloats(f.Std), "--json")
		if status != 0 {
			t.Errorf("%s: %s", file, stderr)
			continue
		}
		var res struct {
			Accuracy float64 `json:"accuracy"`
			Samples  int     `json:"samples"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: qnas %.2f%%, PyTorch %.2f%% on %d images", file, 100*res.Accuracy, 100*f.Accuracy, res.Samples)
		if res.Samples != f.Samples || abs(res.Accuracy-f.Accuracy) > 0.0005 {
			t.Errorf("%s: accuracy %.4f on %d samples, generator %.4f on %d", file, res.Accuracy, res.Samples, f.Accuracy, f.Samples)
		}
	}
	if n == 0 {
		t.Error("no accuracy fixtures")
	}
}

func abs(x float64) float64 { return max(x, -x) }
