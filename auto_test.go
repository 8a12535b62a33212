package qnas

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/testenv"
)

// notes records a run's notes.
type notes []string

func (n *notes) Note(line string) { *n = append(*n, line) }
func (n *notes) Bars() io.Writer  { return io.Discard }

// MethodAuto searches the shipped fixtures (all far below AutoSensitivityMACs) on a training
// split of AutoSearchImages or more, and takes the fast mode for a model at or above the MACs
// threshold or a split below the images one, saying so; the report names the method that ran.
func TestAutoMethod(t *testing.T) {
	var r8 int64
	for _, name := range []string{"resnet8_bn.onnx", "resnet8.onnx", "resnet20_bn.onnx", "mbv2.onnx", "inception.onnx", "cnx.onnx"} {
		g, err := graph.Load(testenv.Path("testdata", "models", name), graph.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Canonicalize(graph.CanonicalOptions{}); err != nil {
			t.Fatal(err)
		}
		macs := graph.Summarize(g).MACs
		if m, _ := autoMethod(macs, AutoSensitivityMACs, 60000, AutoSearchImages); m != MethodSearch {
			t.Errorf("%s (%d MACs per sample, 60 000 training samples): auto takes %s", name, macs, m)
		}
		if m, _ := autoMethod(macs, AutoSensitivityMACs, 4000, AutoSearchImages); m != MethodSensitivity {
			t.Errorf("%s (4 000 training samples): auto takes %s", name, m)
		}
		at, _ := autoMethod(macs, macs, AutoSearchImages, AutoSearchImages)
		above, _ := autoMethod(macs, macs+1, AutoSearchImages, AutoSearchImages)
		if at != MethodSensitivity || above != MethodSearch {
			t.Errorf("%s: the threshold is not at its MACs per sample (%d)", name, macs)
		}
		at, _ = autoMethod(macs, macs+1, AutoSearchImages, AutoSearchImages)
		below, _ := autoMethod(macs, macs+1, AutoSearchImages-1, AutoSearchImages)
		if at != MethodSearch || below != MethodSensitivity {
			t.Errorf("%s: the images threshold is not at AutoSearchImages", name)
		}
		if name == "resnet8_bn.onnx" {
			r8 = macs
		}
	}
	if DefaultOptimizeOptions().Method != MethodAuto {
		t.Errorf("the default method is %q", DefaultOptimizeOptions().Method)
	}

	defer func(v int64, n int) { autoThreshold, autoImages = v, n }(autoThreshold, autoImages)
	autoThreshold, autoImages = r8, 0
	var log notes
	opts := DefaultOptimizeOptions()
	opts.Data = Data{Dir: EmbeddedData, Mean: []float32{0.286}, Std: []float32{0.353}, LimitTrain: 512, LimitTest: 100}
	opts.Training.Batch, opts.Training.Calib = 64, 1
	opts.SensitivityImages, opts.FineTuneEpochs = 128, 0
	opts.Output.Path = filepath.Join(t.TempDir(), "o.onnx")
	opts.Progress = &log
	rep, err := Optimize(context.Background(), testenv.Path("testdata", "models", "resnet8_bn.onnx"), Budget{Ratio: 0.25}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Method != MethodSensitivity || rep.SearchEpochs != 0 || rep.Sensitivity == nil {
		t.Errorf("auto at the model's size: report method %q, search epochs %d, estimate %v", rep.Method, rep.SearchEpochs, rep.Sensitivity != nil)
	}
	if !strings.Contains(strings.Join(log, "\n"), "Method auto chose the fast mode: ") {
		t.Errorf("no note says the fast mode was chosen: %q", log)
	}

	// Below the model's size on a split one sample short of the images threshold: the fast
	// mode, saying why.
	autoThreshold, autoImages, log = r8+1, 513, nil
	opts.Output.Path = filepath.Join(t.TempDir(), "q.onnx")
	if rep, err = Optimize(context.Background(), testenv.Path("testdata", "models", "resnet8_bn.onnx"), Budget{Ratio: 0.25}, opts); err != nil {
		t.Fatal(err)
	}
	if rep.Method != MethodSensitivity || !strings.Contains(strings.Join(log, "\n"), "chose the fast mode: 512 training samples (the search from 513)") {
		t.Errorf("auto on 512 training samples: report method %q, notes %q", rep.Method, log)
	}

	// Above the model's size and on enough samples, a sensitivity setting is an error naming
	// it, before any work, unless the search starts from the estimate.
	autoImages = 512
	opts.InitLogits = InitUniform
	opts.Output.Path = filepath.Join(t.TempDir(), "p.onnx")
	if _, err := Optimize(context.Background(), testenv.Path("testdata", "models", "resnet8_bn.onnx"), Budget{Ratio: 0.25}, opts); err == nil || !strings.Contains(err.Error(), "SensitivityImages") {
		t.Errorf("SensitivityImages with auto choosing the search: error %v", err)
	}
}
