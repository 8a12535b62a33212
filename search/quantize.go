package search

import (
	"context"
	"fmt"
	"io"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/ckpt"
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
	// Checkpoint, Resume, Context and Depends work as in train.Config.
	Checkpoint string
	Resume     bool
	Context    context.Context
	Depends    ckpt.Settings
}

// Quantize builds the training graph of the architecture r from its float model, calibrates
// its activation clips on the training data, fine-tunes it with quantization in the loop for
// cfg.Epochs (straight-through gradients, learned clips, BatchNorm in training mode), and
// re-estimates the BatchNorm statistics of the quantized model. It returns the trained
// fake-quantized graph and the per-epoch statistics.
func Quantize(r *supernet.Resolved, trainSet *data.Dataset, cfg QuantizeConfig) (*graph.Graph, []train.EpochStats, error) {
	if cfg.CalibBatches < 1 || cfg.Batch < 1 {
		return nil, nil, fmt.Errorf("--calib and --batch must be positive (got %d, %d)", cfg.CalibBatches, cfg.Batch)
	}
	if cfg.Resume {
		if err := cfg.CheckResume(trainSet); err != nil {
			return nil, nil, err
		}
	}
	g, err := r.Apply()
	if err != nil {
		return nil, nil, err
	}
	if err := Calibrate(g, trainSet, cfg.Norm, cfg.CalibBatches, cfg.Batch, cfg.Log); err != nil {
		return nil, nil, err
	}
	var stats []train.EpochStats
	if cfg.Epochs > 0 {
		stats, err = train.Train(g, trainSet, cfg.trainConfig())
		if err != nil {
			return nil, stats, err
		}
	}
	if err := ReestimateBN(g, trainSet, cfg.Norm, cfg.CalibBatches, cfg.Batch, cfg.Log); err != nil {
		return nil, stats, err
	}
	return g, stats, nil
}
