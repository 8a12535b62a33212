package qnas

import (
	"fmt"
	"io"
	"os"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/field"
	"github.com/qnas/qnas/internal/outputs"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/search"
	"github.com/qnas/qnas/supernet"
)

// session is one run's model, data and checkpoints, as Quantize and Optimize share them.
type session struct {
	o        *Options
	model    string // the model's file
	g        *graph.Graph
	space    *supernet.Space
	cm       supernet.CostModel
	teacher  *graph.Graph // the distillation teacher: the model as trained
	trainSet *data.Dataset
	testSet  *data.Dataset
	norm     data.Normalize
	noNorm   bool // no normalization was found (a note says so)
	// teacherNote says why distillation is off for this run (checkTeacher), "" when it is not.
	teacherNote string
	floatEval   *train.Eval // the float model on the test split, once evaluated (evalFloat)
	ckpt        checkpointPlan
	modelHash   string
}

// checkFiles applies the output policy to the run's files: the model, extra inputs
// (role → path), the output, its sidecars, the report and the checkpoints.
func (s *session) checkFiles(reads ...namedFile) error {
	f := &outputs.Files{}
	f.Read("the input model", s.model)
	for _, r := range reads {
		f.Read(r.role, r.path)
	}
	if s.o.Target != "" {
		if fi, err := os.Stat(s.o.Target); err == nil && !fi.IsDir() {
			f.Read("Target", s.o.Target)
		}
	}
	addOutput(f, s.o.Output)
	s.ckpt.addTo(f)
	return f.Check()
}

// load reads the model (BatchNorm kept) and finds the layers it offers to quantize and
// prune; it also resolves the cost model.
func (s *session) load() error {
	cm, err := s.o.costModel()
	if err != nil {
		return err
	}
	s.cm = cm
	g, err := graph.Load(s.model, s.o.Import)
	if err != nil {
		return err
	}
	if err := g.Canonicalize(graph.CanonicalOptions{}); err != nil {
		return fmt.Errorf("%s: %w", s.model, err)
	}
	sp, err := supernet.NewSpace(g)
	if err != nil {
		return fmt.Errorf("%s: %w", s.model, err)
	}
	sp.Pow2Scales = s.o.Pow2Scales
	s.g, s.space, s.teacher = g, sp, g
	return nil
}

// openData opens the training and test splits and the normalization.
func (s *session) openData() error {
	d := s.o.Data
	open := func(split data.Split, limit int) (*data.Dataset, error) {
		var ds *data.Dataset
		var err error
		if d.Dir == EmbeddedData {
			ds, err = data.Embedded(split)
		} else {
			ds, err = data.Open(d.Dir, split)
		}
		if err != nil {
			return nil, err
		}
		if limit > 0 {
			ds = data.Subset(ds, limit)
		}
		return ds, train.CheckData(s.g, ds)
	}
	var err error
	if s.trainSet, err = open(data.Train, d.LimitTrain); err != nil {
		return err
	}
	if s.testSet, err = open(data.Test, d.LimitTest); err != nil {
		return err
	}
	if b := s.o.Training.Batch; b > s.trainSet.N {
		return field.Errorf("Training.Batch", " %d is more than the %d training samples of %s", b, s.trainSet.N, s.trainSet.Source)
	}
	channels := 0
	if len(s.g.Inputs) == 1 && len(s.g.Shapes[s.g.Inputs[0]]) == 4 {
		channels = int(s.g.Shapes[s.g.Inputs[0]][1])
	}
	s.norm, err = data.ModelNormalization(d.Mean, d.Std, s.g.Meta, s.g.Source.Path, channels)
	s.noNorm = s.norm.Mean == nil && s.norm.Std == nil
	return err
}

// notes says, once every check has passed and before the work starts, what the run
// assumes: no normalization, checkpoints of an earlier run it replaces. A resumed run
// says nothing of them (its first run did).
func (s *session) notes() {
	if s.o.Resume != "" {
		return
	}
	if s.noNorm {
		s.o.note(NoNormalizationNote)
	}
	if s.teacherNote != "" {
		s.o.note("%s", s.teacherNote)
	}
	s.ckpt.noteStale(s.o)
}

// NoNormalizationNote is the note of a run whose inputs are not normalized.
const NoNormalizationNote = "note: no Data.Mean/Data.Std and no qnas.mean/qnas.std in the model: inputs are pixels scaled to [0,1]"

// evalFloat evaluates the float model on the test split, once per run (BatchNorm restored
// or not, it computes the same function), drawing progress on bars.
func (s *session) evalFloat(bars io.Writer) (train.Eval, error) {
	if s.floatEval == nil {
		ev, err := train.Evaluate(s.g, s.testSet, s.norm, 256, bars)
		if err != nil {
			return ev, err
		}
		s.floatEval = &ev
	}
	return *s.floatEval, nil
}

// checkTeacher turns distillation off when the run trains (trains) and the input model is
// no teacher for this data: on the test split, under the run's normalization, it scores
// below twice the accuracy of guessing (a wrong Data.Mean/Data.Std, or labels it was not
// trained for). Distilling from it would pull the quantized model, whose calibration
// re-estimates its BatchNorm statistics on this data, toward that model's errors. It decides
// silently (notes says so) and before any checkpoint is checked, so that a resumed run
// decides the same and a refused one prints one line.
func (s *session) checkTeacher(trains bool) error {
	if !trains || s.o.Training.Distill == 0 {
		return nil
	}
	ev, err := s.evalFloat(io.Discard)
	if err != nil {
		return err
	}
	classes := 2
	if sh := s.g.Shapes[s.g.Outputs[0]]; len(sh) == 2 && sh[1] > 2 {
		classes = int(sh[1])
	}
	if ev.Accuracy < 2/float64(classes) {
		s.teacherNote = fmt.Sprintf("note: distillation off: the input model scores %.2f%% on the test data, near guessing (%.2f%%), so it is no teacher (are Data.Mean/Data.Std right?)",
			100*ev.Accuracy, 100/float64(classes))
		s.o.Training.Distill = 0
	}
	return nil
}

// restoreBatchNorm puts the model in the form every model trains in (search.TrainingForm:
// its own BatchNorms folded into their convs, then one after every conv from statistics of
// Calib batches of the training data) and rebuilds its space, so that a folded export and
// its BatchNorm-kept twin train alike. Only a model with convolutions no BatchNorm
// normalized (a folded export) gets a note.
func (s *session) restoreBatchNorm() error {
	t := s.o.Training
	bare := len(s.g.UnnormalizedConvs())
	rg, added, err := search.TrainingForm(s.g, s.trainSet, s.norm, t.Calib, t.Batch, s.o.bars())
	if err != nil || len(added) == 0 {
		return err
	}
	if bare > 0 {
		s.o.note("%d convolutions have no BatchNorm (a folded export): training with BatchNorm restored after each; the output is folded again", bare)
	}
	sp, err := supernet.NewSpace(rg)
	if err != nil {
		return err
	}
	sp.Pow2Scales = s.o.Pow2Scales
	s.g, s.space, s.teacher = rg, sp, rg
	return nil
}
