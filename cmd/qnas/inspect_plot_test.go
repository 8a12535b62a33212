package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qnas/qnas/internal/figure"
)

// inspect --plot draws exactly the bits inspect lists: of a model qnas wrote, and of an
// architecture (grouped bits, pruned filters, a float layer) on the input model.
func TestInspectPlotDrawsTheListedBits(t *testing.T) {
	dir := t.TempDir()
	model := copyModel(t, dir)
	arch := filepath.Join(dir, "mixed.json")
	os.WriteFile(arch, []byte(`{"format": "qnas.arch/1", "default": {"wbits": 4, "abits": 4}, "layers": {
		"/conv1/Conv": {"wbits": 8, "abits": 8},
		"/layer1/layer1.0/conv1/Conv": {"wbits": [2, 4, 8, 4], "abits": 3, "keep": 12},
		"/fc/Gemm": {"wbits": 32, "abits": 32}}}`), 0o644)

	// The architecture: inspect --arch --json lists the layers the bit map must show.
	png := filepath.Join(dir, "arch.png")
	status, out, stderr := runCLI(t, "inspect", model, "--arch", arch, "--json", "--plot", png)
	if status != 0 {
		t.Fatal(stderr)
	}
	var s archSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("--json with --plot must print JSON alone: %v", err)
	}
	want := figure.BitMap{Title: fmt.Sprintf("model.onnx under mixed.json: cost ratio %.4f", s.CostRatio)}
	for _, l := range s.Layers {
		want.Layers = append(want.Layers, figure.Layer{Name: l.Name, WBits: l.WBits, ABits: l.ABits, Filters: l.Filters, KeptFilters: l.KeptFilters})
	}
	if l := want.Layers[1]; l.KeptFilters != 12 || l.Filters != 16 {
		t.Fatalf("layer1.0/conv1 keeps %d of %d filters, want 12 of 16", l.KeptFilters, l.Filters)
	}
	checkSamePNG(t, png, want)

	// A model qnas wrote: its own bits, read from the file.
	q := filepath.Join(dir, "q.onnx")
	if status, _, stderr := runCLI(t, quantizeArgs(model, q, "--arch", arch)...); status != 0 {
		t.Fatal(stderr)
	}
	png = filepath.Join(dir, "q.png")
	status, out, stderr = runCLI(t, "inspect", q, "--plot", png)
	if status != 0 || !strings.HasSuffix(out, "wrote "+png+": bit map of 10 layers\n") {
		t.Fatalf("inspect --plot: %d %s\n%s", status, stderr, out)
	}
	status, out, _ = runCLI(t, "inspect", q, "--json")
	var sum inspectSummary
	if status != 0 || json.Unmarshal([]byte(out), &sum) != nil {
		t.Fatal("inspect --json of the written model")
	}
	wq := figure.BitMap{Title: "q.onnx"}
	for _, l := range sum.Layers {
		if l.WBits != nil {
			wq.Layers = append(wq.Layers, figure.Layer{Name: l.Name, WBits: l.WBits, ABits: l.ABits, Filters: l.Filters, KeptFilters: l.KeptFilters})
		}
	}
	if len(wq.Layers) != 10 || wq.Layers[1].KeptFilters != 12 || wq.Layers[9].WBits[0] != 32 {
		t.Errorf("the written model's layers: %+v", wq.Layers)
	}
	checkSamePNG(t, png, wq)
	if status, _, stderr := runCLI(t, "inspect", q, "--plot", filepath.Join(dir, "q.svg")); status != 0 {
		t.Error(stderr)
	} else if b, _ := os.ReadFile(filepath.Join(dir, "q.svg")); !bytes.HasPrefix(b, []byte("<?xml")) || !bytes.Contains(b, []byte("<svg")) {
		t.Error("q.svg is not SVG")
	}

	// Nothing to draw, or nowhere to draw it: one line, exit 2, no file.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect", model, "--plot", filepath.Join(dir, "x.png")}, "was not written by qnas"},
		{[]string{"inspect", q, "--plot", filepath.Join(dir, "x.jpg")}, "x.jpg: a figure is written as .svg or .png"},
		{[]string{"inspect", model, "--supernet", "-o", filepath.Join(dir, "s.onnx"), "--plot", filepath.Join(dir, "x.png")}, "--supernet"},
	} {
		status, _, stderr := runCLI(t, c.args...)
		expectFailure(t, status, stderr, 2, "--plot", c.want)
	}
	for _, f := range []string{"x.png", "x.jpg", "s.onnx"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("a refused inspect wrote %s", f)
		}
	}
}

func checkSamePNG(t *testing.T, path string, want figure.BitMap) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := want.Encode("png")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Errorf("%s is not the bit map of the layers inspect lists", path)
	}
}
