package qnas

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/field"
	"github.com/qnas/qnas/internal/stats"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/search"
	"github.com/qnas/qnas/supernet"
)

// OptimizeReport is the report of Optimize: the Quantize report of the written model plus
// the budget, the search's epochs, the baselines, the per-seed results and their summary
// (with baselines, each seed compared with the uniform frontier at the budget). It is the
// JSON `qnas optimize --json` prints (docs/formats.md).
type OptimizeReport struct {
	QuantizeReport
	Budget     float64 `json:"budget"` // as a ratio of the reference cost
	BudgetCost float64 `json:"budget_cost"`
	Method     string  `json:"method"` // MethodSearch or MethodSensitivity
	// InitLogits is where the search's logits started (InitSensitivity or InitUniform; empty
	// with MethodSensitivity).
	InitLogits string `json:"init_logits,omitempty"`
	// SearchEpochs and Search are the search's (0 and none with MethodSensitivity).
	SearchEpochs int                  `json:"search_epochs"`
	Search       []search.SearchEpoch `json:"search"`
	// Sensitivity is the estimate of MethodSensitivity.
	Sensitivity *SensitivityReport `json:"sensitivity,omitempty"`
	// WidthPrices are the search's measured width prices at its end (WidthsMeasured with
	// Space.Prune).
	WidthPrices []search.WidthPrice `json:"width_prices,omitempty"`
	// FinalCheck is the first seed's final check (OptimizeOptions.FinalCheck).
	FinalCheck  *FinalCheck  `json:"final_check,omitempty"`
	ArgmaxRatio float64      `json:"argmax_cost_ratio"` // the most probable architecture, before repair
	Baselines   []Baseline   `json:"baselines,omitempty"`
	Seeds       []SeedResult `json:"seeds,omitempty"`
	Summary     *SeedSummary `json:"summary,omitempty"`
}

// Baseline is a uniform model fine-tuned like the searched one, to compare with.
type Baseline struct {
	WBits     int     `json:"wbits"`
	ABits     int     `json:"abits"`
	CostRatio float64 `json:"cost_ratio"`
	Accuracy  float64 `json:"accuracy"`
	Seed      uint64  `json:"seed"`
	Why       string  `json:"why"`
	// Diverged says why the baseline's fine-tuning was stopped (the divergence guard);
	// such a baseline has no accuracy and is left out of the summary and the frontier.
	Diverged string `json:"diverged,omitempty"`
}

// SeedResult is the searched model of one seed. With baselines, FrontierAtBudget is the
// accuracy of the uniform frontier of that seed's baselines at the budget
// (supernet.Frontier.At) and MixedMinusFrontier is Accuracy minus it.
type SeedResult struct {
	Seed               uint64   `json:"seed"`
	CostRatio          float64  `json:"cost_ratio"`
	Accuracy           float64  `json:"accuracy"`
	ArgmaxRatio        float64  `json:"argmax_cost_ratio"`
	Arch               string   `json:"arch"`
	FrontierAtBudget   *float64 `json:"frontier_at_budget,omitempty"`
	MixedMinusFrontier *float64 `json:"mixed_minus_frontier,omitempty"`
	// Diverged says why the fine-tuning of a later seed (not the first, whose model is
	// written) was stopped by the divergence guard; such a seed has no accuracy and is
	// left out of the summary and the comparison.
	Diverged string `json:"diverged,omitempty"`
	// FinalCheck is this seed's final check (OptimizeOptions.FinalCheck).
	FinalCheck *FinalCheck `json:"final_check,omitempty"`
}

// FinalCheck is the last step of a search in a space that contains simpler ones (Space.Prune:
// the same bits with every channel kept; Granularity filter: the default granularity)
// (docs/method.md, "Final check"): the architecture derived from the search's logits, then
// the one each simpler space derives from the same logits under the same budget, each
// post-training quantized from the weights the fine-tuning starts from and evaluated on the
// search's held-out data. The run fine-tunes the one of lowest held-out loss.
type FinalCheck struct {
	Candidates []CheckedArch `json:"candidates"` // the derived architecture first
	Kept       string        `json:"kept"`       // the Space of the one fine-tuned
}

// CheckedArch is one architecture of a FinalCheck.
type CheckedArch struct {
	// Space is "derived" (the searched space's architecture), a simpler space the same
	// logits derive in ("every channel", the default granularity "group:4", or both:
	// "group:4, every channel"), or the simplest space searched on its own ("every channel,
	// searched", "group:4, searched", "group:4, every channel, searched").
	Space     string  `json:"space"`
	Loss      float64 `json:"loss"` // on the held-out data
	Accuracy  float64 `json:"accuracy"`
	MACs      int64   `json:"macs"`
	CostRatio float64 `json:"cost_ratio"`
	// Unfit says why the space has no architecture within the budget (then it has no
	// loss, accuracy or cost).
	Unfit string `json:"unfit,omitempty"`
}

// SeedSummary is the mean and standard deviation over the seeds (those that did not
// diverge), of the searched models and of every baseline ("w4a4": [mean, std]); with
// baselines also of the seeds' FrontierAtBudget and MixedMinusFrontier ([mean, std]), and FrontierNote when the budget
// lies outside a seed's frontier (below its cheapest uniform model, or above its dearest),
// where the comparison is with that model.
type SeedSummary struct {
	Seeds              int                   `json:"seeds"`
	MixedMean          float64               `json:"mixed_mean"`
	MixedStd           float64               `json:"mixed_std"`
	Baselines          map[string][2]float64 `json:"baselines,omitempty"`
	FrontierAtBudget   *[2]float64           `json:"frontier_at_budget,omitempty"`
	MixedMinusFrontier *[2]float64           `json:"mixed_minus_frontier,omitempty"`
	FrontierNote       string                `json:"frontier_note,omitempty"`
}

// SensitivityReport is the estimate of the fast mode: the images it read and, per layer
// and channel group, each option's estimated increase of the training loss (summed over a
// layer's units: all its filters at those bits).
type SensitivityReport struct {
	Images int                `json:"images"`
	Batch  int                `json:"batch"`
	Loss   float64            `json:"loss"` // of the most precise architecture on those images
	Layers []LayerSensitivity `json:"layers"`
	Groups []GroupSensitivity `json:"groups,omitempty"`
}

// LayerSensitivity is one layer's estimated loss increases, per weight bits and per input
// bits (an empty list: the choice is fixed).
type LayerSensitivity struct {
	Name      string    `json:"name"`
	WBits     []int     `json:"wbits"`
	WBitsLoss []float64 `json:"wbits_loss"`
	ABits     []int     `json:"abits"`
	ABitsLoss []float64 `json:"abits_loss"`
}

// GroupSensitivity is one channel group's estimated loss increase per width.
type GroupSensitivity struct {
	Name       string    `json:"name"`
	Widths     []float64 `json:"widths"`
	WidthsLoss []float64 `json:"widths_loss"`
}

// sensitivityReport summarizes the estimate res of sn.
func sensitivityReport(sn *supernet.Supernet, res *search.SensitivityResult) *SensitivityReport {
	r := &SensitivityReport{Images: res.Images, Batch: res.Batch, Loss: res.Loss}
	for _, lc := range sn.Layers {
		ls := LayerSensitivity{Name: lc.Layer.Name}
		if inc := res.Increase[lc.WLogits]; inc != nil {
			ls.WBits, ls.WBitsLoss = lc.WBits, make([]float64, len(lc.WBits))
			for i, v := range inc {
				ls.WBitsLoss[i%len(lc.WBits)] += v
			}
		}
		if inc := res.Increase[lc.ALogits]; inc != nil {
			ls.ABits, ls.ABitsLoss = lc.ABits, inc
		}
		r.Layers = append(r.Layers, ls)
	}
	for _, gc := range sn.Groups {
		r.Groups = append(r.Groups, GroupSensitivity{Name: gc.Group.Name(), Widths: gc.Widths, WidthsLoss: res.Increase[gc.Logits]})
	}
	return r
}

// autoThreshold is the MACs per sample from which MethodAuto takes the fast mode, and
// autoImages the training samples from which it searches: AutoSensitivityMACs and
// AutoSearchImages (variables so that a test can move them to a fixture's size).
var (
	autoThreshold int64 = AutoSensitivityMACs
	autoImages          = AutoSearchImages
)

// autoMethod is the method MethodAuto takes for a float model of macs MACs per sample and a
// training split of images samples — the fast mode from threshold MACs, or below minImages
// samples — and the reason, for a note ("" when it searches).
func autoMethod(macs, threshold int64, images, minImages int) (method, reason string) {
	switch {
	case macs >= threshold:
		return MethodSensitivity, fmt.Sprintf("%s MACs per sample (from %s)", supernet.FormatCost(float64(macs)), supernet.FormatCost(float64(threshold)))
	case images < minImages:
		return MethodSensitivity, fmt.Sprintf("%d training samples (the search from %d)", images, minImages)
	}
	return MethodSearch, ""
}

// sensitivity reports whether the options ask for the fast mode.
func (o *OptimizeOptions) sensitivity() bool { return o.Method == MethodSensitivity }

// check validates what Optimize needs beyond Options.check.
func (o *OptimizeOptions) check() error {
	switch {
	case o.Method != "" && o.Method != MethodSearch && o.Method != MethodSensitivity && o.Method != MethodAuto:
		return field.Errorf("Method", " %q: want %s, %s or %s", o.Method, MethodSearch, MethodSensitivity, MethodAuto)
	case o.InitLogits != "" && o.InitLogits != InitUniform && o.InitLogits != InitSensitivity:
		return field.Errorf("InitLogits", " %q: want %s or %s", o.InitLogits, InitUniform, InitSensitivity)
	case (o.sensitivity() || o.InitLogits == InitSensitivity) && o.SensitivityImages < 1:
		return field.Errorf("SensitivityImages", " %d: must be positive", o.SensitivityImages)
	case o.SearchEpochs < 1:
		return field.Errorf("SearchEpochs", " %d: must be positive", o.SearchEpochs)
	case o.FineTuneEpochs < 0:
		return field.Errorf("FineTuneEpochs", " %d: must not be negative", o.FineTuneEpochs)
	case o.Seeds < 1:
		return field.Errorf("Seeds", " %d: must be positive", o.Seeds)
	case o.Sampling != "hard" && o.Sampling != "soft":
		return field.Errorf("Sampling", " %q: want hard or soft", o.Sampling)
	case o.FinalCheck != CheckSearch && o.FinalCheck != CheckDerive && o.FinalCheck != CheckOff:
		return field.Errorf("FinalCheck", " %q: want %s, %s or %s", o.FinalCheck, CheckSearch, CheckDerive, CheckOff)
	case o.WidthPrices != WidthsMeasured && o.WidthPrices != WidthsGradient:
		return field.Errorf("WidthPrices", " %q: want %s or %s", o.WidthPrices, WidthsMeasured, WidthsGradient)
	case o.Space.Prune && o.WidthPrices == WidthsMeasured && o.Sampling != "hard":
		return field.Errorf("WidthPrices", " %s: measures one-hot samples; give OptimizeOptions.Sampling hard, or %s", o.WidthPrices, WidthsGradient)
	case o.FineTuneFrom != "float" && o.FineTuneFrom != "search":
		return field.Errorf("FineTuneFrom", " %q: want float or search", o.FineTuneFrom)
	case o.Resume != "" && (o.Seeds > 1 || o.Baselines):
		return field.Errorf("Resume", ": continues a single run, not one of several Seeds or with Baselines")
	case o.Output.Path == "":
		return field.Errorf("Output.Path", " is required (the search keeps its checkpoints beside it)")
	}
	if err := field.CheckFloats(field.Float{Name: "ArchLR", Value: o.ArchLR, Range: field.Positive},
		field.Float{Name: "Warmup", Value: o.Warmup, Range: field.Fraction}, field.Float{Name: "InitSpread", Value: o.InitSpread, Range: field.Positive}); err != nil {
		return err
	}
	if err := o.Space.Check(); err != nil {
		return spaceField(err)
	}
	return o.Options.check()
}

// spaceField renames the supernet's SearchOptions fields to OptimizeOptions.Space's.
func spaceField(err error) error {
	if fe, ok := err.(*field.Error); ok {
		c := *fe
		c.Name = "Space." + fe.Name[len("SearchOptions."):]
		return &c
	}
	return err
}

// Optimize searches, under budget, the weight bits of every filter group, the input bits
// of every layer and (with Space.Prune) the kept filters of every prunable channel group of
// the float model in the file model; derives an architecture into [supernet.FillFraction,
// 1] × budget; fine-tunes it as Quantize does and writes it to opts.Output.Path. The search
// holds out a tenth of the training data for its architecture steps; with Method
// MethodSensitivity an estimate of every choice's effect on the loss replaces it (no
// training, no search checkpoint). Cancelling ctx stops the run at the next step, saving its
// state (OUT.onnx.search.ckpt, OUT.onnx.ckpt) for Options.Resume.
func Optimize(ctx context.Context, model string, budget Budget, opts OptimizeOptions) (*OptimizeReport, error) {
	o := &opts.Options
	if err := opts.check(); err != nil {
		return nil, err
	}
	s := &session{o: o, model: model}
	autoNote := ""
	if opts.Method == MethodAuto {
		if err := s.load(); err != nil {
			return nil, err
		}
		if err := s.openData(); err != nil {
			return nil, err
		}
		macs := graph.Summarize(s.g).MACs
		var reason string
		opts.Method, reason = autoMethod(macs, autoThreshold, s.trainSet.N, autoImages)
		if opts.Method == MethodSearch && opts.InitLogits != InitSensitivity && opts.SensitivityImages != DefaultSensitivityImages {
			return nil, field.Errorf("SensitivityImages", " %d applies to the fast mode and to a search from OptimizeOptions.InitLogits %s, and OptimizeOptions.Method %s searches %s (%s MACs per sample, under %s; %d training samples, from %d) from OptimizeOptions.InitLogits %s: set OptimizeOptions.Method %s or OptimizeOptions.InitLogits %s, or leave it at %d",
				opts.SensitivityImages, InitSensitivity, MethodAuto, model, supernet.FormatCost(float64(macs)), supernet.FormatCost(float64(autoThreshold)), s.trainSet.N, autoImages, opts.InitLogits, MethodSensitivity, InitSensitivity, DefaultSensitivityImages)
		}
		if opts.Method == MethodSensitivity {
			autoNote = fmt.Sprintf("OptimizeOptions.Method %s chose the fast mode: %s", MethodAuto, reason)
		}
	}
	var err error
	if s.ckpt, err = optimizePlan(&opts); err != nil {
		return nil, err
	}
	if err := s.checkFiles(); err != nil {
		return nil, err
	}
	if s.g == nil {
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	space, err := opts.Space.For(s.cm)
	if err != nil {
		return nil, spaceField(err)
	}
	probe, err := s.space.NewSupernet(space)
	if err != nil {
		return nil, spaceField(err)
	}
	b, err := budget.Resolve(probe, s.cm)
	if err != nil {
		return nil, err
	}
	if s.trainSet == nil {
		if err := s.openData(); err != nil {
			return nil, err
		}
	}
	if err := s.checkTeacher(!opts.sensitivity() || opts.FineTuneEpochs > 0); err != nil {
		return nil, err
	}
	if err := opts.beforeSearch(s, b, probe); err != nil {
		return nil, err
	}
	if err := s.restoreBatchNorm(); err != nil {
		return nil, err
	}
	if autoNote != "" {
		o.note("%s", autoNote)
	}
	rep := &OptimizeReport{Budget: b.Ratio(), BudgetCost: b.Cost, Method: MethodSearch, InitLogits: opts.InitLogits, SearchEpochs: opts.SearchEpochs}
	if rep.InitLogits == "" {
		rep.InitLogits = InitUniform
	}
	if opts.sensitivity() {
		rep.Method, rep.InitLogits, rep.SearchEpochs = MethodSensitivity, "", 0
	}
	var mixedAcc []float64
	baseAcc := map[string][]float64{}
	var baseOrder []string
	for k := 0; k < opts.Seeds; k++ {
		seed := o.Training.Seed + uint64(k)
		sn, err := s.space.NewSupernet(space)
		if err != nil {
			return nil, spaceField(err)
		}
		ck, resume, simplerCk := "", false, ""
		if k == 0 { // later seeds keep no checkpoints
			ck, resume, simplerCk = s.ckpt.search, s.ckpt.resumeSearch, s.ckpt.simpler
			if !resume {
				// A search started afresh: a final check's checkpoint left from an earlier
				// run is not this run's to continue (the notes said it is replaced).
				ckpt.Remove(simplerCk)
			}
		}
		res, err := opts.find(ctx, s, sn, b, seed, ck, resume)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		argmax := sn.Argmax(s.cm, res.logits)
		d, err := sn.Derive(s.cm, res.logits, b)
		if err != nil {
			return nil, err
		}
		r := d.Resolved()
		derived := time.Since(t0).Seconds()
		out := o.Output.Path
		if k > 0 { // later seeds are measured, not written
			out = ""
		}
		startFrom, err := opts.startFrom(s, res.weights)
		if err != nil {
			return nil, err
		}
		ft, err := startFrom(r)
		if err != nil {
			return nil, err
		}
		var check *FinalCheck
		var checkPhases []search.Phase
		if opts.checks(space) {
			if r, ft, check, checkPhases, err = opts.finalCheck(ctx, s, sn, space, res.logits, b, seed, r, ft, startFrom, simplerCk); err != nil {
				return nil, err
			}
		}
		qr, err := s.fineTune(ctx, ft, opts.FineTuneEpochs, out, seed)
		ref := b.Reference
		arch := string(supernet.MarshalArch(r.Arch(), nil))
		if why := train.DivergedSummary(err); why != "" && k > 0 {
			// The first seed's model is written and good; a later seed that diverges is a
			// finding about the method's stability, reported, not a reason to fail the run.
			o.note("seed %d: fine-tuning diverged (%s); left out of the summary", seed, why)
			rep.Seeds = append(rep.Seeds, SeedResult{Seed: seed, ArgmaxRatio: argmax.Cost() / ref, Arch: arch, Diverged: why, FinalCheck: check})
		} else if err != nil {
			return nil, err
		} else {
			rep.Seeds = append(rep.Seeds, SeedResult{Seed: seed, CostRatio: qr.CostRatio, Accuracy: qr.Accuracy, ArgmaxRatio: argmax.Cost() / ref, Arch: arch, FinalCheck: check})
			mixedAcc = append(mixedAcc, qr.Accuracy)
		}
		if k == 0 {
			rep.QuantizeReport = *qr
			rep.Search, rep.Sensitivity, rep.WidthPrices, rep.FinalCheck = res.epochs, res.sensitivity, res.widthPrices, check
			rep.ArgmaxRatio = argmax.Cost() / ref
			phases := append([]search.Phase{}, res.phases...)
			phases = append(phases, search.Phase{Name: "derive", Seconds: derived})
			phases = append(phases, checkPhases...)
			rep.Phases = append(phases, qr.Phases...)
		}
		if !opts.Baselines {
			continue
		}
		for _, bl := range UniformBaselines(s.space, s.cm, b, space) {
			arch := &supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{bl.WBits}, ABits: bl.ABits}}
			br, err := s.space.Resolve(arch)
			if err != nil {
				return nil, err
			}
			o.note("seed %d: baseline w%da%d (%s)", seed, bl.WBits, bl.ABits, bl.Why)
			bl.Seed = seed
			brep, err := s.fineTune(ctx, br, opts.FineTuneEpochs, "", seed)
			if why := train.DivergedSummary(err); why != "" {
				// A comparison that diverged is a finding, not a reason to lose the run.
				bl.Diverged = why
				o.note("seed %d: baseline w%da%d diverged (%s); left out of the comparison", seed, bl.WBits, bl.ABits, why)
				rep.Baselines = append(rep.Baselines, bl)
				continue
			}
			if err != nil {
				return nil, err
			}
			bl.Accuracy = brep.Accuracy
			rep.Baselines = append(rep.Baselines, bl)
			key := fmt.Sprintf("w%da%d", bl.WBits, bl.ABits)
			if _, ok := baseAcc[key]; !ok {
				baseOrder = append(baseOrder, key)
			}
			baseAcc[key] = append(baseAcc[key], bl.Accuracy)
		}
	}
	if opts.Seeds > 1 || opts.Baselines {
		m, sd := stats.MeanStd(mixedAcc)
		rep.Summary = &SeedSummary{Seeds: opts.Seeds, MixedMean: m, MixedStd: sd, Baselines: map[string][2]float64{}}
		for _, k := range baseOrder {
			bm, bs := stats.MeanStd(baseAcc[k])
			rep.Summary.Baselines[k] = [2]float64{bm, bs}
		}
		if opts.Baselines {
			compareWithFrontier(rep.Budget, rep.Seeds, rep.Baselines, rep.Summary)
		}
	}
	ckpt.Remove(s.ckpt.search) // the run is complete
	ckpt.Remove(s.ckpt.simpler)
	return rep, writeReport(o.Output.Report, rep, &rep.QuantizeReport)
}

// checks reports whether a search in space ends with the final check: a search (not the
// fast mode) in a space that contains simpler ones, the check not off.
func (o *OptimizeOptions) checks(space supernet.SearchOptions) bool {
	return o.FinalCheck != CheckOff && !o.sensitivity() && (space.Prune || space.Granularity == "filter")
}

// simplest is the simplest space the final check compares space with: no pruning, and the
// default granularity for a choice per filter.
func simplest(space supernet.SearchOptions) supernet.SearchOptions {
	space.Prune = false
	if space.Granularity == "filter" {
		space.Granularity = supernet.DefaultSearchOptions().Granularity
	}
	return space
}

// finalCheck is the final check (FinalCheck) of the architecture r derived from the
// logits of a search of sn in space (whose fine-tuning starts from ft; startFrom gives
// another's); with CheckSearch it searches the simplest space too (with the checkpoint ck
// when not ""). It returns the architecture to fine-tune, its start, the check and its
// phases.
func (o *OptimizeOptions) finalCheck(ctx context.Context, s *session, sn *supernet.Supernet, space supernet.SearchOptions, logits map[string][]float32, b supernet.Budget, seed uint64,
	r, ft *supernet.Resolved, startFrom func(*supernet.Resolved) (*supernet.Resolved, error), ck string) (*supernet.Resolved, *supernet.Resolved, *FinalCheck, []search.Phase, error) {
	type simpler struct {
		name   string
		sn     *supernet.Supernet
		logits map[string][]float32
	}
	var spaces []simpler
	if space.Prune {
		spaces = append(spaces, simpler{"every channel", sn.AtFullWidth(), logits})
	}
	if space.Granularity == "filter" {
		coarse := supernet.DefaultSearchOptions().Granularity
		opts := space
		opts.Granularity = coarse
		csn, err := sn.Space.NewSupernet(opts)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		cl, err := sn.CoarseLogits(logits, csn)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		spaces = append(spaces, simpler{coarse, csn, cl})
		if space.Prune {
			spaces = append(spaces, simpler{coarse + ", every channel", csn.AtFullWidth(), cl})
		}
	}
	t0 := time.Now()
	var phases []search.Phase
	lap := func(name string) {
		phases = append(phases, search.Phase{Name: name, Seconds: time.Since(t0).Seconds()})
		t0 = time.Now()
	}
	cfg := o.searchConfig(s, b, seed)
	eval := func(name string, r, ft *supernet.Resolved) (CheckedArch, error) {
		ev, err := search.HeldOut(ft, s.trainSet, cfg)
		if err != nil {
			return CheckedArch{}, err
		}
		c, err := s.cm.Cost(r)
		if err != nil {
			return CheckedArch{}, err
		}
		return CheckedArch{Space: name, Loss: ev.Loss, Accuracy: ev.Accuracy, MACs: r.MACs(), CostRatio: c / b.Reference}, nil
	}
	derived, err := eval("derived", r, ft)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	check := &FinalCheck{Candidates: []CheckedArch{derived}, Kept: derived.Space}
	best := derived.Loss
	try := func(name string, sn *supernet.Supernet, logits map[string][]float32, startFrom func(*supernet.Resolved) (*supernet.Resolved, error)) error {
		d, err := sn.Derive(s.cm, logits, b)
		if be, ok := err.(*supernet.BudgetError); ok {
			check.Candidates = append(check.Candidates, CheckedArch{Space: name, Unfit: be.Error()})
			return nil
		}
		if err != nil {
			return err
		}
		cr := d.Resolved()
		cft, err := startFrom(cr)
		if err != nil {
			return err
		}
		ca, err := eval(name, cr, cft)
		if err != nil {
			return err
		}
		check.Candidates = append(check.Candidates, ca)
		if ca.Loss < best {
			best, check.Kept, r, ft = ca.Loss, ca.Space, cr, cft
		}
		return nil
	}
	for _, sp := range spaces {
		if err := try(sp.name, sp.sn, sp.logits, startFrom); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	lap("final check")
	if o.FinalCheck == CheckSearch {
		name := spaces[len(spaces)-1].name + ", searched" // the simplest space is the last
		ssn, err := sn.Space.NewSupernet(simplest(space))
		if err != nil {
			return nil, nil, nil, nil, err
		}
		if least := ssn.MinCost(s.cm); least > b.Cost {
			check.Candidates = append(check.Candidates, CheckedArch{Space: name, Unfit: (&supernet.BudgetError{Budget: b.Cost, Min: least}).Error()})
		} else {
			o.note("seed %d: final check: searching the simplest space (%s) too", seed, DescribeSpace(ssn))
			res, err := o.find(ctx, s, ssn, b, seed, ck, ck != "" && s.ckpt.resumeSearch && ckpt.Left(ck))
			if ie, ok := err.(*train.InterruptedError); ok {
				// Resuming the (finished) search's checkpoint continues this one.
				ie.Checkpoint = s.ckpt.search
				return nil, nil, nil, nil, ie
			}
			if err != nil {
				return nil, nil, nil, nil, err
			}
			for _, ph := range res.phases {
				phases = append(phases, search.Phase{Name: "final check: " + ph.Name, Seconds: ph.Seconds})
			}
			t0 = time.Now()
			from, err := o.startFrom(s, res.weights)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			if err := try(name, ssn, res.logits, from); err != nil {
				return nil, nil, nil, nil, err
			}
			lap("final check: derive, evaluate")
		}
	}
	var parts []string
	for _, c := range check.Candidates {
		if c.Unfit != "" {
			parts = append(parts, fmt.Sprintf("%s: none within the budget", c.Space))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s MACs loss %.4f (%.2f%%)", c.Space, supernet.FormatCost(float64(c.MACs)), c.Loss, 100*c.Accuracy))
	}
	o.note("seed %d: final check on the held-out data: %s; kept %s", seed, strings.Join(parts, ", "), check.Kept)
	return r, ft, check, phases, nil
}

// startFrom returns what gives, for an architecture, the resolution its fine-tuning
// starts from: its weights from a search's (FineTuneFrom "search", weights not nil) or the
// input model's.
func (o *OptimizeOptions) startFrom(s *session, weights map[string][]float32) (func(*supernet.Resolved) (*supernet.Resolved, error), error) {
	if o.FineTuneFrom != "search" || weights == nil {
		return func(r *supernet.Resolved) (*supernet.Resolved, error) { return r, nil }, nil
	}
	sp, err := supernet.NewSpace(withWeights(s.g, weights))
	if err != nil {
		return nil, err
	}
	sp.Pow2Scales = s.space.Pow2Scales
	return func(r *supernet.Resolved) (*supernet.Resolved, error) { return sp.Resolve(r.Arch()) }, nil
}

// found is what the search or the sensitivity estimate of one seed gives the derivation.
type found struct {
	logits      map[string][]float32
	weights     map[string][]float32 // the search's trained weights (nil: the input model's)
	epochs      []search.SearchEpoch
	phases      []search.Phase
	sensitivity *SensitivityReport
	widthPrices []search.WidthPrice
}

// find runs the search (with the checkpoint ck, when not "", which it continues when
// resume) or the sensitivity estimate of one seed on the supernet sn.
func (o *OptimizeOptions) find(ctx context.Context, s *session, sn *supernet.Supernet, b supernet.Budget, seed uint64, ck string, resume bool) (*found, error) {
	if o.sensitivity() {
		cfg := o.sensitivityConfig(s, seed)
		cfg.Context = ctx
		o.note("seed %d: estimating the sensitivity of %s on %d training images, under %.4f of w8a8 (%s %s)", seed, DescribeSpace(sn),
			min(cfg.Images, s.trainSet.N), b.Ratio(), supernet.FormatCost(b.Cost), s.cm.Unit())
		res, err := search.Sensitivity(sn, s.trainSet, cfg)
		if err != nil {
			return nil, err
		}
		return &found{logits: res.Logits, phases: res.Phases, sensitivity: sensitivityReport(sn, res)}, nil
	}
	cfg := o.searchConfig(s, b, seed)
	cfg.Context = ctx
	if ck != "" {
		if err := o.searchCheckpoint(s, &cfg, ck, resume); err != nil {
			return nil, err
		}
	}
	var phases []search.Phase
	if o.InitLogits == InitSensitivity && !cfg.Resume {
		scfg := o.sensitivityConfig(s, seed)
		scfg.Context = ctx
		o.note("seed %d: starting the search's logits from the sensitivity of %s on %d training images", seed, DescribeSpace(sn), min(scfg.Images, s.trainSet.N))
		res, err := search.Sensitivity(sn, s.trainSet, scfg)
		if err != nil {
			return nil, err
		}
		for name, l := range res.Logits {
			dst := sn.Graph.Consts[name].F
			for i, v := range l {
				dst[i] = v * float32(o.InitSpread/supernet.LossLogitSpread)
			}
		}
		for _, ph := range res.Phases {
			phases = append(phases, search.Phase{Name: "initial " + ph.Name, Seconds: ph.Seconds})
		}
	}
	o.note("seed %d: searching %s, under %.4f of w8a8 (%s %s)", seed, DescribeSpace(sn), b.Ratio(), supernet.FormatCost(b.Cost), s.cm.Unit())
	res, err := search.Search(sn, s.trainSet, cfg)
	if err != nil {
		return nil, err
	}
	return &found{logits: res.Logits, weights: res.Weights, epochs: res.Epochs, phases: append(phases, res.Phases...), widthPrices: res.WidthPrices}, nil
}

// sensitivityBatch is the largest micro-batch of the sensitivity estimate: a weight's
// term is the variance of its gradient over the micro-batches, 64 of them at the default
// 2 048 images.
const sensitivityBatch = 32

// sensitivityConfig is the sensitivity estimate of one seed.
func (o *OptimizeOptions) sensitivityConfig(s *session, seed uint64) search.SensitivityConfig {
	t := o.Training
	return search.SensitivityConfig{Images: o.SensitivityImages, Batch: min(sensitivityBatch, t.Batch), CalibBatches: t.Calib, CalibBatch: t.Batch,
		Seed: seed, Norm: s.norm, Log: o.bars()}
}

// compareWithFrontier compares each seed's searched model with the uniform frontier of
// that seed's baselines at the budget ratio: it sets the seeds' FrontierAtBudget and
// MixedMinusFrontier, and in sum their mean and standard deviation and the frontier's
// notes (each once; prefixed with its seeds when it holds for some of them only). Seeds
// without baselines are left out.
func compareWithFrontier(budget float64, seeds []SeedResult, baselines []Baseline, sum *SeedSummary) {
	var front, diff []float64
	var notes []string
	noteSeeds := map[string][]string{}
	for i := range seeds {
		sr := &seeds[i]
		if sr.Diverged != "" {
			continue
		}
		var measured []supernet.Vertex
		for _, bl := range baselines {
			if bl.Seed == sr.Seed && bl.Diverged == "" {
				measured = append(measured, supernet.Vertex{WBits: bl.WBits, ABits: bl.ABits, CostRatio: bl.CostRatio, Accuracy: bl.Accuracy})
			}
		}
		acc, note, ok := supernet.NewFrontier(measured).At(budget)
		if !ok {
			continue
		}
		d := sr.Accuracy - acc
		sr.FrontierAtBudget, sr.MixedMinusFrontier = &acc, &d
		front, diff = append(front, acc), append(diff, d)
		if note != "" {
			if _, seen := noteSeeds[note]; !seen {
				notes = append(notes, note)
			}
			noteSeeds[note] = append(noteSeeds[note], fmt.Sprint(sr.Seed))
		}
	}
	if len(front) == 0 {
		return
	}
	fm, fs := stats.MeanStd(front)
	dm, ds := stats.MeanStd(diff)
	sum.FrontierAtBudget, sum.MixedMinusFrontier = &[2]float64{fm, fs}, &[2]float64{dm, ds}
	for i, n := range notes {
		if k := noteSeeds[n]; len(k) < len(front) {
			notes[i] = fmt.Sprintf("seed%s %s: %s", plural(len(k)), strings.Join(k, ", "), n)
		}
	}
	sum.FrontierNote = strings.Join(notes, "; ")
}

// searchConfig is the search of one seed.
func (o *OptimizeOptions) searchConfig(s *session, b supernet.Budget, seed uint64) search.SearchConfig {
	t := o.Training
	cfg := search.DefaultSearchConfig(s.cm, b)
	cfg.Distill = s.distill()
	cfg.Epochs, cfg.Batch, cfg.LR, cfg.Momentum, cfg.WeightDecay = o.SearchEpochs, t.Batch, t.LR, t.Momentum, t.WeightDecay
	cfg.ArchLR, cfg.Warmup, cfg.CalibBatches, cfg.Seed, cfg.Norm, cfg.Log = o.ArchLR, o.Warmup, t.Calib, seed, s.norm, o.bars()
	cfg.HardArch, cfg.HardWeights = o.Sampling == "hard", o.Sampling == "hard"
	cfg.MeasureWidths = o.WidthPrices == WidthsMeasured
	if t.Augment {
		cfg.Augment = &data.Augment{PadCrop: 2, HFlip: true}
	}
	return cfg
}

// searchCheckpoint gives the (first seed's) search cfg its checkpoint ck, continued when
// resume.
func (o *OptimizeOptions) searchCheckpoint(s *session, cfg *search.SearchConfig, ck string, resume bool) error {
	cfg.Checkpoint, cfg.Resume = ck, resume
	h, err := s.modelSetting()
	cfg.Depends = ckpt.Settings{h}
	if o.InitLogits == InitSensitivity {
		cfg.Depends.Add("initial logits", fmt.Sprintf("sensitivity of %d images, spread %g", o.SensitivityImages, o.InitSpread))
	}
	return err
}

// beforeSearch checks what Optimize can check once the data is loaded, before any work:
// that the share of the training data the search holds out fills a batch, and that the
// checkpoints Resume continues belong to this run (the fine-tuning's architecture is known
// only after the search, and checked then); then it gives the notes.
func (o *OptimizeOptions) beforeSearch(s *session, b supernet.Budget, sn *supernet.Supernet) error {
	if o.sensitivity() {
		if err := s.checkResume(nil, o.FineTuneEpochs); err != nil {
			return err
		}
		s.notes()
		return nil
	}
	cfg := o.searchConfig(s, b, o.Training.Seed)
	if err := cfg.CheckHoldout(s.trainSet.N); err != nil {
		if fe, ok := err.(*field.Error); ok {
			c := *fe
			c.Name = "Training.Batch"
			if o.Data.LimitTrain > 0 {
				c.Name, c.Msg = "Data.LimitTrain", fmt.Sprintf(" %d: Training.Batch%s", o.Data.LimitTrain, fe.Msg)
			}
			return &c
		}
		return err
	}
	if s.ckpt.resumeSearch {
		if err := o.searchCheckpoint(s, &cfg, s.ckpt.search, true); err != nil {
			return err
		}
		if err := cfg.CheckResume(sn, s.trainSet); err != nil {
			return err
		}
	}
	if err := s.checkResume(nil, o.FineTuneEpochs); err != nil {
		return err
	}
	s.notes()
	return nil
}

// withWeights returns a copy of g whose float constants named in w (of the same size) hold
// w's values instead.
func withWeights(g *graph.Graph, w map[string][]float32) *graph.Graph {
	c := g.Clone()
	for name, t := range c.Consts {
		if v, ok := w[name]; ok && t.DType == graph.Float32 && len(v) == len(t.F) {
			copy(t.F, v)
		}
	}
	return c
}

// UniformBaselines returns the uniform architectures to compare with at a budget: the
// dearest uniform w=a model at or below it, the dearest uniform (w, a) model of any pair
// at or below it when that is another, and the cheapest uniform w=a model above it (the
// budget's nominal comparison, such as w4a4 for 0.25, whose network input at 8 bits puts
// it just above). The bits come from opts.
func UniformBaselines(space *supernet.Space, cm supernet.CostModel, b supernet.Budget, opts supernet.SearchOptions) []Baseline {
	all := supernet.UniformCosts(space, cm, opts.WBits, opts.ABits)
	sort.Slice(all, func(i, j int) bool { return all[i].Cost < all[j].Cost })
	var out []Baseline
	add := func(c supernet.UniformCost, why string) {
		for _, x := range out {
			if x.WBits == c.WBits && x.ABits == c.ABits {
				return
			}
		}
		out = append(out, Baseline{WBits: c.WBits, ABits: c.ABits, CostRatio: c.Cost / b.Reference, Why: why})
	}
	costs, same := make([]float64, len(all)), make([]bool, len(all))
	for i, c := range all {
		costs[i], same[i] = c.Cost, c.WBits == c.ABits
	}
	sameBelow, anyBelow, sameAbove := supernet.Bracket(costs, same, b.Cost)
	for _, p := range []struct {
		i   int
		why string
	}{{sameBelow, "the dearest uniform w=a model within the budget"}, {anyBelow, "the dearest uniform model within the budget"},
		{sameAbove, "the cheapest uniform w=a model above the budget"}} {
		if p.i >= 0 {
			add(all[p.i], p.why)
		}
	}
	return out
}
