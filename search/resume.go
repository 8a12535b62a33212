package search

import (
	"github.com/qnas/qnas/internal/field"
	"math"

	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/supernet"
)

// parts returns the training runs with which FineTune fine-tunes: all of it (one or no
// epoch), or the head (all epochs but the last) and the tail (the last epoch, which trains
// what the export computes; its Frozen parameters are set by FineTune from the graph).
func (cfg QuantizeConfig) parts() (all, head, tail train.Config) {
	depends := append(ckpt.Settings{}, cfg.Depends...)
	depends.Add("calibration batches", cfg.CalibBatches)
	depends.Add("fine-tuning epochs", cfg.Epochs) // the parts' own epochs follow from it
	depends.Add("last epoch as exported", !cfg.PlainLastEpoch)
	all = train.Config{Epochs: cfg.Epochs, Batch: cfg.Batch, LR: cfg.LR, Momentum: cfg.Momentum, Nesterov: true,
		WeightDecay: cfg.WeightDecay, Seed: cfg.Seed, Norm: cfg.Norm, Augment: cfg.Augment, Log: cfg.Log,
		Checkpoint: cfg.Checkpoint, Resume: cfg.Resume, Context: cfg.Context, Distill: cfg.Distill, Depends: depends}
	head = all
	head.Until = cfg.Epochs - 1
	tail = all
	tail.From, tail.FrozenBN = cfg.Epochs-1, true // on the schedule and data order of all
	return all, head, tail
}

// CheckResume checks that cfg.Checkpoint holds, complete, a fine-tuning of the
// architecture r that cfg describes on trainSet (either part of it: see FineTune), with
// ckpt.Check; the error names the file and the first setting that differs. Quantize checks
// it before calibrating; a caller may before any work. With r nil (not derived yet) the
// count of parameters the tail freezes is not compared.
func (cfg QuantizeConfig) CheckResume(r *supernet.Resolved, trainSet *data.Dataset) error {
	if cfg.Epochs < 1 {
		return field.Errorf("QuantizeConfig.Epochs", " 0: a post-training quantization has no fine-tuning to continue from %s", cfg.Checkpoint)
	}
	all, head, tail := cfg.parts()
	if cfg.Epochs == 1 || cfg.PlainLastEpoch {
		return ckpt.Check(cfg.Checkpoint, all.Header(trainSet))
	}
	wantTail := tail.Header(trainSet)
	if r != nil {
		if g, err := r.Apply(); err == nil {
			wantTail = tailConfig(g, tail).Header(trainSet)
		}
	} else {
		for i, s := range wantTail.Settings {
			if s.Name == "frozen parameters" {
				wantTail.Settings[i].Value = ckpt.Unknown
			}
		}
	}
	h, err := ckpt.ReadHeader(cfg.Checkpoint)
	if err != nil {
		return err
	}
	if h.Value("frozen BatchNorm") == "true" { // saved by the tail
		return ckpt.Check(cfg.Checkpoint, wantTail)
	}
	return ckpt.Check(cfg.Checkpoint, head.Header(trainSet))
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
		return field.Errorf("SearchConfig.Batch", " %d: the search holds out %g%% of the training data for its architecture steps, %d of %d samples, less than one batch; use at least %d training samples or a smaller batch",
			cfg.Batch, 100*cfg.HoldOut, held, n, int(math.Ceil(float64(cfg.Batch)/cfg.HoldOut-1e-9)))
	}
	return nil
}
