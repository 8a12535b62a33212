package train

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/qnas/qnas/internal/data"
)

// runTraining trains a fresh copy of resnet8_bn on 256 embedded samples for 2 epochs and
// returns its parameters by name.
func runTraining(t *testing.T, cfg Config) (map[string][]float32, error) {
	t.Helper()
	g := load(t, "resnet8_bn.onnx")
	d, err := data.Embedded(data.Train)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Train(g, data.Subset(d, 256), cfg)
	out := map[string][]float32{}
	for name, c := range g.Consts {
		out[name] = slices.Clone(c.F)
	}
	return out, err
}

func baseConfig() Config {
	return Config{Epochs: 2, Batch: 32, LR: 0.02, Momentum: 0.9, WeightDecay: 5e-4, Seed: 7, Norm: fmnistNorm,
		Augment: &data.Augment{PadCrop: 2, HFlip: true}}
}

func sameBits(t *testing.T, a, b map[string][]float32, what string) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d vs %d tensors", what, len(a), len(b))
	}
	for name, va := range a {
		if !slices.Equal(va, b[name]) {
			t.Errorf("%s: tensor %s differs", what, name)
			return
		}
	}
}

// Two runs with the same seed give the same parameters, bit for bit; a run interrupted
// (mid-epoch and at an epoch boundary) and resumed from its checkpoint ends identically.
func TestDeterministicAndResumable(t *testing.T) {
	dir := t.TempDir()
	cfg := baseConfig()
	cfg.Checkpoint = filepath.Join(dir, "a.ckpt")
	ref, err := runTraining(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := runTraining(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sameBits(t, ref, again, "second run")

	for _, stop := range [][2]int{{0, 3}, {0, 7}, {1, 0}, {1, 5}} {
		ctx, cancel := context.WithCancel(context.Background())
		c := baseConfig()
		c.Checkpoint = filepath.Join(dir, "b.ckpt")
		c.Context = ctx
		c.AfterStep = func(e, s int) {
			if e == stop[0] && s == stop[1] {
				cancel()
			}
		}
		_, err := runTraining(t, c)
		var ie *InterruptedError
		if !errors.As(err, &ie) || !errors.Is(err, ErrInterrupted) || ie.Checkpoint != c.Checkpoint {
			t.Fatalf("stop at %v: error %v, want an InterruptedError naming the checkpoint", stop, err)
		}
		cancel()
		r := baseConfig()
		r.Checkpoint, r.Resume = c.Checkpoint, true
		resumed, err := runTraining(t, r)
		if err != nil {
			t.Fatal(err)
		}
		sameBits(t, ref, resumed, "resumed run")
	}
}

func TestResumeRefusesOtherSettings(t *testing.T) {
	dir := t.TempDir()
	cfg := baseConfig()
	cfg.Epochs = 1
	cfg.Checkpoint = filepath.Join(dir, "c.ckpt")
	if _, err := runTraining(t, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.LR, cfg.Resume = 0.5, true
	if _, err := runTraining(t, cfg); err == nil || !strings.Contains(err.Error(), "c.ckpt was saved by another run: lr was 0.02, now 0.5") {
		t.Fatalf("resumed with another learning rate (%v)", err)
	}
	cfg.LR = 0.02
	cfg.Depends.Add("model", "another")
	if _, err := runTraining(t, cfg); err == nil || !strings.Contains(err.Error(), "does not record model") {
		t.Fatalf("resumed with another model (%v)", err)
	}
	cfg.Depends = nil
	cfg.Checkpoint = filepath.Join(dir, "missing.ckpt")
	if _, err := runTraining(t, cfg); err == nil || !strings.Contains(err.Error(), "missing.ckpt") {
		t.Fatalf("resumed from a missing checkpoint (%v)", err)
	}
}

// A loss turning NaN stops training with a message naming the last good checkpoint, which
// stays the state saved after the last finished epoch.
func TestNaNLossKeepsLastCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := baseConfig()
	cfg.Checkpoint = filepath.Join(dir, "n.ckpt")
	cfg.Epochs = 3
	var poison func()
	cfg.AfterStep = func(e, s int) {
		if e == 1 && s == 2 {
			poison()
		}
	}
	g := load(t, "resnet8_bn.onnx")
	poison = func() { // a weight blows up mid-epoch 2, as a diverging run would
		for _, n := range g.Nodes {
			if n.Op == "Gemm" {
				g.Consts[n.Inputs[1]].F[0] = float32(math.Inf(1))
			}
		}
	}
	d, err := data.Embedded(data.Train)
	if err != nil {
		t.Fatal(err)
	}
	sub := data.Subset(d, 256)
	_, err = Train(g, sub, cfg)
	if err == nil || !strings.Contains(err.Error(), "NaN") || !strings.Contains(err.Error(), cfg.Checkpoint) {
		t.Fatalf("error %v, want a NaN loss naming the checkpoint", err)
	}
	c, err := loadCheckpoint(cfg.Checkpoint, cfg.Header(sub), 1<<24)
	if err != nil {
		t.Fatal(err)
	}
	if c.Epoch != 1 || c.Step != 0 {
		t.Errorf("checkpoint at epoch %d step %d, want the end of epoch 1", c.Epoch, c.Step)
	}
	for name, v := range c.Tensors {
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatalf("checkpoint tensor %s holds %v", name, x)
			}
		}
	}
}
