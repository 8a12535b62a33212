package main

import (
	"encoding/json"
	"github.com/qnas/qnas"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// decodeJSON decodes the JSON file or output b into v.
func decodeJSON(t *testing.T, what string, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// inspectJSON runs qnas inspect --json on path.
func inspectJSON(t *testing.T, path string, extra ...string) []byte {
	t.Helper()
	status, stdout, stderr := runCLI(t, append([]string{"inspect", path, "--json"}, extra...)...)
	if status != 0 {
		t.Fatalf("inspect %s: %s", filepath.Base(path), stderr)
	}
	return []byte(stdout)
}

// The Inception-style fixture with its concatenated branches pruned (each branch a channel
// group of its own, cut by count or by index): quantize writes a model whose every layer has
// exactly the MACs, parameters and kept filters inspect --arch promised, the layers reading
// the concatenations included, and the report counts every layer and MAC as quantized.
func TestPrunedConcatExportHasPromisedMACs(t *testing.T) {
	dir := t.TempDir()
	model := copyFixture(t, dir, "inception_bn.onnx")
	arch := filepath.Join(dir, "a.json")
	os.WriteFile(arch, []byte(`{"format": "qnas.arch/1", "default": {"wbits": 8, "abits": 8}, "layers": {
		"/inc1/b1/conv/Conv": {"keep": 3}, "/inc1/b2/b2.1/conv/Conv": {"keep": 5, "wbits": 4},
		"/inc1/b3/b3.1/conv/Conv": {"keep": [0, 2, 5, 7]}, "/inc1/b4/b4.1/conv/Conv": {"keep": 1},
		"/inc2/b1/conv/Conv": {"keep": 9}, "/inc2/b3/b3.1/conv/Conv": {"keep": 2},
		"/inc2/b4/b4.1/conv/Conv": {"keep": [1, 3, 6]}}}`), 0o644)
	var promised archSummary
	decodeJSON(t, "inspect --arch", inspectJSON(t, model, "--arch", arch), &promised)
	var full inspectSummary
	decodeJSON(t, "inspect", inspectJSON(t, model), &full)

	out := filepath.Join(dir, "q.onnx")
	report := filepath.Join(dir, "r.json")
	status, stdout, stderr := runCLI(t, quantizeArgs(model, out, "--arch", arch, "--epochs", "0", "--mean", "0.286", "--std", "0.353", "--report", report)...)
	if status != 0 {
		t.Fatalf("quantize: %s", stderr)
	}
	var got inspectSummary
	decodeJSON(t, "inspect of the export", inspectJSON(t, out), &got)
	exported := map[string]inspectLayer{}
	for _, l := range got.Layers {
		exported[l.Name] = l
	}
	pruned := 0
	for _, want := range promised.Layers {
		l, ok := exported[want.Name]
		if !ok {
			t.Errorf("%s: not in the export", want.Name)
			continue
		}
		if l.MACs != want.MACs || l.Params != want.Params || l.KeptFilters != want.KeptFilters {
			t.Errorf("%s: export has %d MACs, %d params, %d filters; inspect --arch promised %d, %d, %d",
				want.Name, l.MACs, l.Params, l.KeptFilters, want.MACs, want.Params, want.KeptFilters)
		}
		if want.KeptFilters < want.Filters {
			pruned++
		}
	}
	if pruned != 7 {
		t.Errorf("%d layers pruned, want the 7 branches the architecture cuts", pruned)
	}
	if got.MACs != promised.MACs || got.MACs >= full.MACs {
		t.Errorf("the export has %d MACs; inspect --arch promised %d (unpruned %d)", got.MACs, promised.MACs, full.MACs)
	}
	// The readers of the concatenations lose the pruned branches' input channels.
	before := map[string]int64{}
	for _, l := range full.Layers {
		before[l.Name] = l.MACs
	}
	for _, reader := range []string{"/reduce/conv/Conv", "/fc/Gemm"} {
		if exported[reader].MACs >= before[reader] {
			t.Errorf("%s reads a pruned concatenation with %d MACs, unpruned %d", reader, exported[reader].MACs, before[reader])
		}
	}
	var rep qnas.QuantizeReport
	b, _ := os.ReadFile(report)
	decodeJSON(t, "report", b, &rep)
	if rep.QuantizedLayers != len(promised.Layers) || rep.FloatLayers != 0 || rep.QuantizedMACs != promised.MACs || rep.FloatMACs != 0 {
		t.Errorf("report: %d quantized, %d float layers, %d quantized, %d float MACs; want all %d layers and %d MACs quantized",
			rep.QuantizedLayers, rep.FloatLayers, rep.QuantizedMACs, rep.FloatMACs, len(promised.Layers), promised.MACs)
	}
	if want := "quantized: 15 of 15 layers"; !strings.Contains(stdout, want) {
		t.Errorf("stdout lacks %q: %q", want, stdout)
	}
}

// quantize --wbits 8 --abits 8 --epochs 0 on the ConvNeXt-style fixture quantizes its
// channels-last MatMul layers like its convolutions: the export carries 8-bit weights and
// inputs on every MatMul, and the report and stdout count every layer and MAC as quantized;
// with one MatMul layer left float by an architecture file, that layer and its MACs are
// counted float.
func TestQuantizeMatMulLayers(t *testing.T) {
	dir := t.TempDir()
	model := copyFixture(t, dir, "cnx.onnx")
	var full inspectSummary
	decodeJSON(t, "inspect", inspectJSON(t, model), &full)
	matmuls := map[string]int64{}
	for _, l := range full.Layers {
		if l.Op == "MatMul" {
			matmuls[l.Name] = l.MACs
		}
	}
	if len(matmuls) != 6 {
		t.Fatalf("%d MatMul layers in the fixture, want 6", len(matmuls))
	}
	run := func(name string, args ...string) (qnas.QuantizeReport, inspectSummary, string) {
		t.Helper()
		out := filepath.Join(dir, name+".onnx")
		report := filepath.Join(dir, name+".report.json")
		args = append(args, "--epochs", "0", "--mean", "0.286", "--std", "0.353", "--report", report)
		status, stdout, stderr := runCLI(t, quantizeArgs(model, out, args...)...)
		if status != 0 {
			t.Fatalf("quantize %s: %s", name, stderr)
		}
		var rep qnas.QuantizeReport
		b, _ := os.ReadFile(report)
		decodeJSON(t, "report", b, &rep)
		var got inspectSummary
		decodeJSON(t, "inspect of the export", inspectJSON(t, out), &got)
		return rep, got, stdout
	}

	rep, got, stdout := run("w8a8", "--wbits", "8", "--abits", "8")
	layers := len(rep.Layers)
	if rep.QuantizedLayers != layers || rep.FloatLayers != 0 || rep.QuantizedMACs != full.MACs || rep.FloatMACs != 0 {
		t.Errorf("w8a8 report: %d of %d layers, %d of %d MACs quantized; %d float layers, %d float MACs",
			rep.QuantizedLayers, layers, rep.QuantizedMACs, full.MACs, rep.FloatLayers, rep.FloatMACs)
	}
	if want := "quantized: 12 of 12 layers"; !strings.Contains(stdout, want) || !strings.Contains(stdout, "left float: 0 MACs") {
		t.Errorf("stdout lacks %q: %q", want, stdout)
	}
	seen := 0
	for _, l := range got.Layers {
		if l.Op != "MatMul" {
			continue
		}
		seen++
		if l.ABits != 8 || len(l.WBits) != l.Filters || slices.ContainsFunc(l.WBits, func(b int) bool { return b != 8 }) {
			t.Errorf("%s in the export: wbits %v, abits %d", l.Name, l.WBits, l.ABits)
		}
	}
	if seen != 6 {
		t.Errorf("the export shows %d quantized MatMul layers, want 6", seen)
	}

	// One MatMul left float.
	float := "/stage2/stage2.0/fc1/MatMul"
	arch := filepath.Join(dir, "a.json")
	os.WriteFile(arch, []byte(`{"format": "qnas.arch/1", "default": {"wbits": 8, "abits": 8}, "layers": {"`+float+`": {"wbits": 32, "abits": 32}}}`), 0o644)
	rep, _, stdout = run("onefloat", "--arch", arch)
	if rep.QuantizedLayers != layers-1 || rep.FloatLayers != 1 || rep.FloatMACs != matmuls[float] || rep.QuantizedMACs != full.MACs-matmuls[float] {
		t.Errorf("one float MatMul (%d MACs): %d quantized, %d float layers; %d quantized, %d float MACs",
			matmuls[float], rep.QuantizedLayers, rep.FloatLayers, rep.QuantizedMACs, rep.FloatMACs)
	}
	if !strings.Contains(stdout, "quantized: 11 of 12 layers") || !strings.Contains(stdout, "left float: 452k MACs") {
		t.Errorf("stdout: %q", stdout)
	}
}
