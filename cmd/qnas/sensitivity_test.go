package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// optimize --method sensitivity, on ResNet-8 with its BatchNorms and on its folded twin:
// the model lands in [0.98, 1] × budget, the report names the method and its phases (no
// search's), the estimate read the images asked for, no checkpoint is left, and one seed
// writes the same bytes twice.
func TestOptimizeSensitivity(t *testing.T) {
	for _, fixture := range []string{"resnet8_bn.onnx", "resnet8.onnx"} {
		t.Run(fixture, func(t *testing.T) {
			dir := t.TempDir()
			model := copyFixture(t, dir, fixture)
			out := filepath.Join(dir, "o.onnx")
			report := filepath.Join(dir, "report.json")
			args := func(out string, extra ...string) []string {
				return optimizeArgs(model, out, append([]string{"--method", "sensitivity", "--sensitivity-images", "256", "--limit-train", "2048"}, extra...)...)
			}
			status, _, stderr := runCLI(t, args(out, "--report", report)...)
			if status != 0 {
				t.Fatalf("optimize --method sensitivity: %s", stderr)
			}
			var rep struct {
				Method       string  `json:"method"`
				CostRatio    float64 `json:"cost_ratio"`
				Accuracy     float64 `json:"accuracy"`
				SearchEpochs int     `json:"search_epochs"`
				Phases       []struct {
					Name string `json:"name"`
				} `json:"phases"`
				Sensitivity *struct {
					Images int `json:"images"`
					Layers []struct {
						Name      string    `json:"name"`
						WBitsLoss []float64 `json:"wbits_loss"`
					} `json:"layers"`
				} `json:"sensitivity"`
			}
			b, _ := os.ReadFile(report)
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Method != "sensitivity" || rep.SearchEpochs != 0 {
				t.Errorf("method %q, search epochs %d", rep.Method, rep.SearchEpochs)
			}
			if rep.CostRatio > 0.25 || rep.CostRatio < 0.98*0.25 {
				t.Errorf("cost ratio %.4f for a budget of 0.25", rep.CostRatio)
			}
			if rep.Accuracy < 0.5 {
				t.Errorf("accuracy %.3f", rep.Accuracy)
			}
			names := map[string]bool{}
			for _, p := range rep.Phases {
				names[p.Name] = true
			}
			for _, n := range []string{"calibrate", "sensitivity", "derive", "fine-tune", "export"} {
				if !names[n] {
					t.Errorf("no phase %q in %v", n, rep.Phases)
				}
			}
			for _, n := range []string{"warm-up", "search"} {
				if names[n] {
					t.Errorf("phase %q in a run that does not search", n)
				}
			}
			if s := rep.Sensitivity; s == nil || s.Images != 256 || len(s.Layers) == 0 {
				t.Fatalf("sensitivity report %+v", s)
			}
			// The first layer's weights at 2 bits cost the loss more than at 6.
			if l := rep.Sensitivity.Layers[0].WBitsLoss; len(l) != 5 || !(l[0] > l[3] && l[3] > 0 && l[4] == 0) {
				t.Errorf("%s: estimated increases %v over 2,3,4,6,8 bits", rep.Sensitivity.Layers[0].Name, l)
			}
			for _, f := range []string{out + ".ckpt", out + ".search.ckpt"} {
				if _, err := os.Stat(f); err == nil {
					t.Errorf("%s left behind", f)
				}
			}
			if fixture != "resnet8_bn.onnx" {
				return
			}
			out2 := filepath.Join(dir, "o2.onnx")
			if status, _, stderr := runCLI(t, args(out2)...); status != 0 {
				t.Fatal(stderr)
			}
			b1, _ := os.ReadFile(out)
			b2, _ := os.ReadFile(out2)
			if !bytes.Equal(b1, b2) {
				t.Error("two runs with one seed wrote different models")
			}
		})
	}
}

// With --prune the estimate prices the widths too: the model lands in the budget with
// filters removed, and the report lists every group's estimated increase per width.
func TestOptimizeSensitivityPrune(t *testing.T) {
	dir := t.TempDir()
	model := copyModel(t, dir)
	out, report := filepath.Join(dir, "o.onnx"), filepath.Join(dir, "report.json")
	status, _, stderr := runCLI(t, optimizeArgs(model, out, "--method", "sensitivity", "--sensitivity-images", "256", "--prune",
		"--wbits", "8", "--abits", "8", "--budget", "0.5", "--ft-epochs", "0", "--report", report)...)
	if status != 0 {
		t.Fatal(stderr)
	}
	var rep struct {
		CostRatio float64 `json:"cost_ratio"`
		Layers    []struct {
			Filters     int `json:"filters"`
			KeptFilters int `json:"kept_filters"`
		} `json:"layers"`
		Sensitivity struct {
			Groups []struct {
				Widths     []float64 `json:"widths"`
				WidthsLoss []float64 `json:"widths_loss"`
			} `json:"groups"`
		} `json:"sensitivity"`
	}
	b, _ := os.ReadFile(report)
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.CostRatio > 0.5 || rep.CostRatio < 0.98*0.5 {
		t.Errorf("cost ratio %.4f for a budget of 0.5", rep.CostRatio)
	}
	pruned := 0
	for _, l := range rep.Layers {
		pruned += l.Filters - l.KeptFilters
	}
	if pruned == 0 {
		t.Error("nothing pruned")
	}
	if len(rep.Sensitivity.Groups) == 0 {
		t.Fatal("no group in the sensitivity report")
	}
	for _, g := range rep.Sensitivity.Groups {
		if l := g.WidthsLoss; len(l) != len(g.Widths) || !(l[0] > 0) || l[len(l)-1] != 0 {
			t.Errorf("widths %v: estimated increases %v", g.Widths, l)
		}
	}
}
