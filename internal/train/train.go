// Package train runs the training loop (float training and fine-tuning) and evaluation of a
// graph on a dataset through the engine.
package train

import (
	"context"
	"fmt"
	"github.com/qnas/qnas/internal/field"
	"io"
	"time"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/optim"
	"github.com/qnas/qnas/internal/progress"
)

// Config is one training run.
type Config struct {
	Epochs      int
	Batch       int
	LR          float64 // base learning rate
	Schedule    string  // "cosine" (default) or "step"
	Momentum    float64
	Nesterov    bool
	WeightDecay float64 // applied to weights of rank ≥ 2 (convolutions, Gemm)
	Seed        uint64
	Norm        data.Normalize
	Augment     *data.Augment
	Log         io.Writer // progress bars and epoch lines; nil: silent

	// Checkpoint is the file the run's state is saved to after every epoch and when Context
	// is cancelled ("" : no checkpoints). Resume continues from it.
	Checkpoint string
	Resume     bool
	// Depends are the caller's settings a checkpoint must also match (the model, the
	// architecture); they come first in its header.
	Depends ckpt.Settings
	// Context stops the run between two steps (SIGINT, SIGTERM); the state is saved first.
	Context context.Context
	// AfterStep, when set, is called after every optimizer step (tests use it to interrupt).
	AfterStep func(epoch, step int)
	// FrozenBN runs every BatchNormalization on its running statistics, which stay fixed,
	// while γ, β and the rest train.
	FrozenBN bool
	// Frozen names parameters that must not train.
	Frozen []string
	// Distill, when set, adds knowledge distillation from a teacher to the loss.
	Distill *Distill
	// From and Until, when set, make this run the epochs [From, Until) of a schedule of
	// Epochs epochs (learning rate and data order as in the whole run): a run in parts,
	// each with its own settings.
	From, Until int
}

// until is the epoch the run stops before.
func (c Config) until() int {
	if c.Until > 0 {
		return c.Until
	}
	return c.Epochs
}

// EpochStats summarizes one epoch.
type EpochStats struct {
	Epoch    int     `json:"epoch"`
	Loss     float64 `json:"loss"`     // mean training loss
	Accuracy float64 `json:"accuracy"` // training top-1 (with augmentation, batch statistics)
	Seconds  float64 `json:"seconds"`
}

// Train trains g's parameters in place (g's constants hold the result) with SGD and the
// configured schedule, BatchNorm in training mode; the last partial batch of an epoch is
// dropped. With a Checkpoint it saves its state after every epoch and, when Context is
// cancelled, before returning an *InterruptedError; with Resume it continues from that state
// and ends with the same parameters, to the bit, as an uninterrupted run.
func Train(g *graph.Graph, d *data.Dataset, cfg Config) ([]EpochStats, error) {
	if cfg.Epochs < 1 {
		return nil, field.Errorf("Config.Epochs", " %d: must be positive", cfg.Epochs)
	}
	if cfg.Batch < 1 {
		return nil, field.Errorf("Config.Batch", " %d: must be positive", cfg.Batch)
	}
	if cfg.From < 0 || cfg.From >= cfg.until() || cfg.until() > cfg.Epochs {
		return nil, fmt.Errorf("epochs %d..%d are not a part of a %d-epoch run", cfg.From, cfg.until(), cfg.Epochs)
	}
	if err := CheckData(g, d); err != nil {
		return nil, err
	}
	sched, err := optim.ParseSchedule(orDefault(cfg.Schedule, "cosine"), cfg.LR)
	if err != nil {
		return nil, err
	}
	st, err := NewStepper(g, cfg)
	if err != nil {
		return nil, err
	}
	p, opt := st.Plan, st.SGD
	ld, err := data.NewLoader(d, data.LoaderOptions{BatchSize: cfg.Batch, Shuffle: true, DropLast: true,
		Seed: cfg.Seed, Norm: cfg.Norm, Aug: cfg.Augment})
	if err != nil {
		return nil, err
	}
	params := opt.Params
	ctx := cfg.Context
	if ctx == nil {
		ctx = context.Background()
	}
	// The state a checkpoint holds: parameters, BatchNorm running statistics, momentum.
	tensors := map[string][]float32{}
	for name, v := range p.Values {
		if v.Kind == engine.Param || v.Kind == engine.State {
			tensors[name] = v.Data
		}
	}
	velocity := map[string][]float32{}
	floats := int64(0)
	for i, v := range opt.Velocity() {
		velocity[params[i].Name] = v
		floats += int64(len(v))
	}
	for _, v := range tensors {
		floats += int64(len(v))
	}
	header := cfg.Header(d)
	var stats []EpochStats
	var lossSum float64
	var correct, seen int
	startEpoch, startStep := cfg.From, 0
	if cfg.Resume {
		if cfg.Checkpoint == "" {
			return nil, field.Errorf("Config.Resume", ": needs Config.Checkpoint, the file to continue")
		}
		c, err := loadCheckpoint(cfg.Checkpoint, header, floats)
		if err != nil {
			return nil, err
		}
		if err := restore(tensors, c.Tensors, "tensor"); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Checkpoint, err)
		}
		if err := restore(velocity, c.Velocity, "momentum buffer"); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Checkpoint, err)
		}
		stats, startEpoch, startStep = c.Stats, c.Epoch, c.Step
		lossSum, correct, seen = c.LossSum, c.Correct, c.Seen
	}
	save := func(e, s int) error {
		if cfg.Checkpoint == "" {
			return nil
		}
		return saveCheckpoint(cfg.Checkpoint, header, &checkpoint{Epoch: e, Step: s, Stats: stats, LossSum: lossSum, Correct: correct, Seen: seen, Tensors: tensors, Velocity: velocity})
	}
	x := st.Input()
	y := make([]int32, cfg.Batch)
	steps := ld.Len()
	total := steps * cfg.Epochs
	var guard Guard // restarts with a resumed run
	for e := startEpoch; e < cfg.until(); e++ {
		start, seen0 := time.Now(), seen // a resumed epoch has seen0 samples from before
		bar := progress.New(cfg.Log, fmt.Sprintf("epoch %d/%d", e+1, cfg.Epochs), steps)
		s0 := 0
		if e == startEpoch {
			s0 = startStep
		}
		ld.Seek(e, s0)
		for s := s0; ; s++ {
			select {
			case <-ctx.Done():
				if cfg.Checkpoint == "" {
					return stats, fmt.Errorf("interrupted at epoch %d step %d (no checkpoint file)", e+1, s+1)
				}
				if err := save(e, s); err != nil {
					return stats, err
				}
				bar.Stop(s, "interrupted")
				return stats, &InterruptedError{Checkpoint: cfg.Checkpoint}
			default:
			}
			n := ld.Next(x, y)
			if n == 0 {
				break
			}
			if err := ld.Err(); err != nil { // an image that did not decode
				if cerr := save(e, s); cerr != nil {
					return stats, cerr
				}
				return stats, err
			}
			loss, c := st.Loss(y)
			if bad, l0, now := guard.Add(loss); bad {
				return stats, &DivergedError{What: "training", Epoch: e + 1, Step: s + 1, Start: l0, Now: now, LR: cfg.LR, Checkpoint: lastGood(cfg.Checkpoint, e, startEpoch, cfg.Resume)}
			}
			st.Update(sched.LR(e*steps+s, total))
			lossSum += loss * float64(n)
			correct += c
			seen += n
			bar.Update(s+1, fmt.Sprintf("loss %.4f acc %.2f%%", lossSum/float64(seen), 100*float64(correct)/float64(seen)))
			if cfg.AfterStep != nil {
				cfg.AfterStep(e, s)
			}
		}
		st := EpochStats{Epoch: e + 1, Loss: lossSum / float64(max(seen, 1)), Accuracy: float64(correct) / float64(max(seen, 1)),
			Seconds: time.Since(start).Seconds()}
		bar.Done(fmt.Sprintf("loss %.4f acc %.2f%% %.0f img/s", st.Loss, 100*st.Accuracy, float64(seen-seen0)/st.Seconds))
		stats = append(stats, st)
		lossSum, correct, seen = 0, 0, 0
		if err := save(e+1, 0); err != nil {
			return stats, err
		}
	}
	return stats, nil
}

// lastGood is the checkpoint that holds the state before epoch e (0-based) of a run that
// started at epoch start: "" when none was written.
func lastGood(ckpt string, e, start int, resumed bool) string {
	if ckpt == "" || (e == start && !resumed) {
		return ""
	}
	return ckpt
}

// restore copies saved tensors into the live ones, which must match in names and sizes.
func restore(live, saved map[string][]float32, what string) error {
	if len(live) != len(saved) {
		return fmt.Errorf("has %d %ss, the model %d", len(saved), what, len(live))
	}
	for name, dst := range live {
		src, ok := saved[name]
		if !ok || len(src) != len(dst) {
			return fmt.Errorf("%s %q is missing or has another size", what, name)
		}
		copy(dst, src)
	}
	return nil
}

// Eval is the result of Evaluate.
type Eval struct {
	Accuracy float64 `json:"accuracy"`
	Loss     float64 `json:"loss"`
	Samples  int     `json:"samples"`
}

// EvalMemory bounds the memory of Evaluate's plans: it takes fewer than its batch samples at
// a time when a plan of that batch would allocate more than this many bytes (ImageNet-size
// inputs; models at 28×28 evaluate in batches of 256 in a small fraction of it).
const EvalMemory = 1 << 30

// Evaluate computes top-1 accuracy and mean cross-entropy of g on every sample of d, in
// inference mode, in batches of at most batch samples and EvalMemory bytes.
func Evaluate(g *graph.Graph, d *data.Dataset, norm data.Normalize, batch int, log io.Writer) (Eval, error) {
	if batch < 1 {
		return Eval{}, field.Errorf("Batch", " %d: must be positive", batch)
	}
	if err := CheckData(g, d); err != nil {
		return Eval{}, err
	}
	if err := norm.Check(d.C); err != nil {
		return Eval{}, err
	}
	batch, err := evalBatch(g, min(batch, d.N))
	if err != nil {
		return Eval{}, err
	}
	plans := map[int]*engine.Plan{}
	plan := func(n int) (*engine.Plan, error) {
		if p, ok := plans[n]; ok {
			return p, nil
		}
		p, err := engine.Compile(g, n, engine.Options{Inference: true})
		plans[n] = p
		return p, err
	}
	idx := make([]int, 0, batch)
	var res Eval
	var lossSum float64
	bar := progress.New(log, "eval", d.N)
	for start := 0; start < d.N; start += batch {
		n := min(batch, d.N-start)
		p, err := plan(n)
		if err != nil {
			return Eval{}, err
		}
		idx = idx[:0]
		for i := start; i < start+n; i++ {
			idx = append(idx, i)
		}
		y := make([]int32, n)
		d.Batch(idx, norm, nil, nil, p.Value(g.Inputs[0]).Data, y)
		if err := d.Err(); err != nil {
			return Eval{}, err
		}
		p.Forward(false)
		loss, c := p.SoftmaxCrossEntropy(g.Outputs[0], y)
		lossSum += loss * float64(n)
		res.Samples += n
		res.Accuracy += float64(c)
		bar.Update(res.Samples, "")
	}
	res.Accuracy /= float64(res.Samples)
	res.Loss = lossSum / float64(res.Samples)
	bar.Done(fmt.Sprintf("accuracy %.2f%%", 100*res.Accuracy))
	return res, nil
}

// evalBatch returns the largest batch up to batch whose inference plan of g takes at most
// about EvalMemory bytes (at least 1), judged from a plan of one sample.
func evalBatch(g *graph.Graph, batch int) (int, error) {
	if batch <= 1 {
		return batch, nil
	}
	one, err := engine.Compile(g, 1, engine.Options{Inference: true})
	if err != nil {
		return 0, err
	}
	return int(min(int64(batch), max(1, EvalMemory/max(1, one.Bytes())))), nil
}

// CheckData verifies that d fits g: one input of shape N×C×H×W (to which an image folder's
// photos are then resized, data.Dataset.Fit) and one output with at least as many classes
// as the labels use.
func CheckData(g *graph.Graph, d *data.Dataset) error {
	if len(g.Inputs) != 1 || len(g.Outputs) < 1 {
		return fmt.Errorf("model has %d inputs and %d outputs; qnas trains single-input classifiers", len(g.Inputs), len(g.Outputs))
	}
	s := g.Shapes[g.Inputs[0]]
	if len(s) != 4 {
		return fmt.Errorf("model input %q has shape %v, want N×C×H×W", g.Inputs[0], s)
	}
	if err := d.Fit(s[1], s[2], s[3]); err != nil {
		return err
	}
	o := g.Shapes[g.Outputs[0]]
	if len(o) != 2 {
		return fmt.Errorf("model output %q has shape %v, want N×classes", g.Outputs[0], o)
	}
	if d.Classes > o[1] {
		return fmt.Errorf("%s: data has %d classes, model output %q has %d", d.Source, d.Classes, g.Outputs[0], o[1])
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Stepper is the training step Train runs, for callers that feed their own batches (qnas
// bench): forward, loss (with distillation when set), backward and an SGD update with
// momentum and weight decay on weights of rank ≥ 2 only.
type Stepper struct {
	Plan     *engine.Plan
	SGD      *optim.SGD
	teacher  *Teacher
	output   string
	frozenBN bool
}

// NewStepper compiles g for batches of cfg.Batch with cfg's optimizer, frozen parameters,
// frozen BatchNorm and distillation.
func NewStepper(g *graph.Graph, cfg Config) (*Stepper, error) {
	frozen := map[string]bool{}
	for _, name := range cfg.Frozen {
		frozen[name] = true
	}
	p, err := engine.Compile(g, cfg.Batch, engine.Options{Frozen: frozen})
	if err != nil {
		return nil, err
	}
	teacher, err := NewTeacher(cfg.Distill, cfg.Batch)
	if err != nil {
		return nil, err
	}
	var params []optim.Param
	noDecay := map[string]bool{}
	for _, v := range p.Params {
		params = append(params, optim.Param{Name: v.Name, Data: v.Data, Grad: v.Grad})
		if len(v.Shape) < 2 {
			noDecay[v.Name] = true
		}
	}
	opt := &optim.SGD{Params: params, Momentum: cfg.Momentum, Nesterov: cfg.Nesterov, WeightDecay: cfg.WeightDecay, NoDecay: noDecay}
	return &Stepper{Plan: p, SGD: opt, teacher: teacher, output: g.Outputs[0], frozenBN: cfg.FrozenBN}, nil
}

// Input returns the buffer of the model's input batch, which the caller fills.
func (st *Stepper) Input() []float32 { return st.Plan.Value(st.Plan.Graph.Inputs[0]).Data }

// Loss runs the forward pass on the input buffer and returns the batch's mean loss against
// labels and the count of correct predictions.
func (st *Stepper) Loss(labels []int32) (loss float64, correct int) {
	st.Plan.Forward(!st.frozenBN)
	return st.teacher.Loss(st.Plan, st.output, st.Input(), labels)
}

// Update backpropagates the last Loss and takes an SGD step at learning rate lr.
func (st *Stepper) Update(lr float64) {
	st.Plan.Backward()
	st.SGD.Step(lr)
}
