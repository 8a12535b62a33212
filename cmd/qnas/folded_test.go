package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/testenv"
)

// copyFixture copies testdata/models/name into dir as model.onnx.
func copyFixture(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(testenv.Path("testdata", "models", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readReport returns a JSON report's accuracy and ptq_accuracy.
func readReport(t *testing.T, path string) (acc, ptq float64) {
	t.Helper()
	var rep struct {
		Accuracy    float64 `json:"accuracy"`
		PTQAccuracy float64 `json:"ptq_accuracy"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep.Accuracy, rep.PTQAccuracy
}

// A model exported with its BatchNorms folded (PyTorch's default) fine-tunes and searches
// like one exported with them: on the folded ResNet-20, quantize (one QAT epoch) and
// optimize (one search epoch, post-training quantization of the result) reach the
// accuracy of a quantized model instead of chance (23 % and 8 % before BatchNorm was
// restored for training), with pruning too, and their outputs hold no BatchNormalization.
func TestFoldedModelsFineTune(t *testing.T) {
	common := []string{"--data", "embedded", "--limit-test", "200", "--calib", "2", "--seed", "1", "--threads", "2",
		"--mean", "0.286", "--std", "0.353"}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"quantize", []string{"quantize", "--wbits", "4", "--abits", "4", "--epochs", "1"}},
		{"optimize", []string{"optimize", "--budget", "0.25", "--limit-train", "2048", "--method", "search", "--search-epochs", "1", "--ft-epochs", "0"}},
		// Pruning: measured width prices, full-width weight steps and the final check's
		// second search all train the folded model too.
		{"optimize-prune", []string{"optimize", "--budget", "0.25", "--prune", "--limit-train", "2048", "--method", "search", "--search-epochs", "1", "--ft-epochs", "0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			model := copyFixture(t, dir, "resnet20.onnx")
			out := filepath.Join(dir, "q.onnx")
			report := filepath.Join(dir, "r.json")
			args := append(append([]string{c.args[0], model}, c.args[1:]...), common...)
			status, _, stderr := runCLI(t, append(args, "-o", out, "--report", report)...)
			if status != 0 {
				t.Fatalf("%s of a folded model: %s", c.name, stderr)
			}
			if !strings.Contains(stderr, "BatchNorm restored") {
				t.Errorf("no note that BatchNorm was restored for training:\n%s", stderr)
			}
			acc, ptq := readReport(t, report)
			t.Logf("%s: post-training %.1f%%, final %.1f%%", c.name, 100*ptq, 100*acc)
			if acc < 0.85 {
				t.Errorf("accuracy %.3f (after calibration alone %.3f)", acc, ptq)
			}
			g, err := graph.Load(out, graph.ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range g.Nodes {
				if n.Op == "BatchNormalization" {
					t.Errorf("the output keeps %s", n.Name)
				}
			}
		})
	}
}

// A learning rate chosen to diverge stops quantize, optimize and train with one line that
// names --lr, exit status 1, and no output.
func TestDivergenceStopsTheRun(t *testing.T) {
	for _, c := range []struct {
		name string
		args func(model, out string) []string
	}{
		{"quantize", func(model, out string) []string {
			return quantizeArgs(model, out, "--wbits", "4", "--abits", "4", "--epochs", "2", "--lr", "5", "--mean", "0.286", "--std", "0.353")
		}},
		{"optimize", func(model, out string) []string { return optimizeArgs(model, out, "--lr", "5") }},
		{"train", func(model, out string) []string {
			return []string{"train", model, "--data", "embedded", "--limit-train", "1024", "--limit-test", "100", "--batch", "32",
				"--lr", "5", "--mean", "0.286", "--std", "0.353", "-o", out}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			model := copyFixture(t, dir, "resnet8.onnx")
			out := filepath.Join(dir, "q.onnx")
			status, stdout, stderr := runCLI(t, c.args(model, out)...)
			if status != 1 {
				t.Fatalf("exit status %d, want 1\nstdout: %s\nstderr: %s", status, stdout, stderr)
			}
			last := lastLine(stderr)
			if !strings.Contains(last, "--lr") || !strings.Contains(last, "diverged") {
				t.Errorf("message: %q", last)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != "model.onnx" {
					t.Errorf("%s was written", e.Name())
				}
			}
		})
	}
}
