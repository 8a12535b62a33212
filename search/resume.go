package search

import (
	"fmt"

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

// CheckResume checks, reading only its header, that cfg.Checkpoint holds the fine-tuning
// that cfg describes on trainSet; the error names the file and the first setting that
// differs. Quantize checks it before calibrating; a caller may check it before any work.
func (cfg QuantizeConfig) CheckResume(trainSet *data.Dataset) error {
	if cfg.Epochs < 1 {
		return fmt.Errorf("--resume %s: a post-training quantization (no fine-tuning epochs) has nothing to continue", cfg.Checkpoint)
	}
	h, err := ckpt.ReadHeader(cfg.Checkpoint)
	if err != nil {
		return err
	}
	return h.Match(cfg.Checkpoint, cfg.trainConfig().Header(trainSet))
}

// CheckResume checks, reading only its header, that cfg.Checkpoint holds a search of sn
// on trainSet with cfg; the error names the file and the first setting that differs.
func (cfg SearchConfig) CheckResume(sn *supernet.Supernet, trainSet *data.Dataset) error {
	h, err := ckpt.ReadHeader(cfg.Checkpoint)
	if err != nil {
		return err
	}
	return h.Match(cfg.Checkpoint, cfg.Header(sn, trainSet))
}
