package main

import (
	"context"
	"fmt"
	"github.com/qnas/qnas/graph"
	"io"
	"math"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/search"
	"github.com/qnas/qnas/supernet"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// spaceFlags are the search-space flags optimize, bench --mode search and inspect
// --supernet share.
type spaceFlags struct {
	WBits, ABits string
	Granularity  string
	Prune        bool
	Widths       string
	Pin          string
}

func (s *spaceFlags) register(f *pflag.FlagSet) {
	def := supernet.DefaultSearchOptions()
	f.StringVar(&s.WBits, "wbits", joinInts(def.WBits), "weight bits a choice unit may take")
	f.StringVar(&s.ABits, "abits", joinInts(def.ABits), "bits a layer's input may take (the network input stays at 8)")
	f.StringVar(&s.Granularity, "granularity", def.Granularity, "unit of the weight-bit choice: layer, group:G (G groups of consecutive filters per layer; fewer where G does not divide the filter count) or filter")
	f.BoolVar(&s.Prune, "prune", false, "also search how many filters every prunable channel group (layers whose outputs are added together) keeps")
	f.StringVar(&s.Widths, "widths", joinFloatsSimple(def.Widths), "with --prune: the fractions of filters a group may keep")
	f.StringVar(&s.Pin, "pin", "", "keep these layers at 8-bit weights and inputs: first, last or first,last")
}

// options turns the flags into supernet.SearchOptions; errors name the flag.
func (s *spaceFlags) options() (supernet.SearchOptions, error) {
	o := supernet.SearchOptions{Granularity: s.Granularity, Prune: s.Prune}
	if !s.Prune && s.Widths != joinFloatsSimple(supernet.DefaultSearchOptions().Widths) {
		return o, fmt.Errorf("--widths %s applies with --prune (the fractions of filters a pruned group may keep): add --prune, or drop --widths", s.Widths)
	}
	var err error
	if o.WBits, err = parseInts("--wbits", s.WBits); err != nil {
		return o, err
	}
	if o.ABits, err = parseInts("--abits", s.ABits); err != nil {
		return o, err
	}
	for _, part := range splitList(s.Widths) {
		w, err := strconv.ParseFloat(part, 64)
		if err != nil {
			return o, fmt.Errorf("--widths %q: %q is not a number", s.Widths, part)
		}
		o.Widths = append(o.Widths, w)
	}
	for _, p := range splitList(s.Pin) {
		switch p {
		case "first":
			o.PinFirst = true
		case "last":
			o.PinLast = true
		default:
			return o, fmt.Errorf("--pin %q: want first, last or first,last", s.Pin)
		}
	}
	return o, o.Check()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseInts(flag, s string) ([]int, error) {
	var out []int
	for _, p := range splitList(s) {
		v, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %q is not an integer", flag, s, p)
		}
		out = append(out, v)
	}
	return out, nil
}

func joinInts(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}

func joinFloatsSimple(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

// parseBudget reads --budget: a ratio in (0, 1] of the model's cost at w8a8, or an absolute
// cost with a unit suffix k, M, G or T (1.2G) in the cost model's unit. ratio reports which.
func parseBudget(s string) (v float64, ratio bool, err error) {
	mult := 1.0
	t := strings.TrimSpace(s)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult = 1e3
		case 'M':
			mult = 1e6
		case 'G':
			mult = 1e9
		case 'T':
			mult = 1e12
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err = strconv.ParseFloat(t, 64)
	switch {
	case err != nil || math.IsNaN(v) || math.IsInf(v, 0):
		return 0, false, fmt.Errorf("--budget %q: want a ratio in (0, 1] or a cost with a unit (1.2G)", s)
	case v <= 0:
		return 0, false, fmt.Errorf("--budget %s: must be positive", s)
	case mult == 1 && v > 1:
		return 0, false, fmt.Errorf("--budget %s: a ratio is at most 1 (for an absolute cost give a unit: k, M, G or T)", s)
	}
	return v * mult, mult == 1, nil
}

type optimizeOptions struct {
	quantFlags
	space        spaceFlags
	Budget       string
	SearchEpochs int
	FTEpochs     int
	ArchLR       float64
	Warmup       float64
	Sampling     string
	FTFrom       string
	Baselines    bool
	Seeds        int
}

func newOptimizeCmd() *cobra.Command {
	var o optimizeOptions
	cmd := &cobra.Command{
		Use:   "optimize MODEL --budget R --data DIR -o OUT.onnx",
		Short: "Search per-filter-group bits (and widths) under a budget, fine-tune, and write ONNX",
		Long: `optimize searches, by differentiable architecture search, the weight bits of every
filter group, the input bits of every layer and, with --prune, the kept filters of every
prunable channel group, so that the model costs at most --budget (a ratio of its cost at
8-bit weights and activations, or an absolute cost such as 1.2G in the cost model's unit).
The search holds out 10% of the training data (after --limit-train): the weights train on
the other 90%, the architecture on the held-out share, which must hold at least one --batch
(with the default --batch 128: 1 280 training samples or more). Then it derives the
architecture, repairs it into [0.98, 1] × budget, and does what qnas quantize --arch does
with it: fine-tunes with quantization in the loop and writes OUT.onnx, OUT.encodings.json
and OUT.arch.json. The search's state is saved in OUT.onnx.search.ckpt, the fine-tuning's
in OUT.onnx.ckpt (after every epoch and on SIGINT/SIGTERM); --resume FILE continues the run
FILE holds. --baselines also fine-tunes uniform models of the nearest costs; --seeds N
repeats everything per seed (the model written is the first seed's) and reports mean ± std.`,
		Args: exactArgs(1, "MODEL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOptimize(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	f := cmd.Flags()
	o.register(f)
	o.space.register(f)
	f.StringVar(&o.Budget, "budget", "", "cost budget: a ratio in (0, 1] of the model at w8a8, or an absolute cost with a unit (k, M, G, T) (required)")
	f.IntVar(&o.SearchEpochs, "search-epochs", 2, "search epochs")
	f.IntVar(&o.FTEpochs, "ft-epochs", 6, "quantization-aware fine-tuning epochs of the derived architecture")
	f.Float64Var(&o.ArchLR, "arch-lr", 0.01, "Adam learning rate of the architecture logits")
	f.Float64Var(&o.Warmup, "warmup", 0.2, "fraction of the first search epoch that trains the weights alone")
	f.StringVar(&o.FTFrom, "ft-from", "search", "weights the fine-tuning starts from: search (the supernet's, trained during the search) or float (the input model's)")
	f.StringVar(&o.Sampling, "sampling", "hard", "Gumbel-softmax samples of the search: hard (one-hot forward, straight-through gradient) or soft (the composite mixture)")
	f.BoolVar(&o.Baselines, "baselines", false, "also fine-tune uniform models at the nearest costs with the same epochs")
	f.IntVar(&o.Seeds, "seeds", 1, "repeat the whole run for seeds --seed, --seed+1, …")
	return cmd
}

// optimizeReport is the report of optimize (the command-line contract): quantize's report
// of the written model plus the budget, the phases, the baselines and the per-seed results.
type optimizeReport struct {
	quantReport
	Budget       float64              `json:"budget"` // as a ratio of the reference cost
	BudgetCost   float64              `json:"budget_cost"`
	SearchEpochs int                  `json:"search_epochs"`
	Search       []search.SearchEpoch `json:"search"`
	ArgmaxRatio  float64              `json:"argmax_cost_ratio"` // the search's most probable architecture, before repair
	Baselines    []baseline           `json:"baselines,omitempty"`
	Seeds        []seedResult         `json:"seeds,omitempty"`
	Summary      *seedSummary         `json:"summary,omitempty"`
}

type baseline struct {
	WBits     int     `json:"wbits"`
	ABits     int     `json:"abits"`
	CostRatio float64 `json:"cost_ratio"`
	Accuracy  float64 `json:"accuracy"`
	Seed      uint64  `json:"seed"`
	Why       string  `json:"why"`
}

type seedResult struct {
	Seed        uint64  `json:"seed"`
	CostRatio   float64 `json:"cost_ratio"`
	Accuracy    float64 `json:"accuracy"`
	ArgmaxRatio float64 `json:"argmax_cost_ratio"`
	Arch        string  `json:"arch"`
}

type seedSummary struct {
	Seeds     int                   `json:"seeds"`
	MixedMean float64               `json:"mixed_mean"`
	MixedStd  float64               `json:"mixed_std"`
	Baselines map[string][2]float64 `json:"baselines,omitempty"` // "w4a4": [mean, std]
}

func runOptimize(stdout, stderr io.Writer, path string, o optimizeOptions) error {
	if o.Budget == "" {
		return usageError{fmt.Errorf("--budget is required (a ratio such as 0.25, or a cost such as 1.2G)")}
	}
	bv, isRatio, err := parseBudget(o.Budget)
	if err != nil {
		return usageError{err}
	}
	opts, err := o.space.options()
	if err != nil {
		return usageError{err}
	}
	if o.SearchEpochs < 1 || o.FTEpochs < 0 || o.Seeds < 1 || !(o.ArchLR > 0) || o.Warmup < 0 || o.Warmup > 1 {
		return usageError{fmt.Errorf("--search-epochs and --seeds must be positive, --ft-epochs not negative, --arch-lr positive, --warmup in [0, 1]")}
	}
	if o.Sampling != "hard" && o.Sampling != "soft" {
		return usageError{fmt.Errorf("--sampling %q: want hard or soft", o.Sampling)}
	}
	if o.FTFrom != "float" && o.FTFrom != "search" {
		return usageError{fmt.Errorf("--ft-from %q: want float or search", o.FTFrom)}
	}
	if o.Resume != "" && (o.Seeds > 1 || o.Baselines) {
		return usageError{fmt.Errorf("--resume continues a single run: not with --seeds > 1 or --baselines")}
	}
	if err := o.prepare(path); err != nil {
		return err
	}
	cm, err := supernet.NewCostModel(o.Cost, o.Target)
	if err != nil {
		return usageError{err}
	}
	if opts, err = opts.For(cm); err != nil {
		return usageError{err}
	}
	g, space, err := loadSpace(path)
	if err != nil {
		return err
	}
	ref := cm.Reference(space)
	budget, err := budgetCost(o.Budget, bv, isRatio, ref, cm)
	if err != nil {
		return err
	}
	probe, err := space.NewSupernet(opts)
	if err != nil {
		return usageError{err}
	}
	if min := probe.MinCost(cm); budget < min*(1-1e-9) {
		return usageError{fmt.Errorf("--budget %s: the cheapest architecture of the search space costs %.4f of the model at w8a8 (%s %s); raise the budget, or widen the space (--wbits, --abits, --prune)",
			o.Budget, min/ref, humanF(min), cm.Unit())}
	}
	trainSet, testSet, norm, err := o.openData(g, stderr)
	if err != nil {
		return err
	}
	if err := o.beforeSearch(stderr, path, g, cm, budget, probe, trainSet, norm); err != nil {
		return err
	}
	if g, space, err = restoreBatchNorm(g, space, trainSet, norm, o.Calib, o.Batch, stderr); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := &optimizeReport{Budget: budget / ref, BudgetCost: budget, SearchEpochs: o.SearchEpochs}
	var mixedAcc []float64
	baseAcc := map[string][]float64{}
	var baseOrder []string
	for k := 0; k < o.Seeds; k++ {
		seed := o.Seed + uint64(k)
		sn, err := space.NewSupernet(opts)
		if err != nil {
			return usageError{err}
		}
		cfg := o.searchConfig(cm, budget, seed, norm, stderr, g)
		cfg.Context = ctx
		if k == 0 {
			if err := o.searchCheckpoint(&cfg, path); err != nil {
				return err
			}
		}
		fmt.Fprintf(stderr, "qnas: seed %d: searching %s, under %.4f of w8a8 (%s %s)\n", seed, describeSpace(sn), budget/ref, humanF(budget), cm.Unit())
		res, err := search.Search(sn, trainSet, cfg)
		if err != nil {
			return err
		}
		t0 := time.Now()
		argmax := sn.Argmax(cm, res.Logits)
		d, err := sn.Derive(cm, res.Logits, budget)
		if err != nil {
			return err
		}
		r := d.Resolved()
		derived := time.Since(t0).Seconds()
		q := o.quantFlags
		q.Seed = seed
		if k > 0 { // later seeds are measured, not written
			q.Out = ""
		}
		ft := r
		if o.FTFrom == "search" {
			sp, err := supernet.NewSpace(withWeights(g, res.Weights))
			if err != nil {
				return err
			}
			if ft, err = sp.Resolve(r.Arch()); err != nil {
				return err
			}
		}
		qr, err := q.run(stderr, path, g, ft, cm, o.FTEpochs, trainSet, testSet, norm)
		if err != nil {
			return err
		}
		arch := string(supernet.MarshalArch(r.Arch(), nil))
		rep.Seeds = append(rep.Seeds, seedResult{Seed: seed, CostRatio: qr.CostRatio, Accuracy: qr.Accuracy, ArgmaxRatio: argmax.Cost() / ref, Arch: arch})
		mixedAcc = append(mixedAcc, qr.Accuracy)
		if k == 0 {
			rep.quantReport = *qr
			rep.Search = res.Epochs
			rep.ArgmaxRatio = argmax.Cost() / ref
			phases := append([]search.Phase{}, res.Phases...)
			phases = append(phases, search.Phase{Name: "derive", Seconds: derived})
			rep.Phases = append(phases, qr.Phases...)
		}
		if o.Baselines {
			for _, b := range uniformBaselines(space, cm, budget, opts) {
				arch := &supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{b.WBits}, ABits: b.ABits}}
				br, err := space.Resolve(arch)
				if err != nil {
					return err
				}
				bq := o.quantFlags
				bq.Seed, bq.Out = seed, ""
				fmt.Fprintf(stderr, "qnas: seed %d: baseline w%da%d (%s)\n", seed, b.WBits, b.ABits, b.Why)
				brep, err := bq.run(stderr, path, g, br, cm, o.FTEpochs, trainSet, testSet, norm)
				if err != nil {
					return err
				}
				b.Accuracy, b.Seed = brep.Accuracy, seed
				rep.Baselines = append(rep.Baselines, b)
				key := fmt.Sprintf("w%da%d", b.WBits, b.ABits)
				if _, ok := baseAcc[key]; !ok {
					baseOrder = append(baseOrder, key)
				}
				baseAcc[key] = append(baseAcc[key], b.Accuracy)
			}
		}
	}
	if o.Seeds > 1 || o.Baselines {
		m, s := meanStd(mixedAcc)
		rep.Summary = &seedSummary{Seeds: o.Seeds, MixedMean: m, MixedStd: s, Baselines: map[string][2]float64{}}
		for _, k := range baseOrder {
			bm, bs := meanStd(baseAcc[k])
			rep.Summary.Baselines[k] = [2]float64{bm, bs}
		}
	}
	removeCheckpoint(o.ckpt.search) // the run is complete
	if err := o.finish(stdout, rep, &rep.quantReport); err != nil {
		return err
	}
	if rep.Summary != nil && !o.JSON {
		fmt.Fprintf(stdout, "mixed: %.2f%% ± %.2f over %d seeds", 100*rep.Summary.MixedMean, 100*rep.Summary.MixedStd, o.Seeds)
		for _, k := range baseOrder {
			v := rep.Summary.Baselines[k]
			fmt.Fprintf(stdout, "; %s %.2f%% ± %.2f", k, 100*v[0], 100*v[1])
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// searchConfig is the search of one seed (teacher: the distillation teacher, when on).
func (o *optimizeOptions) searchConfig(cm supernet.CostModel, budget float64, seed uint64, norm data.Normalize, log io.Writer, teacher *graph.Graph) search.SearchConfig {
	cfg := search.DefaultSearchConfig(cm, budget)
	cfg.Distill = o.distill(teacher)
	cfg.Epochs, cfg.Batch, cfg.LR, cfg.Momentum, cfg.WeightDecay = o.SearchEpochs, o.Batch, o.LR, o.Momentum, o.WD
	cfg.ArchLR, cfg.Warmup, cfg.CalibBatches, cfg.Seed, cfg.Norm, cfg.Log = o.ArchLR, o.Warmup, o.Calib, seed, norm, log
	cfg.HardArch, cfg.HardWeights = o.Sampling == "hard", o.Sampling == "hard"
	if o.Augment {
		cfg.Augment = &data.Augment{PadCrop: 2, HFlip: true}
	}
	return cfg
}

func meanStd(v []float64) (mean, std float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) > 1 {
		for _, x := range v {
			std += (x - mean) * (x - mean)
		}
		std = math.Sqrt(std / float64(len(v)-1))
	}
	return mean, std
}

// uniformBaselines returns the uniform architectures to compare with at a budget: the
// dearest uniform w=a model at or below it, the dearest uniform (w, a) model of any pair at
// or below it when that is another, and the cheapest uniform w=a model above it (the
// budget's nominal comparison, such as w4a4 for 0.25, whose network input at 8 bits puts
// it just above).
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

func uniformBaselines(space *supernet.Space, cm supernet.CostModel, budget float64, opts supernet.SearchOptions) []baseline {
	ref := cm.Reference(space)
	type cand struct {
		w, a int
		cost float64
	}
	var all []cand
	for _, w := range opts.WBits {
		for _, a := range opts.ABits {
			r, err := space.Resolve(&supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{w}, ABits: a}})
			if err != nil {
				continue
			}
			c, err := cm.Cost(r)
			if err != nil {
				continue
			}
			all = append(all, cand{w, a, c})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].cost < all[j].cost })
	var out []baseline
	add := func(c cand, why string) {
		for _, b := range out {
			if b.WBits == c.w && b.ABits == c.a {
				return
			}
		}
		out = append(out, baseline{WBits: c.w, ABits: c.a, CostRatio: c.cost / ref, Why: why})
	}
	var sameBelow, anyBelow, sameAbove *cand
	for i := range all {
		c := &all[i]
		if c.cost <= budget {
			anyBelow = c
			if c.w == c.a {
				sameBelow = c
			}
		} else if c.w == c.a && sameAbove == nil {
			sameAbove = c
		}
	}
	if sameBelow != nil {
		add(*sameBelow, "the dearest uniform w=a model within the budget")
	}
	if anyBelow != nil {
		add(*anyBelow, "the dearest uniform model within the budget")
	}
	if sameAbove != nil {
		add(*sameAbove, "the cheapest uniform w=a model above the budget")
	}
	return out
}
