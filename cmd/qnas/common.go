package main

import (
	"fmt"
	"github.com/qnas/qnas"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/blas"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/supernet"
	"github.com/spf13/pflag"
)

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

// values parses --mean and --std (nil when not given), as usage errors naming the flag.
func (d *dataFlags) values() (mean, std []float32, err error) {
	if mean, err = parseNormFlag("--mean", d.Mean, false); err != nil {
		return nil, nil, err
	}
	std, err = parseNormFlag("--std", d.Std, true)
	return mean, std, err
}

// check refuses, before any work, --mean and --std values that are not finite numbers
// (positive for --std).
func (d *dataFlags) check() error {
	_, _, err := d.values()
	return err
}

// open loads a split of the data set named by --data.
func (d *dataFlags) open(split data.Split) (*data.Dataset, error) {
	if d.Dir == "" {
		return nil, usageError{fmt.Errorf("--data is required (a folder, or %q)", qnas.EmbeddedData)}
	}
	if d.Dir == qnas.EmbeddedData {
		return data.Embedded(split)
	}
	return data.Open(d.Dir, split)
}

// normalization takes --mean/--std, else the model's qnas.mean/qnas.std metadata, else
// none (pixels in [0, 1]), which it warns about on stderr since a model trained on
// normalized inputs then scores far below its accuracy (data.ModelNormalization).
func (d *dataFlags) normalization(g *graph.Graph, stderr io.Writer) (data.Normalize, error) {
	mean, std, err := d.values()
	if err != nil {
		return data.Normalize{}, err
	}
	channels := 0
	if len(g.Inputs) == 1 && len(g.Shapes[g.Inputs[0]]) == 4 {
		channels = g.Shapes[g.Inputs[0]][1]
	}
	n, err := data.ModelNormalization(mean, std, g.Meta, g.Source.Path, channels)
	if err != nil {
		return n, err
	}
	if n.Mean == nil && n.Std == nil {
		cliProgress{stderr}.Note(qnas.NoNormalizationNote)
	}
	return n, nil
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
