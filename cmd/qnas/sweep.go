package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/qnas/qnas"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/qnas/qnas/supernet"
	"github.com/qnas/qnas/sweep"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type sweepOptions struct {
	space     spaceFlags
	Out       string
	Budgets   string
	Seeds     int
	Seed      uint64
	Baselines bool
	Uniform   string
	Jobs      int
	Threads   int
	Point     int
	Emit      string
	Qnas      string
	slurm     sweep.SlurmOptions
}

// passFlag is a flag the sweep hands to the points' qnas optimize (and quantize) as given.
type passFlag struct {
	name     string
	kind     string // "string", "int", "float" or "bool": how the sweep parses it first
	quantize string // its name for qnas quantize; "" when uniform points do not take it
	usage    string
}

// passFlags are the flags of optimize that a sweep passes on; the search-space flags
// (spaceFlags) go to optimize too. A flag the user does not give is not passed, so each
// point takes its command's default. --ft-epochs is always passed: it is a uniform
// point's --epochs, whose default differs.
var passFlags = []passFlag{
	{"data", "string", "data", `data set folder, or "embedded" (required)`},
	{"mean", "string", "mean", "normalization mean (as optimize)"},
	{"std", "string", "std", "normalization std (as optimize)"},
	{"limit-train", "int", "limit-train", "train on N training samples (as optimize)"},
	{"limit-test", "int", "limit-test", "evaluate on N test samples (as optimize)"},
	{"batch", "int", "batch", "batch size (as optimize)"},
	{"calib", "int", "calib", "calibration batches (as optimize)"},
	{"lr", "float", "lr", "learning rate of the weights (as optimize)"},
	{"momentum", "float", "momentum", "SGD momentum (as optimize)"},
	{"wd", "float", "wd", "weight decay (as optimize)"},
	{"augment", "bool", "augment", "random crop and flip (as optimize; default on)"},
	{"train-exported", "bool", "train-exported", "the last fine-tuning epoch trains the exported model (as optimize; default on)"},
	{"distill", "float", "distill", "distillation weight (as optimize)"},
	{"distill-temp", "float", "distill-temp", "distillation temperature (as optimize)"},
	{"cost", "string", "cost", "cost model: bops (default), bops-acc or size"},
	{"target", "string", "target", "device profile as the cost model (as optimize)"},
	{"pow2-scales", "bool", "pow2-scales", "power-of-two scales (as optimize)"},
	{"format", "string", "format", "output format: qdq (default) or qonnx"},
	{"pack", "bool", "pack", "INT4 weights for layers at ≤ 4 bits (as optimize)"},
	{"ir", "int", "ir", "ONNX IR version of the outputs (as optimize)"},
	{"method", "string", "", "how a mixed point finds its architecture: search, sensitivity or auto (as optimize)"},
	{"sensitivity-images", "int", "", "training images of a mixed point's sensitivity estimate (as optimize)"},
	{"init-logits", "string", "", "where a mixed point's search logits start: uniform or sensitivity (as optimize)"},
	{"init-spread", "float", "", "the widest starting logit difference of --init-logits sensitivity (as optimize)"},
	{"search-epochs", "int", "", "search epochs of a mixed point (as optimize)"},
	{"arch-lr", "float", "", "learning rate of the architecture logits (as optimize)"},
	{"warmup", "float", "", "weights-only share of the first search epoch (as optimize)"},
	{"ft-from", "string", "", "weights the fine-tuning starts from: search or float (as optimize)"},
	{"sampling", "string", "", "Gumbel-softmax samples: hard or soft (as optimize)"},
	{"width-prices", "string", "", "how a mixed point's search prices width choices: measured or gradient (as optimize)"},
	{"final-check", "string", "", "how a mixed point's search in a richer space ends: search, derive or off (as optimize)"},
	{"ft-epochs", "int", "epochs", "fine-tuning epochs of every point (a uniform point's --epochs)"},
}

// defaultFTEpochs is optimize's --ft-epochs default, which uniform points take as --epochs.
const defaultFTEpochs = 6

// spaceFlagNames are the search-space flags (spaceFlags), passed to optimize.
var spaceFlagNames = []string{"wbits", "abits", "granularity", "prune", "widths", "pin"}

func newSweepCmd() *cobra.Command {
	var o sweepOptions
	cmd := &cobra.Command{
		Use:   "sweep MODEL --budgets R,R,.. --data DIR -o SWEEPDIR",
		Short: "Optimize over budgets × seeds (and uniform baselines); tables, Pareto and bit-map plots, index.html",
		Long: `sweep runs one qnas optimize per (budget, seed) and, with --baselines, one qnas
quantize per uniform bit pair and seed: the pairs whose costs bracket every budget, as
optimize --baselines chooses them (--uniform W:A,.. adds pairs of your own). Each such point
is a child qnas process writing only its own folder of SWEEPDIR (model.onnx, its arch and
encodings, report.json, qnas.log); --jobs N runs N at once, --threads split between them.
Then it merges the finished points into SWEEPDIR/sweep.json and sweep.csv, pareto.svg/png,
bits-<budget>.svg/png and index.html.

The folder is the state (SWEEPDIR/plan.json): a point with a report is skipped, an
interrupted one continues from the checkpoint in its folder, so a killed sweep is continued
by running the same command again; more budgets, seeds or baselines extend it.

  qnas sweep --point K -o SWEEPDIR      runs point K of the plan alone (a cluster task)
  qnas sweep merge SWEEPDIR             tables, plots and index.html of the finished points
  qnas sweep ... --emit slurm           writes SWEEPDIR/sweep.sbatch (a Slurm job array, one
                                        task per point), merge.sbatch and submit.sh instead
                                        of running (docs/cluster.md)

The flags of optimize named below are passed to every point; see qnas optimize --help.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSweep(cmd, args, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Out, "output", "o", "", "the sweep's folder, SWEEPDIR (required)")
	f.StringVar(&o.Budgets, "budgets", "", "cost ratios in (0, 1] of the model at w8a8, comma-separated (required)")
	f.IntVar(&o.Seeds, "seeds", 1, "seeds per point: --seed, --seed+1, …")
	f.Uint64Var(&o.Seed, "seed", 0, "the first seed")
	f.BoolVar(&o.Baselines, "baselines", false, "also train the uniform models whose costs bracket each budget, once per seed")
	f.StringVar(&o.Uniform, "uniform", "", "also train these uniform models, W:A pairs such as 4:4,8:8")
	f.IntVar(&o.Jobs, "jobs", 1, "points run at once")
	f.IntVar(&o.Threads, "threads", 2, "CPU threads in all, split between the --jobs points (with --point: the point's)")
	f.IntVar(&o.Point, "point", -1, "run only point K of the plan in -o (as a cluster task does), then stop")
	f.StringVar(&o.Emit, "emit", "", "slurm: write the Slurm job array and merge job into SWEEPDIR instead of running")
	f.StringVar(&o.Qnas, "qnas", "", "with --emit: the qnas binary as the compute nodes run it (default: this one)")
	f.IntVar(&o.slurm.CPUs, "slurm-cpus", 2, "CPUs per point (--cpus-per-task; also the point's --threads)")
	f.StringVar(&o.slurm.Mem, "slurm-mem", "", "memory per point (--mem, such as 8G)")
	f.StringVar(&o.slurm.Time, "slurm-time", "", "time limit per point (--time, such as 12:00:00)")
	f.StringVar(&o.slurm.Partition, "slurm-partition", "", "Slurm partition")
	f.StringVar(&o.slurm.Account, "slurm-account", "", "Slurm account")
	f.IntVar(&o.slurm.Parallel, "slurm-parallel", 0, "at most this many points at once (the array's %N; 0: no limit)")
	f.StringArrayVar(&o.slurm.Extra, "slurm-option", nil, "a further sbatch option for every job, such as --qos=long (repeatable)")
	o.space.register(f)
	for _, p := range passFlags {
		switch p.kind {
		case "int":
			def := 0
			if p.name == "ft-epochs" {
				def = defaultFTEpochs
			}
			f.Int(p.name, def, p.usage)
		case "float":
			f.Float64(p.name, 0, p.usage)
		case "bool":
			f.Bool(p.name, false, p.usage)
		default:
			f.String(p.name, "", p.usage)
		}
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "merge SWEEPDIR",
		Short: "Tables, plots and index.html of a sweep's finished points",
		Long: `merge reads the points of SWEEPDIR that have finished (wherever they ran) and writes
sweep.json, sweep.csv, pareto.svg/png, bits-<budget>.svg/png and index.html; the points
without a report are listed as missing.`,
		Args: exactArgs(1, "SWEEPDIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := sweep.Merge(args[0])
			if err != nil {
				return err
			}
			printSweep(cmd.OutOrStdout(), args[0], res)
			return nil
		},
	})
	return cmd
}

func runSweep(cmd *cobra.Command, args []string, o sweepOptions) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	f := cmd.Flags()
	if o.Out == "" {
		return usageError{fmt.Errorf("-o SWEEPDIR is required")}
	}
	if o.Threads < 1 || o.Jobs < 1 {
		return usageError{fmt.Errorf("--threads and --jobs must be positive, got %d and %d", o.Threads, o.Jobs)}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second signal ends the sweep at once
	if f.Changed("point") {
		return runSweepPoint(ctx, cmd, args, o, self)
	}
	if len(args) != 1 {
		return usageError{fmt.Errorf("sweep takes MODEL (or --point K, or: sweep merge SWEEPDIR), got %d arguments", len(args))}
	}
	spec, err := sweepSpec(f, args[0], o)
	if err != nil {
		return err
	}
	plan, err := sweep.Open(o.Out, spec)
	if err != nil {
		return usageError{err}
	}
	switch o.Emit {
	case "":
	case "slurm":
		so := o.slurm
		if so.Qnas = o.Qnas; so.Qnas == "" {
			so.Qnas = self
		}
		files, err := sweep.EmitSlurm(plan, so)
		for _, f := range files {
			fmt.Fprintln(stdout, "wrote", f)
		}
		if err == nil {
			fmt.Fprintf(stdout, "%d point%s; submit with %s\n", len(plan.Points), pluralS(len(plan.Points)), filepath.Join(plan.Dir(), sweep.SlurmSubmitFile))
		}
		return err
	default:
		return usageError{fmt.Errorf("--emit %q: want slurm", o.Emit)}
	}
	threads := max(o.Threads/o.Jobs, 1)
	if o.Jobs > o.Threads {
		fmt.Fprintf(stderr, "qnas: note: --jobs %d with --threads %d: each point takes 1 thread (%d in all)\n", o.Jobs, o.Threads, o.Jobs)
	}
	run := sweep.Exec{Qnas: self, Threads: threads}
	res, err := sweep.Run(ctx, plan, run.Run, sweep.RunOptions{Jobs: o.Jobs, Progress: stderr})
	if res != nil {
		printSweep(stdout, plan.Dir(), res)
	}
	var ee *sweep.ExitError
	if errors.As(err, &ee) && ee.Usage() {
		return usageError{err}
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w; run the same command again to continue", err)
	}
	return err
}

// runSweepPoint runs point K of the plan in -o, its output echoed to stdout.
func runSweepPoint(ctx context.Context, cmd *cobra.Command, args []string, o sweepOptions, self string) error {
	for _, name := range []string{"budgets", "seeds", "seed", "baselines", "uniform", "jobs", "emit"} {
		if cmd.Flags().Changed(name) {
			return usageError{fmt.Errorf("--point runs a point of the plan in -o as it is: not with --%s", name)}
		}
	}
	if len(args) > 0 {
		return usageError{fmt.Errorf("--point runs a point of the plan in -o: no MODEL")}
	}
	plan, err := sweep.Load(o.Out)
	if err != nil {
		return usageError{err}
	}
	if _, err := plan.Point(o.Point); err != nil {
		return usageError{err}
	}
	run := sweep.Exec{Qnas: self, Threads: o.Threads, Echo: cmd.OutOrStdout()}
	ran, err := sweep.RunPoint(ctx, plan, o.Point, run.Run)
	var ee *sweep.ExitError
	if errors.As(err, &ee) && ee.Usage() {
		return usageError{err}
	}
	if err == nil && !ran {
		fmt.Fprintf(cmd.OutOrStdout(), "point %d (%s) has finished before\n", o.Point, plan.Points[o.Point].Name)
	}
	return err
}

// sweepSpec checks the sweep's flags and the model before anything is written, and turns
// them into a sweep.Spec: budgets the search space can reach, the uniform baselines, and
// the flags every point passes on.
func sweepSpec(f *pflag.FlagSet, model string, o sweepOptions) (sweep.Spec, error) {
	spec := sweep.Spec{Model: model, Seeds: o.Seeds, Seed: o.Seed}
	if o.Budgets == "" {
		return spec, usageError{fmt.Errorf("--budgets is required: cost ratios such as 0.0625,0.125,0.25")}
	}
	var err error
	if spec.Budgets, err = sweep.ParseBudgets(o.Budgets); err != nil {
		return spec, usageError{err}
	}
	if o.Seeds < 1 {
		return spec, usageError{fmt.Errorf("--seeds %d: want at least 1", o.Seeds)}
	}
	if spec.Uniform, err = parseUniform(o.Uniform); err != nil {
		return spec, usageError{err}
	}
	if spec.OptimizeArgs, spec.QuantizeArgs, err = pointArgs(f); err != nil {
		return spec, usageError{err}
	}
	opts, err := o.space.options()
	if err != nil {
		return spec, usageError{err}
	}
	cost, target := f.Lookup("cost").Value.String(), f.Lookup("target").Value.String()
	cm, err := supernet.NewCostModel(cost, target)
	if err != nil {
		return spec, usageError{err}
	}
	if opts, err = opts.For(cm); err != nil {
		return spec, usageError{err}
	}
	_, space, err := loadSpace(model)
	if err != nil {
		return spec, err
	}
	ref := cm.Reference(space)
	if err := supernet.CheckCosts(cm, ref); err != nil {
		return spec, usageError{err}
	}
	probe, err := space.NewSupernet(opts)
	if err != nil {
		return spec, usageError{err}
	}
	minRatio := probe.MinCost(cm) / ref
	for _, b := range spec.Budgets {
		if b < minRatio*(1-1e-9) {
			return spec, usageError{fmt.Errorf("--budgets %s: the cheapest architecture of the search space costs %.4f of the model at w8a8, more than %g; raise the budget, or widen the space (--wbits, --abits, --prune)",
				o.Budgets, minRatio, b)}
		}
	}
	if o.Baselines {
		chosen := sweep.ChooseUniform(supernet.UniformCosts(space, cm, opts.WBits, opts.ABits), spec.Budgets)
		for _, u := range spec.Uniform {
			if !containsBits(chosen, u) {
				chosen = append(chosen, u)
			}
		}
		spec.Uniform = chosen
	}
	return spec, nil
}

func containsBits(list []sweep.Bits, b sweep.Bits) bool {
	for _, x := range list {
		if x == b {
			return true
		}
	}
	return false
}

// parseUniform reads --uniform: W:A pairs.
func parseUniform(s string) ([]sweep.Bits, error) {
	var out []sweep.Bits
	for _, part := range splitList(s) {
		w, a, ok := strings.Cut(part, ":")
		wb, err1 := strconv.Atoi(w)
		ab, err2 := strconv.Atoi(a)
		if !ok || err1 != nil || err2 != nil || wb < 2 || wb > 8 || ab < 2 || ab > 8 {
			return nil, fmt.Errorf("--uniform %q: %q is not a W:A pair of bits 2..8, such as 4:4", s, part)
		}
		if b := (sweep.Bits{WBits: wb, ABits: ab}); !containsBits(out, b) {
			out = append(out, b)
		}
	}
	return out, nil
}

// pointArgs returns the flags given to the sweep that its mixed points pass to qnas
// optimize and its uniform points to qnas quantize, in a fixed order, with --data and a
// --target file made absolute (points may run on other machines, in other folders).
func pointArgs(f *pflag.FlagSet) (optimize, quantize []string, err error) {
	data := f.Lookup("data").Value.String()
	if data == "" {
		return nil, nil, fmt.Errorf("--data is required (a folder, or %q)", qnas.EmbeddedData)
	}
	add := func(list []string, name, value string, isBool bool) []string {
		if isBool {
			return append(list, "--"+name+"="+value)
		}
		return append(list, "--"+name, value)
	}
	for _, name := range spaceFlagNames {
		if fl := f.Lookup(name); fl.Changed {
			optimize = add(optimize, name, fl.Value.String(), fl.Value.Type() == "bool")
		}
	}
	for _, p := range passFlags {
		fl := f.Lookup(p.name)
		if !fl.Changed && p.name != "ft-epochs" {
			continue
		}
		v := fl.Value.String()
		switch p.name {
		case "data":
			if v != qnas.EmbeddedData {
				fi, err := os.Stat(v)
				if err != nil || !fi.IsDir() {
					return nil, nil, fmt.Errorf("--data %s: no such folder", v)
				}
				if v, err = filepath.Abs(v); err != nil {
					return nil, nil, err
				}
			}
		case "target":
			if fi, err := os.Stat(v); err == nil && fi.Mode().IsRegular() {
				if v, err = filepath.Abs(v); err != nil {
					return nil, nil, err
				}
			}
		}
		optimize = add(optimize, p.name, v, p.kind == "bool")
		if p.quantize != "" {
			quantize = add(quantize, p.quantize, v, p.kind == "bool")
		}
	}
	return optimize, quantize, nil
}

// printSweep prints what a merge found: per budget the searched models against the
// uniform frontier, and the uniform models.
func printSweep(w io.Writer, dir string, res *sweep.Result) {
	for _, b := range res.Budgets {
		fmt.Fprintf(w, "budget %g: cost %.4f, accuracy %.2f%%", b.Budget, b.CostRatio, 100*b.Accuracy)
		if b.Seeds > 1 {
			fmt.Fprintf(w, " ± %.2f over %d seeds", 100*b.AccuracyStd, b.Seeds)
		}
		if b.MixedMinusFrontier != nil {
			fmt.Fprintf(w, "; uniform frontier %.2f%% (%+.2f)", 100**b.FrontierAtBudget, 100**b.MixedMinusFrontier)
		}
		fmt.Fprintln(w)
	}
	for _, v := range res.Frontier {
		fmt.Fprintf(w, "uniform w%da%d: cost %.4f, accuracy %.2f%%\n", v.WBits, v.ABits, v.CostRatio, 100*v.Accuracy)
	}
	fmt.Fprintf(w, "merged %d of %d points into %s (sweep.json, sweep.csv, pareto.png, index.html)\n", res.Finished, res.Points, dir)
}

// pluralS returns "s" unless n is 1.
func pluralS(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
