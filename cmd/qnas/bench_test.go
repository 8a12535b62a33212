package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/qnas/qnas/internal/testenv"
)

// TestBenchJSON runs a few float training steps and checks the JSON contract of design.md
// §9 (mode, images_per_sec, step_ms, peak_rss_mb) and, with --ops, the per-op times.
func TestBenchJSON(t *testing.T) {
	procs := runtime.GOMAXPROCS(0) // bench sets it from --threads
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	model := testenv.Path("testdata", "models", "resnet8_bn.onnx")
	status, out, stderr := runCLI(t, "bench", model, "--mode", "float", "--batch", "4", "--steps", "2", "--threads", "1", "--json", "--ops")
	if status != 0 {
		t.Fatalf("exit %d: %s", status, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
	}
	if res["mode"] != "float" {
		t.Errorf("mode %v", res["mode"])
	}
	for _, k := range []string{"images_per_sec", "step_ms", "best_step_ms", "peak_rss_mb"} {
		if v, ok := res[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, res[k])
		}
	}
	ops, _ := res["op_ms"].(map[string]any)
	for _, k := range []string{"Conv forward", "Conv backward", "Gemm forward"} {
		if v, ok := ops[k].(float64); !ok || v < 0 {
			t.Errorf("op_ms[%q] = %v", k, ops[k])
		}
	}

	status, out, stderr = runCLI(t, "bench", model, "--batch", "2", "--steps", "1", "--ops")
	if status != 0 || !strings.Contains(out, "images/s") || !strings.Contains(out, "Conv backward") {
		t.Errorf("text output (exit %d, stderr %q):\n%s", status, stderr, out)
	}
	// --mode qat times the fake-quantized w4a4 step: its quantizers show up in the ops.
	status, out, stderr = runCLI(t, "bench", model, "--mode", "qat", "--batch", "2", "--steps", "1", "--ops", "--json")
	if status != 0 || !strings.Contains(out, `"mode":"qat"`) || !strings.Contains(out, "QuantAct backward") || !strings.Contains(out, "QuantWeight forward") {
		t.Errorf("--mode qat (exit %d, stderr %q):\n%s", status, stderr, out)
	}
}

func TestBenchUsage(t *testing.T) {
	model := testenv.Path("testdata", "models", "resnet8.onnx")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", model, "--mode", "searching"}, "--mode"},
		{[]string{"bench", model, "--mode", "fast"}, "--mode"},
		{[]string{"bench", model, "--batch", "0"}, "--batch"},
		{[]string{"bench", model, "--steps", "-1"}, "--steps"},
	} {
		status, _, stderr := runCLI(t, c.args...)
		expectFailure(t, status, stderr, 2, c.want)
	}
	status, _, stderr := runCLI(t, "bench", "no-such-model.onnx")
	expectFailure(t, status, stderr, 1, "no-such-model.onnx")
}
