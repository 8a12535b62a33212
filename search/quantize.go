package search

import (
	"context"
	"github.com/qnas/qnas/internal/field"
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
	// Distill, when set, distills the fine-tuning from a teacher (train.Distill).
	Distill *train.Distill
	// PlainLastEpoch trains the last epoch like the others instead of as exported (see
	// FineTune).
	PlainLastEpoch bool
	// Checkpoint, Resume, Context and Depends work as in train.Config.
	Checkpoint string
	Resume     bool
	Context    context.Context
	Depends    ckpt.Settings
}

// Quantize builds the training graph of the architecture r from its float model, calibrates
// its activation clips on the training data (Calibrated), fine-tunes it with quantization in
// the loop and re-estimates its BatchNorm statistics (FineTune). It returns the trained
// fake-quantized graph (in the form FineTune says) and the per-epoch statistics.
func Quantize(r *supernet.Resolved, trainSet *data.Dataset, cfg QuantizeConfig) (*graph.Graph, []train.EpochStats, error) {
	if cfg.Resume {
		if err := cfg.CheckResume(r, trainSet); err != nil {
			return nil, nil, err
		}
	}
	g, err := Calibrated(r, trainSet, cfg)
	if err != nil {
		return nil, nil, err
	}
	return FineTune(g, trainSet, cfg)
}

// Calibrated returns the training graph of the architecture r (r.Apply) with its activation
// clips calibrated on cfg.CalibBatches batches of the training data: the model of
// post-training quantization, before its BatchNorm statistics are re-estimated.
func Calibrated(r *supernet.Resolved, trainSet *data.Dataset, cfg QuantizeConfig) (*graph.Graph, error) {
	if cfg.CalibBatches < 1 {
		return nil, field.Errorf("QuantizeConfig.CalibBatches", " %d: must be positive", cfg.CalibBatches)
	}
	if cfg.Batch < 1 {
		return nil, field.Errorf("QuantizeConfig.Batch", " %d: must be positive", cfg.Batch)
	}
	g, err := r.Apply()
	if err != nil {
		return nil, err
	}
	if err := Calibrate(g, trainSet, cfg.Norm, cfg.CalibBatches, cfg.Batch, cfg.Log); err != nil {
		return nil, err
	}
	return g, nil
}

// FineTune trains the calibrated graph g for cfg.Epochs with quantization in the loop
// (straight-through gradients, learned clips, BatchNorm in training mode) and re-estimates
// the BatchNorm statistics of the quantized model (with 0 epochs, only that). With two
// epochs or more (and not cfg.PlainLastEpoch), the BatchNorm statistics are re-estimated
// before the last epoch, which trains what the export computes (supernet.TrainAsExported:
// BatchNorms on those fixed statistics with their shifts on the integer grids, biases
// rounded as export rounds them), on the same learning-rate schedule and data order, so
// the model trained is the model written. It returns the graph trained (g, or the last
// epoch's form of it, which supernet.ExportForm turns back for export.Freeze) and the
// per-epoch statistics.
func FineTune(g *graph.Graph, trainSet *data.Dataset, cfg QuantizeConfig) (*graph.Graph, []train.EpochStats, error) {
	tc, head, tail := cfg.parts()
	if cfg.Epochs < 2 || cfg.PlainLastEpoch {
		var stats []train.EpochStats
		if cfg.Epochs > 0 {
			var err error
			if stats, err = train.Train(g, trainSet, tc); err != nil {
				return nil, stats, err
			}
		}
		return g, stats, ReestimateBN(g, trainSet, cfg.Norm, cfg.CalibBatches, cfg.Batch, cfg.Log)
	}
	// One checkpoint file serves both parts; its settings say which part saved it.
	inTail := cfg.Resume && cfg.Checkpoint != "" && train.SavedBy(cfg.Checkpoint, tailConfig(g, tail), trainSet)
	var stats []train.EpochStats
	if !inTail {
		var err error
		if stats, err = train.Train(g, trainSet, head); err != nil {
			return nil, stats, err
		}
		if err := ReestimateBN(g, trainSet, cfg.Norm, cfg.CalibBatches, cfg.Batch, cfg.Log); err != nil {
			return nil, stats, err
		}
		tail.Resume = false
	}
	tg, frozen, err := supernet.TrainAsExported(g)
	if err != nil {
		return nil, stats, err
	}
	tail.Frozen = frozen
	more, err := train.Train(tg, trainSet, tail)
	return tg, append(stats, more...), err
}

// tailConfig is the tail's train.Config as FineTune completes it, for recognizing its
// checkpoint before the tail's graph exists.
func tailConfig(g *graph.Graph, tail train.Config) train.Config {
	if _, frozen, err := supernet.TrainAsExported(g); err == nil {
		tail.Frozen = frozen
	}
	return tail
}
