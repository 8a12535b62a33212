package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/blas"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/search"
	"github.com/qnas/qnas/supernet"
	"github.com/spf13/pflag"
)

// embeddedData is the --data value that selects the embedded Fashion-MNIST subset.
const embeddedData = "embedded"

// dataFlags are the flags every command that reads a data set shares.
type dataFlags struct {
	Dir       string
	Mean, Std string
}

func (d *dataFlags) register(f *pflag.FlagSet) {
	f.StringVar(&d.Dir, "data", "", `data set folder (IDX, CIFAR binary, image folders, NPZ), or "embedded" for the built-in Fashion-MNIST subset`)
	f.StringVar(&d.Mean, "mean", "", "normalization mean, one value or one per channel (default: model metadata qnas.mean)")
	f.StringVar(&d.Std, "std", "", "normalization std, one value or one per channel (default: model metadata qnas.std)")
}

// check refuses, as usage errors, --mean and --std values that are not finite numbers
// (positive for --std), before any work.
func (d *dataFlags) check() error {
	if _, err := parseNormValues("--mean", d.Mean, false); err != nil {
		return usageError{err}
	}
	if _, err := parseNormValues("--std", d.Std, true); err != nil {
		return usageError{err}
	}
	return nil
}

// open loads a split of the data set named by --data.
func (d *dataFlags) open(split data.Split) (*data.Dataset, error) {
	if d.Dir == "" {
		return nil, usageError{fmt.Errorf("--data is required (a folder, or %q)", embeddedData)}
	}
	if d.Dir == embeddedData {
		return data.Embedded(split)
	}
	return data.Open(d.Dir, split)
}

// normalization takes --mean/--std, else the model's qnas.mean/qnas.std metadata, else
// none (pixels in [0, 1]), which it warns about on stderr since a model trained on
// normalized inputs then scores far below its accuracy. A flag that is not a list of
// finite numbers (positive for --std), or of one value or one per channel of the model's
// input, is a usage error naming it; metadata that is not is an error naming the model.
func (d *dataFlags) normalization(g *graph.Graph, stderr io.Writer) (data.Normalize, error) {
	var n data.Normalize
	for _, f := range []struct {
		flag, meta, value string
		dst               *[]float32
		std               bool
	}{{"--mean", "qnas.mean", d.Mean, &n.Mean, false}, {"--std", "qnas.std", d.Std, &n.Std, true}} {
		src, v := f.flag, f.value
		if v == "" {
			src, v = g.Source.Path+": metadata "+f.meta, g.Meta[f.meta]
		}
		vals, err := parseNormValues(src, v, f.std)
		if err == nil && len(g.Inputs) == 1 && len(g.Shapes[g.Inputs[0]]) == 4 {
			if c := g.Shapes[g.Inputs[0]][1]; len(vals) > 1 && len(vals) != c {
				err = fmt.Errorf("%s has %d values for the model's %d input channels; give 1 or %d", src, len(vals), c, c)
				if c == 1 {
					err = fmt.Errorf("%s has %d values for the model's 1 input channel; give 1", src, len(vals))
				}
			}
		}
		if err != nil && src == f.flag {
			return n, usageError{err}
		}
		if err != nil {
			return n, err
		}
		*f.dst = vals
	}
	if n.Mean == nil && n.Std == nil {
		fmt.Fprintln(stderr, noNormalizationNote)
	}
	return n, nil
}

// noNormalizationNote warns that inputs are not normalized.
const noNormalizationNote = "qnas: note: no --mean/--std and no qnas.mean/qnas.std in the model: inputs are pixels scaled to [0,1]"

// parseNormValues reads a comma-separated list of finite numbers (positive ones when
// positive is set); src names where it came from.
func parseNormValues(src, s string, positive bool) ([]float32, error) {
	var out []float32
	for _, p := range splitList(s) {
		v, err := strconv.ParseFloat(p, 32)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || positive && !(v > 0) {
			want := "finite numbers"
			if positive {
				want = "positive finite numbers"
			}
			return nil, fmt.Errorf("%s %q: want %s, one or one per channel", src, s, want)
		}
		out = append(out, float32(v))
	}
	return out, nil
}

// loadModel imports and canonicalizes a model.
func loadModel(path string, foldBN bool) (*graph.Graph, error) {
	g, err := graph.Load(path, limits.importOptions())
	if err != nil {
		return nil, err
	}
	if err := g.Canonicalize(graph.CanonicalOptions{FoldBN: foldBN}); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// loadSpace loads and canonicalizes a model (BatchNorm kept) and finds the layers it offers
// to quantize and prune.
func loadSpace(path string) (*graph.Graph, *supernet.Space, error) {
	g, err := loadModel(path, false)
	if err != nil {
		return nil, nil, err
	}
	s, err := supernet.NewSpace(g)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, s, nil
}

// restoreBatchNorm gives a model whose convolutions lack BatchNorm (exported folded) its
// BatchNorms back for training (search.RestoreBatchNorm, statistics from calib batches of
// the training data) and rebuilds its space; a model with BatchNorms is returned as it is.
func restoreBatchNorm(g *graph.Graph, space *supernet.Space, trainSet *data.Dataset, norm data.Normalize, calib, batch int, stderr io.Writer) (*graph.Graph, *supernet.Space, error) {
	rg, added, err := search.RestoreBatchNorm(g, trainSet, norm, calib, batch, stderr)
	if err != nil || len(added) == 0 {
		return g, space, err
	}
	fmt.Fprintf(stderr, "qnas: %d convolutions have no BatchNorm (a folded export): training with BatchNorm restored after each; the output is folded again\n", len(added))
	s, err := supernet.NewSpace(rg)
	if err != nil {
		return nil, nil, err
	}
	return rg, s, nil
}

// setThreads uses n cores: n Go threads, and OpenBLAS single-threaded so the kernels split
// batches across the Go threads themselves.
func setThreads(n int) error {
	if n < 1 {
		return usageError{fmt.Errorf("--threads must be positive, got %d", n)}
	}
	runtime.GOMAXPROCS(n)
	blas.SetThreads(1)
	return nil
}

// peakRSSMB reads the process's peak resident set size (VmHWM) in MiB; 0 if unknown.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// version is the qnas version written into models (set with -ldflags "-X main.version=…").
var version = "dev"

func graphWriteOptions() graph.WriteOptions { return graph.WriteOptions{ProducerVersion: version} }
