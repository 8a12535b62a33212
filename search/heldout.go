package search

import (
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/supernet"
)

// HeldOut evaluates the architecture r as post-training quantization makes it (clips
// calibrated, BatchNorm statistics re-estimated, both on the part of trainSet the weight
// steps of a search with cfg train on) on the part its architecture steps held out
// (cfg.HoldOut, cfg.Seed): what the search can say about a derived architecture without
// touching the test data.
func HeldOut(r *supernet.Resolved, trainSet *data.Dataset, cfg SearchConfig) (train.Eval, error) {
	if err := cfg.CheckHoldout(trainSet.N); err != nil {
		return train.Eval{}, err
	}
	wData, aData, err := data.Holdout(trainSet, cfg.HoldOut, cfg.Seed)
	if err != nil {
		return train.Eval{}, err
	}
	g, err := Calibrated(r, wData, QuantizeConfig{CalibBatches: cfg.CalibBatches, Batch: cfg.Batch, Norm: cfg.Norm, Log: cfg.Log})
	if err != nil {
		return train.Eval{}, err
	}
	if err := ReestimateBN(g, wData, cfg.Norm, cfg.CalibBatches, cfg.Batch, cfg.Log); err != nil {
		return train.Eval{}, err
	}
	return train.Evaluate(g, aData, cfg.Norm, 256, cfg.Log)
}
