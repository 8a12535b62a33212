package main

import (
	"fmt"
	"io"
	"os"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/search"
	"github.com/qnas/qnas/supernet"
)

// checkpointPlan is where a run of quantize or optimize keeps its checkpoints, and which
// of them it continues (--resume FILE): FILE itself, never a file picked by name.
type checkpointPlan struct {
	search, fineTune             string // "": none
	resumeSearch, resumeFineTune bool
}

// resumeHeader reads the header of the --resume file: it must exist and be a qnas
// checkpoint. Errors name the flag and the file.
func resumeHeader(path string) (*ckpt.Header, error) {
	h, err := ckpt.ReadHeader(path)
	if err != nil {
		return nil, fmt.Errorf("--resume %w", err)
	}
	return h, nil
}

// planCheckpoints sets quantize's checkpoint: --resume FILE continues FILE (a fine-tuning
// checkpoint), else OUT.onnx.ckpt is written when there is a fine-tuning.
func (o *quantizeOptions) planCheckpoints() error {
	if o.Resume != "" && o.Epochs == 0 {
		return usageError{fmt.Errorf("--resume continues a fine-tuning, and --epochs 0 (post-training quantization) has none")}
	}
	o.ckpt = checkpointPlan{}
	switch {
	case o.Resume != "":
		h, err := resumeHeader(o.Resume)
		if err != nil {
			return err
		}
		if h.Kind != train.CheckpointKind {
			return fmt.Errorf("--resume %s holds the state of a %s run; quantize continues a fine-tuning (a %s run)", o.Resume, h.Kind, train.CheckpointKind)
		}
		o.ckpt.fineTune, o.ckpt.resumeFineTune = o.Resume, true
	case o.Epochs > 0 && o.Out != "":
		o.ckpt.fineTune = o.Out + ".ckpt"
	}
	return nil
}

// planCheckpoints sets optimize's checkpoints, OUT.onnx.search.ckpt and OUT.onnx.ckpt.
// --resume FILE continues FILE: a search checkpoint continues the search (then the
// fine-tuning starts afresh), a fine-tuning checkpoint continues the fine-tuning after
// redoing the finished search from OUT.onnx.search.ckpt, which must be there.
func (o *optimizeOptions) planCheckpoints() error {
	o.ckpt = checkpointPlan{search: o.Out + ".search.ckpt"}
	if o.FTEpochs > 0 {
		o.ckpt.fineTune = o.Out + ".ckpt"
	}
	if o.Resume == "" {
		return nil
	}
	h, err := resumeHeader(o.Resume)
	if err != nil {
		return err
	}
	switch h.Kind {
	case search.SearchCheckpointKind:
		o.ckpt.search, o.ckpt.resumeSearch = o.Resume, true
	case train.CheckpointKind:
		if o.FTEpochs == 0 {
			return usageError{fmt.Errorf("--resume %s continues a fine-tuning, and --ft-epochs 0 has none", o.Resume)}
		}
		sh, err := ckpt.ReadHeader(o.ckpt.search)
		if err != nil || sh.Kind != search.SearchCheckpointKind {
			return fmt.Errorf("--resume %s continues the fine-tuning after a search, whose checkpoint %s is needed too and is missing or not a search checkpoint", o.Resume, o.ckpt.search)
		}
		o.ckpt.fineTune, o.ckpt.resumeFineTune, o.ckpt.resumeSearch = o.Resume, true, true
	default:
		return fmt.Errorf("--resume %s holds the state of a %s run, not of a search or a fine-tuning", o.Resume, h.Kind)
	}
	return nil
}

// addTo adds the plan's checkpoints to the run's outputs.
func (p checkpointPlan) addTo(f *runFiles) {
	f.write("the search checkpoint", p.search)
	f.write("the fine-tuning checkpoint", p.fineTune)
}

// noteStale tells on stderr which checkpoints a run starting afresh will replace.
func (p checkpointPlan) noteStale(stderr io.Writer) {
	if p.search != "" && !p.resumeSearch {
		noteStaleCheckpoint(stderr, p.search)
	}
	if p.fineTune != "" && !p.resumeFineTune {
		noteStaleCheckpoint(stderr, p.fineTune)
	}
}

// quantizeConfig returns the fine-tuning of the architecture r of the model g read from
// path (the checkpoint, what it depends on, the flags; g is the distillation teacher); a
// run that writes no model (optimize's later seeds, baselines) keeps no checkpoint. r may
// be nil for a check of a checkpoint that skips the architecture.
func (q *quantFlags) quantizeConfig(stderr io.Writer, path string, g *graph.Graph, r *supernet.Resolved, epochs int, norm data.Normalize) (search.QuantizeConfig, error) {
	cfg := search.QuantizeConfig{Epochs: epochs, CalibBatches: q.Calib, Batch: q.Batch, LR: q.LR, Momentum: q.Momentum,
		WeightDecay: q.WD, Seed: q.Seed, Norm: norm, Log: stderr, Distill: q.distill(g), PlainLastEpoch: !q.Exported}
	if q.Augment {
		cfg.Augment = &data.Augment{PadCrop: 2, HFlip: true}
	}
	if q.Out == "" || epochs == 0 {
		return cfg, nil
	}
	cfg.Checkpoint, cfg.Resume = q.ckpt.fineTune, q.ckpt.resumeFineTune
	h, err := q.modelSetting(path)
	if err != nil {
		return cfg, err
	}
	cfg.Depends = ckpt.Settings{h}
	if r == nil { // not derived yet: a check before the search skips it
		cfg.Depends = append(cfg.Depends, ckpt.Setting{Name: "architecture", Value: ckpt.Unknown})
	} else {
		cfg.Depends.Add("architecture", hashBytes(supernet.MarshalArch(r.Arch(), nil)))
	}
	return cfg, nil
}

// modelSetting is the checkpoint setting that names the model's content.
func (q *quantFlags) modelSetting(path string) (ckpt.Setting, error) {
	if q.modelHash == "" {
		h, err := fileHash(path)
		if err != nil {
			return ckpt.Setting{}, err
		}
		q.modelHash = h
	}
	return ckpt.Setting{Name: "model", Value: q.modelHash}, nil
}

// removeCheckpoint deletes a finished run's checkpoint, and only a file that is one.
func removeCheckpoint(path string) {
	if path == "" {
		return
	}
	if _, err := ckpt.ReadHeader(path); err == nil {
		os.Remove(path)
	}
}

// checkResume checks, before any work, that the fine-tuning checkpoint --resume names
// belongs to this run (r nil: all but the architecture, not known yet).
func (q *quantFlags) checkResume(path string, g *graph.Graph, r *supernet.Resolved, epochs int, trainSet *data.Dataset, norm data.Normalize) error {
	if !q.ckpt.resumeFineTune || q.Out == "" {
		return nil
	}
	cfg, err := q.quantizeConfig(nil, path, g, r, epochs, norm)
	if err != nil {
		return err
	}
	return cfg.CheckResume(r, trainSet)
}
