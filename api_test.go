package qnas_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/qnas/qnas"
	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/internal/testenv"
)

// buildCLI builds the qnas command with this test binary's build tags.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "qnas")
	args := []string{"build", "-o", bin}
	if buildTags != "" {
		args = append(args, "-tags", buildTags)
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), append(args, "./cmd/qnas")...)
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Optimize called from Go writes the same bytes as `qnas optimize` with the same settings
// (the command is a front end of the library), on the embedded data.
func TestOptimizeIsTheCommand(t *testing.T) {
	bin := buildCLI(t)
	dir := t.TempDir()
	model := testenv.Path("testdata", "models", "resnet8_bn.onnx")
	cliOut, apiOut := filepath.Join(dir, "cli.onnx"), filepath.Join(dir, "api.onnx")
	cmd := exec.Command(bin, "optimize", model, "--budget", "0.25", "--data", "embedded", "--mean", "0.286", "--std", "0.353",
		"--limit-train", "1280", "--limit-test", "200", "--batch", "64", "--calib", "2", "--search-epochs", "1", "--ft-epochs", "2",
		"--method", "search", "--seed", "4", "--threads", "2", "-o", cliOut)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qnas optimize: %v\n%s", err, out)
	}
	opts := qnas.DefaultOptimizeOptions()
	opts.Data = qnas.Data{Dir: qnas.EmbeddedData, Mean: []float32{0.286}, Std: []float32{0.353}, LimitTrain: 1280, LimitTest: 200}
	opts.Training.Batch, opts.Training.Calib, opts.Training.Seed = 64, 2, 4
	opts.SearchEpochs, opts.FineTuneEpochs = 1, 2
	opts.Method = qnas.MethodSearch
	opts.Output.Path = apiOut
	runtime.GOMAXPROCS(2)
	rep, err := qnas.Optimize(context.Background(), model, qnas.Budget{Ratio: 0.25}, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []func(export.Files) string{
		func(f export.Files) string { return f.Model },
		func(f export.Files) string { return f.Encodings },
		func(f export.Files) string { return f.Arch },
	} {
		a, b := f(export.OutputFiles(cliOut)), f(export.OutputFiles(apiOut))
		ca, err := os.ReadFile(a)
		if err != nil {
			t.Fatal(err)
		}
		cb, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ca, cb) {
			t.Errorf("%s and %s differ", filepath.Base(a), filepath.Base(b))
		}
	}
	if rep.Output != apiOut || len(rep.Seeds) != 1 || rep.Seeds[0].Seed != 4 {
		t.Errorf("report: output %q, seeds %+v", rep.Output, rep.Seeds)
	}
	for _, c := range []string{".search.ckpt", ".ckpt"} {
		if _, err := os.Stat(apiOut + c); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the finished run left %s", apiOut+c)
		}
	}
}

// Bad options are errors naming the field, found before any work.
func TestOptionErrorsNameTheField(t *testing.T) {
	model := testenv.Path("testdata", "models", "resnet8_bn.onnx")
	base := qnas.DefaultOptimizeOptions()
	base.Data.Dir = qnas.EmbeddedData
	base.Output.Path = filepath.Join(t.TempDir(), "out.onnx")
	for _, c := range []struct {
		field  string
		budget qnas.Budget
		edit   func(o *qnas.OptimizeOptions)
	}{
		{"Training.LR", qnas.DefaultBudget, func(o *qnas.OptimizeOptions) { o.Training.LR = -1 }},
		{"Training.Batch", qnas.DefaultBudget, func(o *qnas.OptimizeOptions) { o.Training.Batch = 0 }},
		{"Data.Dir", qnas.DefaultBudget, func(o *qnas.OptimizeOptions) { o.Data.Dir = "" }},
		{"SearchEpochs", qnas.DefaultBudget, func(o *qnas.OptimizeOptions) { o.SearchEpochs = 0 }},
		{"Space.Widths", qnas.DefaultBudget, func(o *qnas.OptimizeOptions) { o.Space.Prune, o.Space.Widths = true, []float64{1.5} }},
		{"WidthPrices", qnas.DefaultBudget, func(o *qnas.OptimizeOptions) { o.WidthPrices = "exact" }},
		{"WidthPrices", qnas.DefaultBudget, func(o *qnas.OptimizeOptions) { o.Space.Prune, o.Sampling = true, "soft" }},
		{"Output.Format", qnas.DefaultBudget, func(o *qnas.OptimizeOptions) { o.Output.Format = "tflite" }},
		{"Output.Report", qnas.DefaultBudget, func(o *qnas.OptimizeOptions) { o.Output.Report = o.Output.Path }},
		{"CostModel", qnas.DefaultBudget, func(o *qnas.OptimizeOptions) { o.CostModel = "flops" }},
		{"Budget", qnas.Budget{Ratio: 0.001}, func(o *qnas.OptimizeOptions) {}},
		{"Budget", qnas.Budget{Cost: 1e15}, func(o *qnas.OptimizeOptions) {}},
		{"Data.Mean", qnas.DefaultBudget, func(o *qnas.OptimizeOptions) { o.Data.Mean = []float32{0.1, 0.2} }},
	} {
		o := base
		o.Space.Widths = append([]float64(nil), base.Space.Widths...)
		c.edit(&o)
		_, err := qnas.Optimize(context.Background(), model, c.budget, o)
		var fe *qnas.FieldError
		if !errors.As(err, &fe) || fe.Name != c.field {
			t.Errorf("%s: error %v, want one naming the field", c.field, err)
			continue
		}
		if strings.Contains(err.Error(), "--") {
			t.Errorf("%s: %q names a command-line flag", c.field, err)
		}
	}
}
