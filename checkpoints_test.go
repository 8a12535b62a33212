package qnas

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/field"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/search"
)

// The fast mode keeps no search checkpoint: it continues a fine-tuning checkpoint alone (the
// estimate is repeated), and refuses a search checkpoint, naming Resume.
func TestSensitivityCheckpoints(t *testing.T) {
	dir := t.TempDir()
	tune, searched := filepath.Join(dir, "o.onnx.ckpt"), filepath.Join(dir, "o.onnx.search.ckpt")
	for path, kind := range map[string]string{tune: train.CheckpointKind, searched: search.SearchCheckpointKind} {
		if err := ckpt.Write(path, ckpt.Header{Kind: kind, Version: 1}, struct{}{}); err != nil {
			t.Fatal(err)
		}
	}
	opts := DefaultOptimizeOptions()
	opts.Method = MethodSensitivity
	opts.Output.Path = filepath.Join(dir, "o.onnx")
	p, err := optimizePlan(&opts)
	if err != nil || p.search != "" || p.fineTune != tune || p.resumeFineTune {
		t.Errorf("afresh: plan %+v, error %v", p, err)
	}
	opts.Resume = tune
	p, err = optimizePlan(&opts)
	if err != nil || p.search != "" || p.resumeSearch || !p.resumeFineTune || p.fineTune != tune {
		t.Errorf("resuming the fine-tuning: plan %+v, error %v", p, err)
	}
	opts.Resume = searched
	var fe *field.Error
	if _, err := optimizePlan(&opts); !errors.As(err, &fe) || fe.Name != "Resume" {
		t.Errorf("resuming a search checkpoint: error %v, want one naming Resume", err)
	}
}
