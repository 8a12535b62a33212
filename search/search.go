package search

import (
	"context"
	"fmt"
	"github.com/qnas/qnas/internal/field"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/optim"
	"github.com/qnas/qnas/internal/progress"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/supernet"
)

// SearchConfig is one run of Search (docs/method.md, "Search").
type SearchConfig struct {
	Cost   supernet.CostModel
	Budget supernet.Budget
	Epochs int // passes over the weights' share of the training data
	// Warmup is the fraction of the first epoch that trains the weights alone.
	Warmup float64
	Batch  int
	// LR, Momentum and WeightDecay are the weights' SGD (cosine schedule); ArchLR is the
	// logits' Adam learning rate.
	LR, Momentum, WeightDecay float64
	ArchLR                    float64
	// TauStart and TauEnd bound the Gumbel-softmax temperature, annealed exponentially.
	TauStart, TauEnd float64
	// HardArch and HardWeights make the architecture (weight) steps' samples one-hot in the
	// forward pass, with the soft sample's gradient (straight-through Gumbel).
	HardArch, HardWeights bool
	// ArchSharedScale gives the logits' Adam one second-moment estimate for all logits
	// (internal/optim.Adam.SharedScale) instead of one per logit.
	ArchSharedScale bool
	// MeasureWidths makes the width logits learn from measured loss differences instead of
	// the straight-through gradient of the expected channel mask: every architecture step
	// runs one more forward pass with one group's width pinned (docs/method.md,
	// "Relaxation", width prices). It needs HardArch.
	MeasureWidths bool
	// FullWidthEvery, when positive, makes every FullWidthEvery-th weight step keep every
	// channel of every prunable group (its bits as sampled), so that the channels narrow
	// samples drop keep training and the wider widths' measured prices stay those of a
	// trained network.
	FullWidthEvery int
	HoldOut        float64 // the share of the training data the logits learn on
	// Distill, when set, distills the weight steps from a teacher (train.Distill).
	Distill      *train.Distill
	CalibBatches int
	Seed         uint64
	Norm         data.Normalize
	Augment      *data.Augment
	Log          io.Writer
	Checkpoint   string
	Resume       bool
	Context      context.Context
	// Depends are the caller's settings a checkpoint must also match (the model); they
	// come first in its header.
	Depends ckpt.Settings
}

// DefaultSearchConfig returns the defaults of `qnas optimize` for a budget.
func DefaultSearchConfig(cm supernet.CostModel, budget supernet.Budget) SearchConfig {
	return SearchConfig{Cost: cm, Budget: budget, Epochs: 2, Warmup: 0.2, Batch: 128, LR: 0.01, Momentum: 0.9, WeightDecay: 5e-4,
		ArchLR: 0.01, ArchSharedScale: true, MeasureWidths: true, FullWidthEvery: 2, HardArch: true, HardWeights: true, TauStart: 5, TauEnd: 0.5, HoldOut: 0.1, CalibBatches: 16}
}

// SearchEpoch summarizes one epoch of the search.
type SearchEpoch struct {
	Epoch        int     `json:"epoch"`
	Loss         float64 `json:"loss"`          // weights' mean training loss
	ArchLoss     float64 `json:"arch_loss"`     // the logits' mean loss on the held-out share
	ExpectedCost float64 `json:"expected_cost"` // E[cost]/budget at the end of the epoch
	Tilt         float64 `json:"tilt"`          // the last budget projection's μ
	Temperature  float64 `json:"temperature"`
	Seconds      float64 `json:"seconds"`
}

// SearchResult is what Search found: the logits of every choice.
type SearchResult struct {
	Logits map[string][]float32
	// Weights are the supernet's trained weights and BatchNorm parameters and statistics by
	// name (the names of the model's constants), the logits and clips excluded.
	Weights map[string][]float32
	Epochs  []SearchEpoch
	// WidthPrices are the measured width prices at the end of the search
	// (SearchConfig.MeasureWidths), one per prunable group; none without.
	WidthPrices []WidthPrice
	// Phases are the seconds spent calibrating, warming up the weights and searching (in
	// this process: a resumed search counts from its resumption).
	Phases []Phase
}

// Phase is a named span of a run.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Search trains the supernet: its weights (SGD, from the float model's) on the training
// data but a held-out share, and its logits (Adam) on that share, alternating batch by
// batch after a warm-up of the weights alone. After every logits step the logits are
// projected back onto the budget (supernet.Project: E[cost] = budget), so the loss decides
// where the bits go and the budget how many. The supernet's graph holds the trained values
// afterwards. Checkpoint, Resume and Context work as in train.Train.
func Search(sn *supernet.Supernet, trainSet *data.Dataset, cfg SearchConfig) (*SearchResult, error) {
	if cfg.Epochs < 1 {
		return nil, field.Errorf("SearchConfig.Epochs", " %d: must be positive", cfg.Epochs)
	}
	if cfg.Batch < 1 {
		return nil, field.Errorf("SearchConfig.Batch", " %d: must be positive", cfg.Batch)
	}
	if !(cfg.Budget.Cost > 0) {
		return nil, field.Errorf("SearchConfig.Budget", ": not resolved (supernet.NewBudget)")
	}
	if cfg.MeasureWidths && !cfg.HardArch && len(sn.Groups) > 0 {
		return nil, field.Errorf("SearchConfig.MeasureWidths", ": needs HardArch (a probe compares one-hot samples)")
	}
	g := sn.Graph
	if err := train.CheckData(g, trainSet); err != nil {
		return nil, err
	}
	if err := cfg.CheckHoldout(trainSet.N); err != nil {
		return nil, err
	}
	wData, aData, err := data.Holdout(trainSet, cfg.HoldOut, cfg.Seed)
	if err != nil {
		return nil, err
	}
	if cfg.Resume {
		if err := cfg.CheckResume(sn, trainSet); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	if err := Calibrate(g, wData, cfg.Norm, cfg.CalibBatches, cfg.Batch, cfg.Log); err != nil {
		return nil, err
	}
	calibrated := time.Since(t0).Seconds()
	var warmSec, searchSec float64
	tr, err := NewTrainer(sn, cfg)
	if err != nil {
		return nil, err
	}
	p, sgd, adam := tr.Plan, tr.sgd, tr.adam
	wParams, aParams := sgd.Params, adam.Params
	wl, err := data.NewLoader(wData, data.LoaderOptions{BatchSize: cfg.Batch, Shuffle: true, DropLast: true, Seed: cfg.Seed, Norm: cfg.Norm, Aug: cfg.Augment})
	if err != nil {
		return nil, err
	}
	al, err := data.NewLoader(aData, data.LoaderOptions{BatchSize: cfg.Batch, Shuffle: true, DropLast: true, Seed: cfg.Seed ^ 0x5eed, Norm: cfg.Norm})
	if err != nil {
		return nil, err
	}
	steps := wl.Len()
	total := steps * cfg.Epochs
	warm := int(math.Ceil(cfg.Warmup * float64(steps)))
	sched := optim.Cosine{Base: cfg.LR}
	st := &searchState{Tensors: map[string][]float32{}, Velocity: map[string][]float32{}}
	for name, v := range p.Values {
		if v.Kind == engine.Param || v.Kind == engine.State {
			st.Tensors[name] = v.Data
		}
	}
	for i, v := range sgd.Velocity() {
		st.Velocity[wParams[i].Name] = v
	}
	am, av, at := adam.Moments()
	st.AdamM, st.AdamV = map[string][]float32{}, map[string][]float32{}
	for i := range am {
		st.AdamM[aParams[i].Name], st.AdamV[aParams[i].Name] = am[i], av[i]
	}
	if tr.prices != nil {
		st.WidthPrices = tr.prices
	}
	header := cfg.Header(sn, trainSet)
	if cfg.Resume {
		if err := st.load(cfg.Checkpoint, header); err != nil {
			return nil, err
		}
		*at = st.AdamT
		if tr.prices != nil {
			if st.WidthPrices == nil || len(st.WidthPrices.Names) != len(tr.prices.Names) {
				return nil, fmt.Errorf("%s: holds no measured width prices for this search", cfg.Checkpoint)
			}
			tr.prices = st.WidthPrices
		}
	}
	ctx := cfg.Context
	if ctx == nil {
		ctx = context.Background()
	}
	save := func() error {
		if cfg.Checkpoint == "" {
			return nil
		}
		st.AdamT = *at
		return ckpt.Write(cfg.Checkpoint, header, st)
	}
	x := tr.Input()
	y, ay := make([]int32, cfg.Batch), make([]int32, cfg.Batch)
	guard := train.Guard{Ceiling: train.ChanceLoss(g.Shapes[g.Outputs[0]][1])} // restarts with a resumed search
	startEpoch := st.Epoch
	for e := st.Epoch; e < cfg.Epochs; e++ {
		start := time.Now()
		bar := progress.New(cfg.Log, fmt.Sprintf("search %d/%d", e+1, cfg.Epochs), steps)
		s0 := 0
		if e == st.Epoch {
			s0 = st.Step
		}
		wl.Seek(e, s0)
		for s := s0; s < steps; s++ {
			select {
			case <-ctx.Done():
				if cfg.Checkpoint == "" {
					return nil, fmt.Errorf("interrupted at search epoch %d step %d (no checkpoint file)", e+1, s+1)
				}
				st.Epoch, st.Step = e, s
				if err := save(); err != nil {
					return nil, err
				}
				bar.Stop(s, "interrupted")
				return nil, &train.InterruptedError{Checkpoint: cfg.Checkpoint}
			default:
			}
			t := e*steps + s
			stepStart := time.Now()
			tau := cfg.TauStart * math.Pow(cfg.TauEnd/cfg.TauStart, float64(t)/float64(max(total-1, 1)))
			wl.Next(x, y)
			if err := wl.Err(); err != nil {
				return nil, err
			}
			loss, c, err := tr.WeightStep(y, t, tau, sched.LR(t, total))
			if bad, l0, now := guard.Add(loss); bad {
				good := ""
				if cfg.Checkpoint != "" && (e > startEpoch || cfg.Resume) {
					good = cfg.Checkpoint
				}
				return nil, &train.DivergedError{What: "search", Epoch: e + 1, Step: s + 1, Start: l0, Now: now, Ceiling: guard.Ceiling, LR: cfg.LR, Checkpoint: good}
			}
			if err != nil {
				return nil, fmt.Errorf("search epoch %d step %d: %v", e+1, s+1, err)
			}
			st.LossSum += loss * float64(cfg.Batch)
			st.Correct += c
			st.Seen += cfg.Batch
			// Architecture step, after the warm-up, on a held-out batch.
			if t >= warm {
				al.Seek(t/al.Len(), t%al.Len())
				al.Next(x, ay)
				if err := al.Err(); err != nil {
					return nil, err
				}
				aloss, mu, ec, err := tr.ArchStep(ay, t, tau)
				if err != nil {
					return nil, fmt.Errorf("search epoch %d step %d: %v", e+1, s+1, err)
				}
				st.Tilt, st.LastCost = mu, ec/cfg.Budget.Cost
				st.ArchLossSum += aloss
				st.ArchSteps++
			}
			if t < warm {
				warmSec += time.Since(stepStart).Seconds()
			} else {
				searchSec += time.Since(stepStart).Seconds()
			}
			arch := "warm-up: weights only"
			if st.ArchSteps > 0 {
				arch = fmt.Sprintf("held-out loss %.3f E[cost]/budget %.3f", st.ArchLossSum/float64(st.ArchSteps), st.LastCost)
			}
			bar.Update(s+1, fmt.Sprintf("loss %.3f acc %.1f%% %s τ %.2f", st.LossSum/float64(st.Seen), 100*float64(st.Correct)/float64(st.Seen), arch, tau))
		}
		ep := SearchEpoch{Epoch: e + 1, Loss: st.LossSum / float64(max(st.Seen, 1)), ArchLoss: st.ArchLossSum / float64(max(st.ArchSteps, 1)),
			ExpectedCost: st.LastCost, Tilt: st.Tilt, Temperature: cfg.TauStart * math.Pow(cfg.TauEnd/cfg.TauStart, float64((e+1)*steps-1)/float64(max(total-1, 1))),
			Seconds: time.Since(start).Seconds()}
		if st.ArchSteps > 0 {
			bar.Done(fmt.Sprintf("loss %.3f, held-out loss %.3f, E[cost]/budget %.3f", ep.Loss, ep.ArchLoss, ep.ExpectedCost))
		} else {
			bar.Done(fmt.Sprintf("loss %.3f, warm-up only", ep.Loss))
		}
		st.History = append(st.History, ep)
		st.LossSum, st.Correct, st.Seen, st.ArchLossSum, st.ArchSteps = 0, 0, 0, 0, 0
		st.Epoch, st.Step = e+1, 0
		if err := save(); err != nil {
			return nil, err
		}
	}
	p.SetTrainable(nil)
	res := &SearchResult{Logits: map[string][]float32{}, Epochs: st.History,
		Phases: []Phase{{"calibrate", calibrated}, {"warm-up", warmSec}, {"search", searchSec}}}
	for name, v := range tr.logits {
		res.Logits[name] = slices.Clone(v)
	}
	if tr.prices != nil {
		for g, gc := range sn.Groups {
			res.WidthPrices = append(res.WidthPrices, WidthPrice{Group: gc.Group.Name(), Widths: gc.Widths,
				Loss: slices.Clone(tr.prices.Delta[g]), Probes: slices.Clone(tr.prices.Count[g])})
		}
	}
	res.Weights = map[string][]float32{}
	for name, v := range p.Values {
		if (v.Kind == engine.Param || v.Kind == engine.State) && !tr.isArch[name] {
			res.Weights[name] = slices.Clone(v.Data)
		}
	}
	return res, nil
}

// searchState is a search's whole state between two steps (its checkpoint).
type searchState struct {
	Epoch, Step  int
	Tensors      map[string][]float32 // weights, BatchNorm statistics, clips, logits
	Velocity     map[string][]float32 // SGD momentum
	AdamM, AdamV map[string][]float32
	AdamT        int
	Tilt         float64
	LastCost     float64
	LossSum      float64
	Correct      int
	Seen         int
	ArchLossSum  float64
	ArchSteps    int
	History      []SearchEpoch
	WidthPrices  *widthPrices // measured width prices, nil without
}

// SearchCheckpointKind and SearchCheckpointVersion identify a search checkpoint's header.
const (
	SearchCheckpointKind    = "search"
	SearchCheckpointVersion = 3
)

// Header returns the checkpoint header of a search of sn on trainSet with cfg: the
// caller's settings (cfg.Depends), the data, the search space and every setting of cfg
// that changes the result.
func (c SearchConfig) Header(sn *supernet.Supernet, trainSet *data.Dataset) ckpt.Header {
	s := append(ckpt.Settings{}, c.Depends...)
	s.Add("training data", train.DataSetting(trainSet))
	o := sn.Opts
	for _, kv := range []struct {
		k string
		v any
	}{{"search wbits", o.WBits}, {"search abits", o.ABits}, {"granularity", o.Granularity}, {"prune", o.Prune}, {"widths", o.Widths},
		{"pinned", fmt.Sprintf("first=%v last=%v", o.PinFirst, o.PinLast)}} {
		s.Add(kv.k, kv.v)
	}
	for _, kv := range []struct {
		k string
		v any
	}{{"cost model", c.Cost}, {"budget", c.Budget.Cost}, {"search epochs", c.Epochs}, {"warm-up", c.Warmup}, {"batch", c.Batch}, {"lr", c.LR},
		{"momentum", c.Momentum}, {"weight decay", c.WeightDecay}, {"arch lr", c.ArchLR}, {"shared scale", c.ArchSharedScale}, {"measured widths", c.MeasureWidths}, {"full-width weight steps", c.FullWidthEvery},
		{"hard samples", fmt.Sprintf("%v/%v", c.HardArch, c.HardWeights)}, {"temperature", fmt.Sprintf("%g..%g", c.TauStart, c.TauEnd)},
		{"held-out share", c.HoldOut}, {"calibration batches", c.CalibBatches}, {"seed", c.Seed}, {"mean", c.Norm.Mean}, {"std", c.Norm.Std},
		{"augment", c.Augment != nil}, {"distillation", c.Distill}} {
		s.Add(kv.k, kv.v)
	}
	return ckpt.Header{Kind: SearchCheckpointKind, Version: SearchCheckpointVersion, Settings: append(s, train.Machine()...)}
}

// load restores the state saved in path, whose header must match want, into st's live
// tensors.
func (st *searchState) load(path string, want ckpt.Header) error {
	floats := int64(0)
	for _, m := range []map[string][]float32{st.Tensors, st.Velocity, st.AdamM, st.AdamV} {
		for _, v := range m {
			floats += int64(len(v))
		}
	}
	var saved searchState
	if err := ckpt.Read(path, want, ckpt.StateBound(floats), &saved); err != nil {
		return err
	}
	for _, m := range []struct {
		live, saved map[string][]float32
		what        string
	}{{st.Tensors, saved.Tensors, "tensor"}, {st.Velocity, saved.Velocity, "momentum buffer"}, {st.AdamM, saved.AdamM, "Adam moment"}, {st.AdamV, saved.AdamV, "Adam moment"}} {
		if len(m.live) != len(m.saved) {
			return fmt.Errorf("%s: has %d %ss, the search %d", path, len(m.saved), m.what, len(m.live))
		}
		for name, dst := range m.live {
			src, ok := m.saved[name]
			if !ok || len(src) != len(dst) {
				return fmt.Errorf("%s: %s %q is missing or has another size", path, m.what, name)
			}
			copy(dst, src)
		}
	}
	tensors, vel, am, av := st.Tensors, st.Velocity, st.AdamM, st.AdamV
	*st = saved
	st.Tensors, st.Velocity, st.AdamM, st.AdamV = tensors, vel, am, av
	return nil
}

// Trainer runs the search's two kinds of steps on one compiled plan of a supernet.
type Trainer struct {
	Plan    *engine.Plan
	sn      *supernet.Supernet
	cfg     SearchConfig
	sgd     *optim.SGD
	adam    *optim.Adam
	isArch  map[string]bool
	logits  map[string][]float32
	state   engine.StepState
	teacher *train.Teacher
	prices  *widthPrices // measured width prices (SearchConfig.MeasureWidths), nil without
}

// NewTrainer compiles the supernet at cfg.Batch and sets up its two optimizers: SGD
// (Nesterov momentum, weight decay on weights of rank ≥ 2) for the weights, clips and
// BatchNorms, Adam for the logits.
func NewTrainer(sn *supernet.Supernet, cfg SearchConfig) (*Trainer, error) {
	p, err := engine.Compile(sn.Graph, cfg.Batch, engine.Options{})
	if err != nil {
		return nil, err
	}
	t := &Trainer{Plan: p, sn: sn, cfg: cfg, isArch: map[string]bool{}, logits: map[string][]float32{}}
	for _, name := range sn.ArchParams() {
		t.isArch[name] = true
	}
	var wParams, aParams []optim.Param
	noDecay := map[string]bool{}
	for _, v := range p.Params {
		prm := optim.Param{Name: v.Name, Data: v.Data, Grad: v.Grad}
		if t.isArch[v.Name] {
			aParams = append(aParams, prm)
			t.logits[v.Name] = v.Data
			continue
		}
		wParams = append(wParams, prm)
		if len(v.Shape) < 2 {
			noDecay[v.Name] = true
		}
	}
	if t.teacher, err = train.NewTeacher(cfg.Distill, cfg.Batch); err != nil {
		return nil, err
	}
	t.sgd = &optim.SGD{Params: wParams, Momentum: cfg.Momentum, Nesterov: true, WeightDecay: cfg.WeightDecay, NoDecay: noDecay}
	t.adam = &optim.Adam{Params: aParams, SharedScale: cfg.ArchSharedScale}
	if cfg.MeasureWidths && cfg.HardArch && len(sn.Groups) > 0 {
		t.prices = newWidthPrices(sn)
	}
	return t, nil
}

// Input returns the plan's input buffer: the batch of the next step goes there.
func (t *Trainer) Input() []float32 { return t.Plan.Value(t.sn.Graph.Inputs[0]).Data }

// sample sets the step's Gumbel noise: stream 2·step (+1 for the logits' step) of the
// seed, so a resumed search draws what the uninterrupted one drew.
func (t *Trainer) sample(step uint64, tau float64, hard, fullWidth bool) {
	t.draw(engine.StepState{Step: step, Temperature: tau, Hard: hard, FullWidth: fullWidth})
}

// draw hands s to the plan with the noise of stream s.Step of the seed: a state that
// differs only in its pin or full width draws the same sample.
func (t *Trainer) draw(s engine.StepState) {
	s.Noise = rand.New(rand.NewPCG(t.cfg.Seed, s.Step))
	t.state = s
	t.Plan.SetState(&t.state)
}

// WeightStep trains the weights on the batch in Input with labels y at iteration it:
// forward with freshly sampled relaxations, backward without the logits' gradients, an SGD
// step at lr. It returns the loss and the correct predictions.
func (t *Trainer) WeightStep(y []int32, it int, tau, lr float64) (loss float64, correct int, err error) {
	p := t.Plan
	p.SetTrainable(func(name string) bool { return !t.isArch[name] })
	full := t.cfg.FullWidthEvery > 0 && len(t.sn.Groups) > 0 && it%t.cfg.FullWidthEvery == 0
	t.sample(uint64(2*it), tau, t.cfg.HardWeights, full)
	p.Forward(true)
	loss, correct = t.teacher.Loss(p, t.sn.Graph.Outputs[0], t.Input(), y)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return loss, correct, fmt.Errorf("the loss is %v", loss)
	}
	p.Backward()
	t.sgd.Step(lr)
	return loss, correct, nil
}

// ArchStep trains the logits on the batch in Input with labels y: forward with BatchNorm on
// batch statistics but its running ones untouched, backward to the logits alone, an Adam
// step, then the projection onto the budget. With measured width prices the width logits'
// gradients come from probes of the same batch (probeWidths) instead. It returns the loss, the projection's tilt
// and the expected cost after it; an error when the loss or a logit is not finite (the
// logits are then left as they were).
func (t *Trainer) ArchStep(y []int32, it int, tau float64) (loss, mu, cost float64, err error) {
	p := t.Plan
	p.SetTrainable(func(name string) bool { return t.isArch[name] })
	p.SetStatsMomentum(0)
	t.sample(uint64(2*it+1), tau, t.cfg.HardArch, false)
	p.Forward(true)
	loss, _ = p.SoftmaxCrossEntropy(t.sn.Graph.Outputs[0], y)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		p.SetStatsMomentum(-1)
		return loss, 0, 0, fmt.Errorf("the architecture step's loss is %v", loss)
	}
	p.Backward()
	if t.prices != nil {
		t.probeWidths(y, it, tau, loss)
		t.widthGrads(tau)
	}
	p.SetStatsMomentum(-1)
	t.adam.Step(t.cfg.ArchLR)
	if mu, cost, err = t.sn.Project(t.cfg.Cost, t.logits, t.cfg.Budget.Cost); err != nil {
		return loss, mu, cost, err
	}
	for _, name := range t.sn.ArchParams() {
		if slices.ContainsFunc(t.logits[name], func(v float32) bool { return math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) }) {
			return loss, mu, cost, fmt.Errorf("the architecture logits %q are not finite", name)
		}
	}
	return loss, mu, cost, nil
}
