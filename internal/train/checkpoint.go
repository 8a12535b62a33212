package train

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"

	"github.com/qnas/qnas/internal/blas"
	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/data"
)

// checkpoint is the whole state of a training run between two steps: enough to continue
// and reach the same bytes as a run that was never stopped. The settings it depends on
// are in the file's header (package ckpt).
type checkpoint struct {
	Epoch, Step int                  // the next step to run
	Stats       []EpochStats         // finished epochs
	LossSum     float64              // running sums of the current epoch
	Correct     int                  //
	Seen        int                  //
	Tensors     map[string][]float32 // parameters and BatchNorm running statistics
	Velocity    map[string][]float32 // SGD momentum buffers
}

// CheckpointKind and CheckpointVersion identify a training checkpoint's header.
const (
	CheckpointKind    = "training"
	CheckpointVersion = 2
)

// ErrInterrupted is returned (wrapped) when training stopped on request after saving a
// checkpoint.
var ErrInterrupted = errors.New("interrupted")

// InterruptedError names the checkpoint an interrupted run saved.
type InterruptedError struct {
	Checkpoint string
	// Hint, set by the caller, says how to continue (the CLI: "continue with --resume FILE").
	Hint string
}

func (e *InterruptedError) Error() string {
	msg := "interrupted; the training state is saved in " + e.Checkpoint
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

// Unwrap lets errors.Is(err, ErrInterrupted) match.
func (e *InterruptedError) Unwrap() error { return ErrInterrupted }

// Header returns the checkpoint header of a run of cfg on d: the caller's settings
// (cfg.Depends), the data, and every setting of cfg that changes the result.
func (c Config) Header(d *data.Dataset) ckpt.Header {
	s := append(ckpt.Settings{}, c.Depends...)
	s.Add("training data", DataSetting(d))
	aug := "none"
	if c.Augment != nil {
		aug = fmt.Sprintf("%+v", *c.Augment)
	}
	for _, kv := range []struct {
		k string
		v any
	}{{"epochs", c.Epochs}, {"part", fmt.Sprintf("epochs %d..%d", c.From, c.until())}, {"batch", c.Batch}, {"lr", c.LR}, {"schedule", orDefault(c.Schedule, "cosine")}, {"momentum", c.Momentum},
		{"nesterov", c.Nesterov}, {"weight decay", c.WeightDecay}, {"seed", c.Seed}, {"mean", c.Norm.Mean}, {"std", c.Norm.Std},
		{"augment", aug}, {"frozen BatchNorm", c.FrozenBN}, {"frozen parameters", len(c.Frozen)}, {"distillation", c.Distill}} {
		s.Add(kv.k, kv.v)
	}
	return ckpt.Header{Kind: CheckpointKind, Version: CheckpointVersion, Settings: append(s, Machine()...)}
}

// Machine lists what changes how sums are split, hence the bits of a result: the thread
// count and the BLAS.
func Machine() ckpt.Settings {
	var s ckpt.Settings
	s.Add("threads", runtime.GOMAXPROCS(0))
	s.Add("BLAS", blas.Name())
	return s
}

// DataSetting identifies a data set for a checkpoint: its size, sample shape, classes
// and a hash of its labels (which differs between subsets).
func DataSetting(d *data.Dataset) string {
	h := sha256.New()
	b := make([]byte, 4*len(d.Labels))
	for i, l := range d.Labels {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(l))
	}
	h.Write(b)
	return fmt.Sprintf("%d samples of %d×%d×%d, %d classes, labels %s", d.N, d.C, d.H, d.W, d.Classes, hex.EncodeToString(h.Sum(nil))[:16])
}

func saveCheckpoint(path string, h ckpt.Header, c *checkpoint) error { return ckpt.Write(path, h, c) }

// loadCheckpoint reads a checkpoint whose header must match want and whose state may
// hold up to floats values.
func loadCheckpoint(path string, want ckpt.Header, floats int64) (*checkpoint, error) {
	var c checkpoint
	if err := ckpt.Read(path, want, ckpt.StateBound(floats), &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// SavedBy reports whether the checkpoint at path was saved by a run of cfg on d (so Train
// with cfg and Resume continues it).
func SavedBy(path string, cfg Config, d *data.Dataset) bool {
	return ckpt.Check(path, cfg.Header(d)) == nil
}
