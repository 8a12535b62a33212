package main

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qnas/qnas/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files")

// runCLI runs the command line in-process and returns the exit status and outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	status := run(args, &out, &errb)
	return status, out.String(), errb.String()
}

// checkGolden compares got with the golden file, or rewrites it with -update.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/qnas -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test ./cmd/qnas -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// expectFailure checks a one-line, panic-free error with the given status.
func expectFailure(t *testing.T, status int, stderr string, wantStatus int, wantIn ...string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("exit status %d, want %d (stderr %q)", status, wantStatus, stderr)
	}
	if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("stderr has more than one line: %q", stderr)
	}
	if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") || strings.Contains(stderr, "internal error") {
		t.Errorf("stderr shows a crash: %q", stderr)
	}
	for _, w := range wantIn {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not mention %q", stderr, w)
		}
	}
}

func TestInspectBadInputs(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(testenv.Path("testdata", "models", "resnet8.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r := rand.New(rand.NewPCG(7, 8))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(r.IntN(256))
	}
	for name, path := range map[string]string{
		"truncated":   write("truncated.onnx", good[:len(good)/3]),
		"random":      write("random.onnx", random),
		"empty":       write("empty.onnx", nil),
		"missing":     filepath.Join(dir, "nope.onnx"),
		"a directory": dir,
	} {
		t.Run(name, func(t *testing.T) {
			status, stdout, stderr := runCLI(t, "inspect", path)
			expectFailure(t, status, stderr, 1, filepath.Base(path))
			if stdout != "" {
				t.Errorf("stdout not empty: %q", stdout)
			}
		})
	}
	// Every prefix length class: cut the model at many points.
	for i := 1; i < 40; i++ {
		cut := len(good) * i / 40
		p := write("cut.onnx", good[:cut])
		status, _, stderr := runCLI(t, "inspect", p)
		if status != 1 || strings.Contains(stderr, "goroutine") {
			t.Errorf("cut at %d: status %d, stderr %q", cut, status, stderr)
		}
	}
}

func TestInspectUnsupportedOp(t *testing.T) {
	p := testenv.Path("testdata", "models", "unsupported_op.onnx")
	status, _, stderr := runCLI(t, "inspect", p)
	expectFailure(t, status, stderr, 1, "unsupported_op.onnx", "NonMaxSuppression", "supported: ", "Conv, ")
	// The list names the ops a model file may hold, not qnas's own training ops.
	if strings.Contains(stderr, "qnas::") {
		t.Errorf("the supported ops include qnas's internal ones: %q", stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"inspect"},
		{"inspect", "a.onnx", "b.onnx"},
		{"inspect", "--no-such-flag", "a.onnx"},
		{"no-such-command"},
		{"inspect", testenv.Path("testdata", "models", "resnet8.onnx"), "--dump-after", "no-such-pass"},
	} {
		status, _, stderr := runCLI(t, args...)
		expectFailure(t, status, stderr, 2)
		if !strings.HasPrefix(stderr, "qnas: ") {
			t.Errorf("%v: stderr %q", args, stderr)
		}
	}
}

// Golden files pin inspect's table and JSON for every fixture model.
func TestInspectGolden(t *testing.T) {
	models, _ := filepath.Glob(testenv.Path("testdata", "models", "*.onnx"))
	n := 0
	for _, m := range models {
		base := strings.TrimSuffix(filepath.Base(m), ".onnx")
		if base == "unsupported_op" {
			continue
		}
		n++
		rel := filepath.Join("testdata", "models", filepath.Base(m))
		t.Run(base, func(t *testing.T) {
			// Run from the repository root so the table shows the relative path.
			wd, _ := os.Getwd()
			if err := os.Chdir(testenv.RepoRoot()); err != nil {
				t.Fatal(err)
			}
			defer os.Chdir(wd)
			status, out, stderr := runCLI(t, "inspect", rel)
			if status != 0 {
				t.Fatalf("status %d: %s", status, stderr)
			}
			checkGolden(t, testenv.Path("testdata", "golden", "inspect", base+".txt"), out)
			status, out, stderr = runCLI(t, "inspect", "--json", rel)
			if status != 0 || stderr != "" {
				t.Fatalf("--json: status %d, stderr %q", status, stderr)
			}
			checkGolden(t, testenv.Path("testdata", "golden", "inspect", base+".json"), out)
		})
	}
	if n < 4 {
		t.Errorf("found %d fixture models, want at least 4", n)
	}
}

// Resource limits are adjustable by flag and refuse a model with a one-line reason.
func TestLimitFlags(t *testing.T) {
	m := testenv.Path("testdata", "models", "resnet20_bn.onnx")
	for _, c := range []struct {
		flag, value, want string
	}{
		{"--max-tensor-elements", "1000", "more than the limit of 1000"},
		{"--max-activation-elements", "10000", "more than 10000 elements per sample"},
		{"--max-model-mb", "1", "resnet20_bn.onnx"},
	} {
		status, _, stderr := runCLI(t, "inspect", m, c.flag, c.value)
		expectFailure(t, status, stderr, 1, c.want)
	}
	if status, _, stderr := runCLI(t, "inspect", m, "--max-tensor-elements", "100000"); status != 0 {
		t.Errorf("a raised limit still refuses: %s", stderr)
	}
}
