package engine_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/ortrun"
	"github.com/qnas/qnas/internal/testenv"
)

// fixtureModels lists the shipped fixture models (all but the error-path one).
func fixtureModels(t *testing.T) []string {
	t.Helper()
	all, _ := filepath.Glob(testenv.Path("testdata", "models", "*.onnx"))
	var out []string
	for _, m := range all {
		if !strings.Contains(filepath.Base(m), "unsupported") {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		t.Fatal("no fixture models under testdata/models")
	}
	// QNAS_EXTRA_MODELS names a folder of further models to check, such as the
	// torchvision exports of scripts/import_coverage.sh (not in CI, which has no
	// torchvision).
	if dir := os.Getenv("QNAS_EXTRA_MODELS"); dir != "" {
		extra, _ := filepath.Glob(filepath.Join(dir, "*.onnx"))
		if len(extra) == 0 {
			t.Fatalf("QNAS_EXTRA_MODELS=%s holds no .onnx files", dir)
		}
		out = append(out, extra...)
	}
	return out
}

func loadCanonical(t testing.TB, path string, foldBN bool) *graph.Graph {
	t.Helper()
	g, err := graph.Load(path, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Canonicalize(graph.CanonicalOptions{FoldBN: foldBN}); err != nil {
		t.Fatal(err)
	}
	return g
}

// The float forward pass of every fixture (and of the models in QNAS_EXTRA_MODELS, whose
// random weights give logits of any magnitude) equals ONNX Runtime's within 1e-5 of the
// largest logit (ortrun.RelDiff), with BatchNorm kept and folded.
func TestFixturesMatchONNXRuntime(t *testing.T) {
	ortrun.RequireORT(t)
	for _, path := range fixtureModels(t) {
		batch := 16
		extra := os.Getenv("QNAS_EXTRA_MODELS") != "" && !strings.HasPrefix(path, testenv.Path("testdata"))
		if extra {
			batch = 2 // ImageNet-sized
		}
		for _, fold := range []bool{false, true} {
			g := loadCanonical(t, path, fold)
			p, err := engine.Compile(g, batch, engine.Options{Inference: true})
			if err != nil {
				t.Fatal(err)
			}
			in := p.Value(g.Inputs[0])
			r := rand.New(rand.NewPCG(11, 12))
			for i := range in.Data {
				in.Data[i] = float32(r.NormFloat64())
			}
			p.Forward(false)
			shape := make([]int64, len(in.Shape))
			for i, d := range in.Shape {
				shape[i] = int64(d)
			}
			out, err := ortrun.Run(path, map[string]ortrun.Tensor{g.Inputs[0]: {Shape: shape, Data: in.Data}}, g.Outputs, ortrun.Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, want := p.Value(g.Outputs[0]).Data, out[g.Outputs[0]].Data
			if len(got) != len(want) {
				t.Fatalf("%s: %d logits, ONNX Runtime %d", path, len(got), len(want))
			}
			rel := ortrun.RelDiff(got, want)
			t.Logf("%s (fold BN %v): max |qnas − ORT| relative to the largest logit %.2g", filepath.Base(path), fold, rel)
			if rel > 1e-5 {
				t.Errorf("%s (fold BN %v): logits differ from ONNX Runtime by %.3g of the largest logit", filepath.Base(path), fold, rel)
			}
		}
	}
}
