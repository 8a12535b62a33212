package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qnas/qnas/internal/testenv"
)

func quantizeArgs(model, out string, extra ...string) []string {
	args := []string{"quantize", model, "--data", "embedded", "--limit-train", "512", "--limit-test", "200", "--calib", "2",
		"--batch", "64", "--seed", "5", "--threads", "2", "-o", out}
	return append(args, extra...)
}

// quantize writes the model, its encodings and its architecture; its report follows the
// command-line contract; applying the written architecture with --arch gives the same
// bytes; qnas eval of the output gives the reported accuracy; qnas export converts it.
func TestQuantizeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	model := copyModel(t, dir)
	out := filepath.Join(dir, "q.onnx")
	report := filepath.Join(dir, "report.json")
	status, stdout, stderr := runCLI(t, quantizeArgs(model, out, "--wbits", "4", "--abits", "4", "--epochs", "1", "--report", report)...)
	if status != 0 {
		t.Fatalf("quantize: %s", stderr)
	}
	// Without --mean/--std the float model scores at chance on these pixels while its
	// calibrated quantized form does not: it is no teacher, and distilling from it made
	// this fine-tuning fall from 90.5 % to 76.5 %.
	if !strings.Contains(stderr, "distillation off") || !strings.Contains(stderr, "--mean/--std") {
		t.Errorf("no note that distillation is off for a teacher at chance: %q", stderr)
	}
	if !strings.Contains(stdout, "wrote "+out) || !strings.Contains(stdout, "of w8a8") {
		t.Errorf("stdout: %q", stdout)
	}
	for _, f := range []string{out, filepath.Join(dir, "q.encodings.json"), filepath.Join(dir, "q.arch.json"), report} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}
	if _, err := os.Stat(out + ".ckpt"); err == nil {
		t.Errorf("the checkpoint %s.ckpt is left behind", out)
	}
	var rep map[string]any
	b, _ := os.ReadFile(report)
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cost_model", "cost", "reference_cost", "cost_ratio", "accuracy", "float_accuracy", "seed", "layers"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	layers := rep["layers"].([]any)
	for _, k := range []string{"name", "wbits", "abits", "filters", "kept_filters", "cost"} {
		if _, ok := layers[0].(map[string]any)[k]; !ok {
			t.Errorf("report layer lacks %q", k)
		}
	}
	// w4a4 with the network input at 8 bits: 0.25 plus a quarter of the first layer's share.
	if r := rep["cost_ratio"].(float64); r < 0.25 || r > 0.26 {
		t.Errorf("cost_ratio %.4f for w4a4", r)
	}
	// The written architecture reproduces the model to the byte.
	out2 := filepath.Join(dir, "q2.onnx")
	status, _, stderr = runCLI(t, quantizeArgs(model, out2, "--arch", filepath.Join(dir, "q.arch.json"), "--epochs", "1")...)
	if status != 0 {
		t.Fatalf("quantize --arch: %s", stderr)
	}
	b1, _ := os.ReadFile(out)
	b2, _ := os.ReadFile(out2)
	if !bytes.Equal(b1, b2) {
		t.Errorf("--arch of the written architecture gave other bytes (%d vs %d)", len(b1), len(b2))
	}
	// qnas eval of the output reproduces the reported accuracy.
	status, stdout, stderr = runCLI(t, "eval", out, "--data", "embedded", "--limit", "200", "--json")
	if status != 0 {
		t.Fatal(stderr)
	}
	var ev struct{ Accuracy float64 }
	json.Unmarshal([]byte(stdout), &ev)
	if math.Abs(ev.Accuracy-rep["accuracy"].(float64)) > 1e-9 {
		t.Errorf("qnas eval %.4f, report %.4f", ev.Accuracy, rep["accuracy"].(float64))
	}
	// export to QONNX and back reproduces the file; inspect shows the bits.
	qonnx := filepath.Join(dir, "q.qonnx.onnx")
	if status, _, stderr := runCLI(t, "export", out, "--format", "qonnx", "-o", qonnx); status != 0 {
		t.Fatal(stderr)
	}
	back := filepath.Join(dir, "back.onnx")
	if status, _, stderr := runCLI(t, "export", qonnx, "--format", "qdq", "-o", back); status != 0 {
		t.Fatal(stderr)
	}
	b3, _ := os.ReadFile(back)
	if !bytes.Equal(b1, b3) {
		t.Errorf("export qdq → qonnx → qdq changed the model")
	}
	status, stdout, stderr = runCLI(t, "inspect", qonnx)
	if status != 0 || !strings.Contains(stdout, "4/4") || !strings.Contains(stdout, "4/8") {
		t.Errorf("inspect of the QONNX export (status %d, %s):\n%s", status, stderr, stdout)
	}
}

// Usage mistakes exit 2 and architecture or data problems exit 1, each with one line naming
// the flag, file or layer at fault, and nothing is written.
func TestQuantizeBadInput(t *testing.T) {
	dir := t.TempDir()
	model := copyModel(t, dir)
	out := filepath.Join(dir, "q.onnx")
	arch := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		args   []string
		status int
		want   []string
	}{
		{[]string{"--wbits", "4"}, 2, []string{"--abits"}},
		{[]string{"--wbits", "9", "--abits", "4"}, 2, []string{"--wbits 9"}},
		{[]string{"--wbits", "4", "--abits", "4", "--arch", "x.json"}, 2, []string{"--arch"}},
		{[]string{"--wbits", "4", "--abits", "4", "--format", "tflite"}, 2, []string{"--format"}},
		{[]string{"--wbits", "4", "--abits", "4", "--format", "qonnx", "--pack"}, 2, []string{"--pack"}},
		{[]string{"--wbits", "4", "--abits", "4", "--cost", "flops"}, 2, []string{"--cost"}},
		{[]string{"--wbits", "4", "--abits", "4", "--target", "no-such-device"}, 2, []string{"--target", "npu-int8-int4"}},
		{[]string{"--arch", arch("unknown.json", `{"format": "qnas.arch/1", "default": {"wbits": 4, "abits": 4}, "layers": {"/nope/Conv": {"wbits": 2}}}`)},
			1, []string{"unknown.json", `"/nope/Conv"`}},
		{[]string{"--arch", arch("list.json", `{"format": "qnas.arch/1", "default": {"wbits": 4, "abits": 4}, "layers": {"/conv1/Conv": {"wbits": [2, 4, 8]}}}`)},
			1, []string{"list.json", `"/conv1/Conv"`, "3 values for 16 filters"}},
		{[]string{"--arch", arch("conflict.json", `{"format": "qnas.arch/1", "default": {"wbits": 4, "abits": 4}, "layers": {"/conv1/Conv": {"keep": 8}, "/layer1/layer1.0/conv2/Conv": {"keep": 12}}}`)},
			1, []string{"conflict.json", "/conv1/Conv", "/layer1/layer1.0/conv2/Conv", "dependency group"}},
		{[]string{"--arch", arch("fc.json", `{"format": "qnas.arch/1", "default": {"wbits": 4, "abits": 4}, "layers": {"/fc/Gemm": {"keep": 5}}}`)},
			1, []string{"fc.json", "/fc/Gemm", "graph output"}},
		{[]string{"--arch", arch("typo.json", `{"format": "qnas.arch/1", "default": {"wbits": 4, "abits": 4}, "layers": {"/fc/Gemm": {"wbit": 5}}}`)},
			1, []string{"typo.json", "/fc/Gemm", `"wbit"`}},
		{[]string{"--arch", arch("fmt.json", `{"layers": {}}`)}, 1, []string{"fmt.json", "qnas.arch/1"}},
	}
	for _, c := range cases {
		status, _, stderr := runCLI(t, quantizeArgs(model, out, c.args...)...)
		expectFailure(t, status, stderr, c.status, c.want...)
	}
	status, _, stderr := runCLI(t, quantizeArgs(model, model, "--wbits", "4", "--abits", "4")...)
	expectFailure(t, status, stderr, 2, "refusing to overwrite")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "q.") {
			t.Errorf("a failed run left %s", e.Name())
		}
	}
}

// inspect --arch prices an architecture: the cost ratio of uniform w4a4 and of a pruned,
// mixed one, and a target profile's pairs.
func TestInspectArch(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.json")
	os.WriteFile(p, []byte(`{"format": "qnas.arch/1", "default": {"wbits": 4, "abits": 4}, "layers": {}}`), 0o644)
	m := testenv.Path("testdata", "models", "resnet8_bn.onnx")
	status, stdout, stderr := runCLI(t, "inspect", m, "--arch", p, "--json")
	if status != 0 {
		t.Fatal(stderr)
	}
	var s archSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatal(err)
	}
	first := float64(s.Layers[0].MACs) / float64(s.MACs)
	if want := 0.25 + 0.25*first; math.Abs(s.CostRatio-want) > 1e-9 {
		t.Errorf("w4a4 cost ratio %.6f, want %.6f", s.CostRatio, want)
	}
	status, _, stderr = runCLI(t, "inspect", m, "--arch", p, "--target", "tensorcore-int8-int4")
	expectFailure(t, status, stderr, 1, "a.json", "/conv1/Conv", "w8a8, w4a4")
	status, stdout, stderr = runCLI(t, "inspect", m, "--arch", p, "--target", "npu-int8-int4")
	if status != 0 || !strings.Contains(stdout, "w8a8-MACs") {
		t.Errorf("npu target: %d %s %s", status, stderr, stdout)
	}
}

// SIGINT during quantize's fine-tuning saves a checkpoint and exits 1 naming it; --resume
// ends with the same bytes as an uninterrupted run.
func TestQuantizeInterruptAndResume(t *testing.T) {
	dir := t.TempDir()
	model := copyModel(t, dir)
	args := func(out string, extra ...string) []string {
		return quantizeArgs(model, out, append([]string{"--wbits", "3", "--abits", "4", "--epochs", "3"}, extra...)...)
	}
	ref := filepath.Join(dir, "ref.onnx")
	if b, err := qnasCmd(args(ref)...).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	want, _ := os.ReadFile(ref)
	out := filepath.Join(dir, "out.onnx")
	for attempt := 0; attempt < 8; attempt++ {
		cmd := qnasCmd(args(out)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(400+250*attempt) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err == nil {
			os.Remove(out)
			continue // finished before the signal; try again with another delay
		}
		if cmd.ProcessState.ExitCode() == -1 {
			// The signal came before the fine-tuning installed its handler (loading,
			// calibrating): the process died of it and must have written nothing.
			if _, err := os.Stat(out); err == nil {
				t.Fatal("a run killed by SIGINT wrote its output")
			}
			continue
		}
		if cmd.ProcessState.ExitCode() != 1 {
			t.Fatalf("exit status %d after SIGINT\n%s", cmd.ProcessState.ExitCode(), stderr.String())
		}
		if last := lastLine(stderr.String()); !strings.Contains(last, "out.onnx.ckpt") || !strings.Contains(last, "--resume") {
			t.Fatalf("message does not name the checkpoint: %q", last)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatal("an interrupted run wrote its output")
		}
		if b, err := qnasCmd(args(out, "--resume", out+".ckpt")...).CombinedOutput(); err != nil {
			t.Fatalf("resume: %v\n%s", err, b)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
			t.Fatal("the resumed run's output differs from the uninterrupted run's")
		}
		return
	}
	t.Skip("the run always finished before SIGINT arrived")
}

// --resume FILE continues from FILE itself, whatever its name, to the bytes of an
// uninterrupted run, and writes no checkpoint by another name; a run without fine-tuning
// (--epochs 0) leaves a checkpoint it finds beside its output alone.
func TestResumeUsesTheNamedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	model := copyModel(t, dir)
	args := func(out string, extra ...string) []string {
		return quantizeArgs(model, out, append([]string{"--wbits", "3", "--abits", "4", "--epochs", "3", "--mean", "0.286", "--std", "0.353",
			"--limit-train", "192", "--limit-test", "100"}, extra...)...)
	}
	ref := filepath.Join(dir, "ref.onnx")
	if status, _, stderr := runCLI(t, args(ref)...); status != 0 {
		t.Fatal(stderr)
	}
	want, _ := os.ReadFile(ref)
	out := filepath.Join(dir, "out.onnx")
	saved := filepath.Join(dir, "saved", "state.bin")
	os.Mkdir(filepath.Dir(saved), 0o755)
	if err := os.Rename(killedCheckpoint(t, args(out), out+".ckpt"), saved); err != nil {
		t.Fatal(err)
	}
	state, _ := os.ReadFile(saved)
	// A run that does not fine-tune leaves a checkpoint it finds alone.
	stale := filepath.Join(dir, "ptq.onnx.ckpt")
	os.WriteFile(stale, state, 0o644)
	if status, _, stderr := runCLI(t, quantizeArgs(model, filepath.Join(dir, "ptq.onnx"), "--wbits", "3", "--abits", "4", "--epochs", "0")...); status != 0 {
		t.Fatal(stderr)
	}
	if b, err := os.ReadFile(stale); err != nil || !bytes.Equal(b, state) {
		t.Errorf("quantize --epochs 0 consumed the checkpoint beside its output (%v)", err)
	}
	// Resuming from the renamed file.
	status, _, stderr := runCLI(t, args(out, "--resume", saved)...)
	if status != 0 {
		t.Fatal(stderr)
	}
	if strings.Contains(stderr, "note:") {
		t.Errorf("a resumed run repeats the notes: %s", stderr)
	}
	if strings.Contains(stderr, "epoch 1/2") { // saved after epoch 1 of the first part (epochs 1-2) at least
		t.Errorf("the resumed run trained epoch 1 again:\n%s", stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Error("the run resumed from a renamed checkpoint differs from the uninterrupted run")
	}
	for _, p := range []string{out + ".ckpt", saved} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is left after the run completed", p)
		}
	}
}

// With --pow2-scales, a run resumed from the checkpoint of the epoch before the last (the
// BatchNorm statistics are re-estimated next, on the grids the factors chose) or
// interrupted in the last epoch (which trains the folded, exported form) writes the bytes
// of an uninterrupted run: the checkpoint holds the factors that chose each filter's power
// of two, which the graph rebuilt on resume (from the calibrated model) would have anew.
// Both forms of the model: with BatchNorm, and folded as PyTorch exports it.
func TestPow2Resume(t *testing.T) {
	for _, fixture := range []string{"resnet8_bn.onnx", "resnet8.onnx"} {
		t.Run(fixture, func(t *testing.T) {
			dir := t.TempDir()
			model := copyFixture(t, dir, fixture)
			args := func(out string, extra ...string) []string {
				return quantizeArgs(model, out, append([]string{"--wbits", "3", "--abits", "3", "--epochs", "2", "--pow2-scales",
					"--mean", "0.286", "--std", "0.353", "--limit-train", "1024"}, extra...)...)
			}
			ref := filepath.Join(dir, "ref.onnx")
			if status, _, stderr := runCLI(t, args(ref)...); status != 0 {
				t.Fatal(stderr)
			}
			want, _ := os.ReadFile(ref)
			resume := func(out, ckpt, what string) {
				t.Helper()
				status, _, stderr := runCLI(t, args(out, "--resume", ckpt)...)
				if status != 0 {
					t.Fatal(stderr)
				}
				if strings.Contains(stderr, "epoch 1/2") {
					t.Fatalf("%s: the resumed run trained epoch 1 again:\n%s", what, stderr)
				}
				if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
					t.Errorf("%s: the resumed run differs from the uninterrupted run", what)
				}
			}
			out := filepath.Join(dir, "first.onnx")
			resume(out, killedCheckpoint(t, args(out), out+".ckpt"), "from the first epoch's checkpoint")
			out = filepath.Join(dir, "last.onnx")
			interruptInEpoch(t, args(out), "epoch 2/2")
			if _, err := os.Stat(out); err == nil {
				t.Fatal("an interrupted run wrote its output")
			}
			resume(out, out+".ckpt", "interrupted in the last epoch")
		})
	}
}

// interruptInEpoch starts qnas with args, sends SIGINT once its progress reports a line
// starting with label, and checks that it then stops with status 1, naming its checkpoint.
func interruptInEpoch(t *testing.T, args []string, label string) {
	t.Helper()
	log, sent, status := interruptWhen(t, args, func(line string) bool { return strings.HasPrefix(line, label) })
	if !sent {
		t.Fatalf("no progress line %q before the run ended:\n%s", label, log)
	}
	if status != 1 {
		t.Fatalf("exit status %d after SIGINT in %q\n%s", status, label, log)
	}
	if last := lastLine(log); !strings.Contains(last, ".ckpt") || !strings.Contains(last, "--resume") {
		t.Fatalf("message does not name the checkpoint: %q", last)
	}
}

// interruptWhen runs qnas with args, reading its standard error line by line, and sends it
// SIGINT at the first line for which at is true. It returns what the process wrote there,
// whether the signal was sent, and the exit status.
func interruptWhen(t *testing.T, args []string, at func(line string) bool) (stderr string, sent bool, status int) {
	t.Helper()
	cmd := qnasCmd(args...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if !sent && at(sc.Text()) {
			cmd.Process.Signal(syscall.SIGINT)
			sent = true
		}
	}
	cmd.Wait()
	return log.String(), sent, cmd.ProcessState.ExitCode()
}
