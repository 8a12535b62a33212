package qnas

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qnas/qnas/internal/testenv"
)

// With InitLogits InitSensitivity the search starts where the fast mode ends: a search
// without architecture steps (the first epoch all warm-up) derives the fast mode's
// architecture from the same estimate, and one started from uniform logits does not; the
// report says where the logits started and its phases name the estimate.
func TestInitLogitsFromSensitivity(t *testing.T) {
	model := testenv.Path("testdata", "models", "resnet8.onnx")
	run := func(method, init string) (*OptimizeReport, []byte) {
		t.Helper()
		opts := DefaultOptimizeOptions()
		opts.Data = Data{Dir: EmbeddedData, Mean: []float32{0.286}, Std: []float32{0.353}, LimitTrain: 640, LimitTest: 100}
		opts.Training.Batch, opts.Training.Calib = 64, 1
		opts.Method, opts.InitLogits = method, init
		opts.SensitivityImages, opts.SearchEpochs, opts.Warmup, opts.FineTuneEpochs = 128, 1, 1, 0
		opts.Output.Path = filepath.Join(t.TempDir(), "o.onnx")
		rep, err := Optimize(context.Background(), model, Budget{Ratio: 0.25}, opts)
		if err != nil {
			t.Fatalf("%s from %s logits: %v", method, init, err)
		}
		arch, err := os.ReadFile(strings.TrimSuffix(opts.Output.Path, ".onnx") + ".arch.json")
		if err != nil {
			t.Fatal(err)
		}
		return rep, arch
	}
	frep, fast := run(MethodSensitivity, InitUniform)
	rep, seeded := run(MethodSearch, InitSensitivity)
	urep, uniform := run(MethodSearch, InitUniform)
	if frep.InitLogits != "" || rep.InitLogits != InitSensitivity || urep.InitLogits != InitUniform {
		t.Errorf("reports' init_logits: fast mode %q, from the estimate %q, from uniform logits %q", frep.InitLogits, rep.InitLogits, urep.InitLogits)
	}
	if !bytes.Equal(seeded, fast) {
		t.Errorf("a search without architecture steps from the sensitivity estimate derives another architecture than the fast mode:\n%s\nvs\n%s", seeded, fast)
	}
	if bytes.Equal(uniform, fast) {
		t.Errorf("from uniform logits the search derives the fast mode's architecture too: the test cannot tell the starting points apart")
	}
	names := ""
	for _, ph := range rep.Phases {
		names += ph.Name + " "
	}
	if !strings.Contains(names, "initial sensitivity") || !strings.Contains(names, "warm-up") {
		t.Errorf("phases %q: want the initial estimate's and the search's", names)
	}
}
