package search

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/supernet"
)

// QuantizeConfig is one run of Quantize.
type QuantizeConfig struct {
	// Epochs of quantization-aware fine-tuning; 0 is post-training quantization.
	Epochs int
	// CalibBatches batches of the training data calibrate the activation clips and, after
	// training, re-estimate the BatchNorm statistics.
	CalibBatches int
	Batch        int
	LR           float64 // base learning rate of the fine-tuning (cosine schedule)
	Momentum     float64
	WeightDecay  float64
	Seed         uint64
	Norm         data.Normalize
	Augment      *data.Augment
	Log          io.Writer
	// Checkpoint, Resume and Context work as in train.Config.
	Checkpoint string
	Resume     bool
	Context    context.Context
}

// Quantize builds the training graph of the architecture r from its float model, calibrates
// its activation clips on the training data, fine-tunes it with quantization in the loop for
// cfg.Epochs (straight-through gradients, learned clips, BatchNorm in training mode), and
// re-estimates the BatchNorm statistics of the quantized model. With two epochs or more, the
// last one trains the model with its BatchNorms folded and its biases on their integer grids
// (supernet.FoldBatchNorms), at a tenth of the learning rate, so the model trained is the
// model exported. It returns the trained fake-quantized graph and the per-epoch statistics.
func Quantize(r *supernet.Resolved, trainSet *data.Dataset, cfg QuantizeConfig) (*graph.Graph, []train.EpochStats, error) {
	if cfg.CalibBatches < 1 || cfg.Batch < 1 {
		return nil, nil, fmt.Errorf("--calib and --batch must be positive (got %d, %d)", cfg.CalibBatches, cfg.Batch)
	}
	g, err := r.Apply()
	if err != nil {
		return nil, nil, err
	}
	if err := Calibrate(g, trainSet, cfg.Norm, cfg.CalibBatches, cfg.Batch, cfg.Log); err != nil {
		return nil, nil, err
	}
	tc := train.Config{Batch: cfg.Batch, LR: cfg.LR, Momentum: cfg.Momentum, Nesterov: true, WeightDecay: cfg.WeightDecay,
		Seed: cfg.Seed, Norm: cfg.Norm, Augment: cfg.Augment, Log: cfg.Log, Context: cfg.Context}
	tail := cfg.Epochs >= 2 // the last epoch trains the folded model (with integer biases)
	tailCkpt := ""
	if cfg.Checkpoint != "" {
		tailCkpt = cfg.Checkpoint + ".tail"
	}
	inTail := false
	if _, err := os.Stat(tailCkpt); tail && cfg.Resume && tailCkpt != "" && err == nil {
		inTail = true // the first part is done: its result is in the tail's checkpoint
	}
	var stats []train.EpochStats
	if n := cfg.Epochs - btoi(tail); n > 0 && !inTail {
		c := tc
		c.Epochs, c.Checkpoint, c.Resume = n, cfg.Checkpoint, cfg.Resume
		if stats, err = train.Train(g, trainSet, c); err != nil {
			return nil, stats, err
		}
	}
	if err := ReestimateBN(g, trainSet, cfg.Norm, cfg.CalibBatches, cfg.Batch, cfg.Log); err != nil {
		return nil, stats, err
	}
	if !tail {
		return g, stats, nil
	}
	if g, err = supernet.FoldBatchNorms(g); err != nil {
		return nil, stats, err
	}
	c := tc
	c.Epochs, c.LR, c.Checkpoint, c.Resume = 1, cfg.LR*tailLR, tailCkpt, inTail
	more, err := train.Train(g, trainSet, c)
	stats = append(stats, more...)
	if err != nil {
		return nil, stats, err
	}
	if tailCkpt != "" {
		os.Remove(cfg.Checkpoint) // the tail's checkpoint superseded it
	}
	return g, stats, ReestimateBN(g, trainSet, cfg.Norm, cfg.CalibBatches, cfg.Batch, cfg.Log)
}

// tailLR is the learning rate of the last fine-tuning epoch, on the folded model, relative
// to --lr.
const tailLR = 0.1

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
