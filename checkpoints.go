package qnas

import (
	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/field"
	"github.com/qnas/qnas/internal/outputs"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/search"
	"github.com/qnas/qnas/supernet"
)

// checkpointPlan is where a run keeps its checkpoints, and which of them it continues
// (Options.Resume): that file itself, never a file picked by name.
type checkpointPlan struct {
	search, fineTune             string // "": none
	resumeSearch, resumeFineTune bool
	// simpler is the checkpoint of the final check's search of the simplest space
	// (OptimizeOptions.FinalCheck CheckSearch), continued with the search when it is there.
	simpler string
}

// resumeHeader reads the header of the Resume file: it must exist and be a qnas
// checkpoint.
func resumeHeader(path string) (*ckpt.Header, error) {
	h, err := ckpt.ReadHeader(path)
	if err != nil {
		return nil, &field.Error{Name: "Resume", Msg: " " + err.Error(), Err: err}
	}
	return h, nil
}

// quantizePlan is Quantize's checkpoint: Resume continues that file (a fine-tuning
// checkpoint), else OUT.onnx.ckpt is written when there is a fine-tuning.
func quantizePlan(o *QuantizeOptions) (checkpointPlan, error) {
	var p checkpointPlan
	if o.Resume != "" && o.Epochs == 0 {
		return p, field.Errorf("Resume", " %s: a post-training quantization (QuantizeOptions.Epochs 0) has no fine-tuning to continue", o.Resume)
	}
	switch {
	case o.Resume != "":
		h, err := resumeHeader(o.Resume)
		if err != nil {
			return p, err
		}
		if h.Kind != train.CheckpointKind {
			return p, field.Errorf("Resume", " %s holds the state of a %s run; quantize continues a fine-tuning (a %s run)", o.Resume, h.Kind, train.CheckpointKind)
		}
		p.fineTune, p.resumeFineTune = o.Resume, true
	case o.Epochs > 0 && o.Output.Path != "":
		p.fineTune = o.Output.Path + ".ckpt"
	}
	return p, nil
}

// optimizePlan is Optimize's checkpoints, OUT.onnx.search.ckpt and OUT.onnx.ckpt. Resume
// continues that file: a search checkpoint continues the search (then the fine-tuning
// starts afresh), a fine-tuning checkpoint continues the fine-tuning after redoing the
// finished search from OUT.onnx.search.ckpt, which must be there. The sensitivity method
// keeps no search checkpoint: a resumed fine-tuning repeats its estimate, which the seed
// determines.
func optimizePlan(o *OptimizeOptions) (checkpointPlan, error) {
	p := checkpointPlan{search: o.Output.Path + ".search.ckpt"}
	if o.FinalCheck == CheckSearch {
		p.simpler = o.Output.Path + ".simpler.search.ckpt"
	}
	if o.sensitivity() {
		p.search, p.simpler = "", ""
	}
	if o.FineTuneEpochs > 0 {
		p.fineTune = o.Output.Path + ".ckpt"
	}
	if o.Resume == "" {
		return p, nil
	}
	h, err := resumeHeader(o.Resume)
	if err != nil {
		return p, err
	}
	switch {
	case h.Kind == search.SearchCheckpointKind && o.sensitivity():
		return p, field.Errorf("Resume", " %s continues a search, and OptimizeOptions.Method %s does not search", o.Resume, MethodSensitivity)
	case h.Kind == search.SearchCheckpointKind:
		p.search, p.resumeSearch = o.Resume, true
	case h.Kind == train.CheckpointKind && o.FineTuneEpochs == 0:
		return p, field.Errorf("Resume", " %s continues a fine-tuning, and OptimizeOptions.FineTuneEpochs 0 has none", o.Resume)
	case h.Kind == train.CheckpointKind && o.sensitivity():
		p.fineTune, p.resumeFineTune = o.Resume, true
	case h.Kind == train.CheckpointKind:
		sh, err := ckpt.ReadHeader(p.search)
		if err != nil || sh.Kind != search.SearchCheckpointKind {
			return p, field.Errorf("Resume", " %s continues the fine-tuning after a search, whose checkpoint %s is needed too and is missing or not a search checkpoint", o.Resume, p.search)
		}
		p.fineTune, p.resumeFineTune, p.resumeSearch = o.Resume, true, true
	default:
		return p, field.Errorf("Resume", " %s holds the state of a %s run, not of a search or a fine-tuning", o.Resume, h.Kind)
	}
	return p, nil
}

// addTo adds the plan's checkpoints to the run's outputs.
func (p checkpointPlan) addTo(f *outputs.Files) {
	f.Write("the search checkpoint", p.search)
	f.Write("the final check's search checkpoint", p.simpler)
	f.Write("the fine-tuning checkpoint", p.fineTune)
}

// noteStale notes which checkpoints of an earlier run a run starting afresh replaces.
func (p checkpointPlan) noteStale(o *Options) {
	for _, c := range []struct {
		path    string
		resumed bool
	}{{p.search, p.resumeSearch}, {p.simpler, p.resumeSearch}, {p.fineTune, p.resumeFineTune}} {
		if c.path == "" || c.resumed {
			continue
		}
		if ckpt.Left(c.path) {
			o.note("note: %s is left from an earlier run; this run starts afresh and replaces it (to continue that run instead, resume it with Options.Resume %s)", c.path, c.path)
		}
	}
}

// quantizeConfig returns the fine-tuning of the architecture r of the model g (the
// checkpoint, what it depends on, the settings; g is the distillation teacher); a run that
// writes no model (Optimize's later seeds, baselines) keeps no checkpoint. r may be nil
// for a check of a checkpoint that skips the architecture.
func (s *session) quantizeConfig(r *supernet.Resolved, epochs int, out string, seed uint64) (search.QuantizeConfig, error) {
	t := s.o.Training
	cfg := search.QuantizeConfig{Epochs: epochs, CalibBatches: t.Calib, Batch: t.Batch, LR: t.LR, Momentum: t.Momentum,
		WeightDecay: t.WeightDecay, Seed: seed, Norm: s.norm, Log: s.o.bars(), Distill: s.distill(), PlainLastEpoch: !t.TrainExported}
	if t.Augment {
		cfg.Augment = &data.Augment{PadCrop: 2, HFlip: true}
	}
	if out == "" || epochs == 0 {
		return cfg, nil
	}
	cfg.Checkpoint, cfg.Resume = s.ckpt.fineTune, s.ckpt.resumeFineTune
	h, err := s.modelSetting()
	if err != nil {
		return cfg, err
	}
	cfg.Depends = ckpt.Settings{h}
	if r == nil { // not derived yet: a check before the search skips it
		cfg.Depends = append(cfg.Depends, ckpt.Setting{Name: "architecture", Value: ckpt.Unknown})
	} else {
		cfg.Depends.Add("architecture", ckpt.HashBytes(supernet.MarshalArch(r.Arch(), nil)))
	}
	if s.o.Pow2Scales {
		cfg.Depends.Add("power-of-two scales", "true")
	}
	return cfg, nil
}

// distill returns the distillation settings with the input model as teacher (nil: off).
func (s *session) distill() *train.Distill {
	if s.o.Training.Distill == 0 {
		return nil
	}
	return &train.Distill{Teacher: s.teacher, Weight: s.o.Training.Distill, Temperature: s.o.Training.DistillTemp}
}

// modelSetting is the checkpoint setting that names the model's content.
func (s *session) modelSetting() (ckpt.Setting, error) {
	if s.modelHash == "" {
		h, err := ckpt.FileHash(s.model)
		if err != nil {
			return ckpt.Setting{}, err
		}
		s.modelHash = h
	}
	return ckpt.Setting{Name: "model", Value: s.modelHash}, nil
}

// checkResume checks, before any work, that the fine-tuning checkpoint Resume names
// belongs to this run: its architecture when r is known (nil: not derived yet), all the
// rest but the frozen parameters of the last epoch, which fine-tuning checks on the graph
// it trains (the model's training form, not built yet here).
func (s *session) checkResume(r *supernet.Resolved, epochs int) error {
	if !s.ckpt.resumeFineTune || s.o.Output.Path == "" {
		return nil
	}
	cfg, err := s.quantizeConfig(r, epochs, s.o.Output.Path, s.o.Training.Seed)
	if err != nil {
		return err
	}
	return cfg.CheckResume(nil, s.trainSet)
}
