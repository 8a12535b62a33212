package search

import (
	"fmt"
	"math"

	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/supernet"
)

// trainConfig is the training run with which Quantize fine-tunes.
func (cfg QuantizeConfig) trainConfig() train.Config {
	depends := append(ckpt.Settings{}, cfg.Depends...)
	depends.Add("calibration batches", cfg.CalibBatches)
	return train.Config{Epochs: cfg.Epochs, Batch: cfg.Batch, LR: cfg.LR, Momentum: cfg.Momentum, Nesterov: true,
		WeightDecay: cfg.WeightDecay, Seed: cfg.Seed, Norm: cfg.Norm, Augment: cfg.Augment, Log: cfg.Log,
		Checkpoint: cfg.Checkpoint, Resume: cfg.Resume, Context: cfg.Context, Depends: depends}
}

// CheckResume checks that cfg.Checkpoint holds, complete, the fine-tuning that cfg
// describes on trainSet (ckpt.Check); the error names the file and the first setting
// that differs. Quantize checks it before calibrating; a caller may before any work.
func (cfg QuantizeConfig) CheckResume(trainSet *data.Dataset) error {
	if cfg.Epochs < 1 {
		return fmt.Errorf("--resume %s: a post-training quantization (no fine-tuning epochs) has nothing to continue", cfg.Checkpoint)
	}
	return ckpt.Check(cfg.Checkpoint, cfg.trainConfig().Header(trainSet))
}

// CheckResume checks that cfg.Checkpoint holds, complete, a search of sn on trainSet with
// cfg (ckpt.Check); the error names the file and the first setting that differs.
func (cfg SearchConfig) CheckResume(sn *supernet.Supernet, trainSet *data.Dataset) error {
	return ckpt.Check(cfg.Checkpoint, cfg.Header(sn, trainSet))
}

// CheckHoldout returns the error Search gives when the share of n training samples it
// holds out for the architecture steps (HoldOut, rounded as data.Holdout rounds it) is
// less than one batch: a caller may check it before any work.
func (cfg SearchConfig) CheckHoldout(n int) error {
	if held := int(math.Round(cfg.HoldOut * float64(n))); held < cfg.Batch {
		return fmt.Errorf("the search holds out %g%% of the training data for its architecture steps: %d of %d samples, less than one batch of %d; use at least %d training samples or a smaller --batch",
			100*cfg.HoldOut, held, n, cfg.Batch, int(math.Ceil(float64(cfg.Batch)/cfg.HoldOut-1e-9)))
	}
	return nil
}
