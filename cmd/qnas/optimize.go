package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/qnas/qnas"
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
	o, err := s.parse()
	if err != nil {
		return o, usageError{err}
	}
	if err := o.Check(); err != nil {
		return o, usageError{err}
	}
	return o, nil
}

// parse reads the flags into supernet.SearchOptions, unchecked.
func (s *spaceFlags) parse() (supernet.SearchOptions, error) {
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
	return o, nil
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

type optimizeOptions struct {
	quantFlags
	space  spaceFlags
	Budget string
	o      qnas.OptimizeOptions
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
(with the default --batch 128: 1 280 training samples or more). --method sensitivity
replaces the search by a fast estimate of each choice's effect on the training loss, read
from --sensitivity-images training images (no training, no search checkpoint); the default,
--method auto, takes it for models of 100M MACs per sample or more (ImageNet-size CNNs)
and for fewer than 20 000 training samples (after --limit-train), where the search's
architecture steps do worse than the estimate, and searches otherwise. The search starts
from that estimate too (--init-logits sensitivity, the default; uniform starts every
option equally likely). Then it
derives the architecture, repairs it into [0.98, 1] × budget, and does what qnas quantize --arch does
with it: fine-tunes with quantization in the loop and writes OUT.onnx, OUT.encodings.json
and OUT.arch.json. The search's state is saved in OUT.onnx.search.ckpt, the fine-tuning's
in OUT.onnx.ckpt (after every epoch and on SIGINT/SIGTERM); --resume FILE continues the run
FILE holds. --baselines also fine-tunes uniform models of the nearest costs and compares
the searched model with their frontier at the budget (linear in cost between them; below
the cheapest, that one); --seeds N repeats everything per seed (the model written is the
first seed's) and reports mean ± std.`,
		Args: exactArgs(1, "MODEL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOptimize(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	f := cmd.Flags()
	o.register(f)
	o.space.register(f)
	o.o = qnas.DefaultOptimizeOptions()
	f.StringVar(&o.Budget, "budget", "", "cost budget: a ratio in (0, 1] of the model at w8a8, or an absolute cost with a unit (k, M, G, T) (required)")
	f.StringVar(&o.o.Method, "method", o.o.Method, "how the architecture is found: search (the differentiable search), sensitivity (the fast mode: each choice's effect on the loss estimated from --sensitivity-images training images, no search training) or auto (sensitivity from 100M MACs per sample or below 20000 training samples, search otherwise)")
	f.IntVar(&o.o.SensitivityImages, "sensitivity-images", o.o.SensitivityImages, "the training images the sensitivity estimate reads (the fast mode's, or the search's starting point with --init-logits sensitivity; at most the training split's)")
	f.StringVar(&o.o.InitLogits, "init-logits", o.o.InitLogits, "where the search's logits start: sensitivity (each option's estimated effect on the loss, from --sensitivity-images training images) or uniform (every option equally likely)")
	f.Float64Var(&o.o.InitSpread, "init-spread", o.o.InitSpread, "with --init-logits sensitivity: the widest starting logit difference")
	f.IntVar(&o.o.SearchEpochs, "search-epochs", o.o.SearchEpochs, "search epochs")
	f.IntVar(&o.o.FineTuneEpochs, "ft-epochs", o.o.FineTuneEpochs, "quantization-aware fine-tuning epochs of the derived architecture")
	f.Float64Var(&o.o.ArchLR, "arch-lr", o.o.ArchLR, "Adam learning rate of the architecture logits")
	f.Float64Var(&o.o.Warmup, "warmup", o.o.Warmup, "fraction of the first search epoch that trains the weights alone")
	f.StringVar(&o.o.FineTuneFrom, "ft-from", o.o.FineTuneFrom, "weights the fine-tuning starts from: search (the supernet's, trained during the search) or float (the input model's)")
	f.StringVar(&o.o.Sampling, "sampling", o.o.Sampling, "Gumbel-softmax samples of the search: hard (one-hot forward, straight-through gradient) or soft (the composite mixture)")
	f.StringVar(&o.o.FinalCheck, "final-check", o.o.FinalCheck, "with --prune or --granularity filter, how the search ends: search (compare the derived architecture, on the held-out data after post-training quantization, with those the simpler spaces derive from the same logits and with a search of the simplest space, and fine-tune the best), derive (the same without that search) or off (keep the derived one)")
	f.StringVar(&o.o.WidthPrices, "width-prices", o.o.WidthPrices, "with --prune: how the search prices width choices: measured (loss differences of one group's widths on each architecture batch, one more forward pass per step) or gradient (the straight-through gradient of the expected channel mask)")
	f.BoolVar(&o.o.Baselines, "baselines", false, "also fine-tune uniform models at the nearest costs with the same epochs")
	f.IntVar(&o.o.Seeds, "seeds", o.o.Seeds, "repeat the whole run for seeds --seed, --seed+1, …")
	return cmd
}

// diverged counts the seeds whose fine-tuning diverged.
func diverged(seeds []qnas.SeedResult) int {
	n := 0
	for _, s := range seeds {
		if s.Diverged != "" {
			n++
		}
	}
	return n
}

func runOptimize(stdout, stderr io.Writer, path string, o optimizeOptions) error {
	if o.Budget == "" {
		return usageError{fmt.Errorf("--budget is required (a ratio such as 0.25, or a cost such as 1.2G)")}
	}
	budget, err := qnas.ParseBudget(o.Budget)
	if err != nil {
		return usageError{err}
	}
	opts := o.o
	if (opts.Method == qnas.MethodSearch || opts.Method == "") && opts.InitLogits != qnas.InitSensitivity && opts.SensitivityImages != qnas.DefaultSensitivityImages {
		return usageError{fmt.Errorf("--sensitivity-images %d applies to the fast mode and to --init-logits %s, not to --method %s from --init-logits %s: drop --method, --init-logits or --sensitivity-images",
			opts.SensitivityImages, qnas.InitSensitivity, qnas.MethodSearch, opts.InitLogits)}
	}
	if opts.Space, err = o.space.parse(); err != nil {
		return usageError{err}
	}
	if opts.Options, err = o.options(stderr); err != nil {
		return err
	}
	ctx, stop := interruptible()
	defer stop()
	rep, err := qnas.Optimize(ctx, path, budget, opts)
	if err != nil {
		return err
	}
	if err := o.print(stdout, rep, &rep.QuantizeReport); err != nil {
		return err
	}
	if rep.Summary != nil && !o.JSON {
		n := opts.Seeds
		// pm writes a mean in points, with its spread when there are several seeds.
		pm := func(v [2]float64, sign string) string {
			if n == 1 {
				return fmt.Sprintf("%"+sign+".2f", 100*v[0])
			}
			return fmt.Sprintf("%"+sign+".2f ± %.2f", 100*v[0], 100*v[1])
		}
		line := "mixed: " + pm([2]float64{rep.Summary.MixedMean, rep.Summary.MixedStd}, "") + "%"
		if d := diverged(rep.Seeds); n > 1 {
			line += fmt.Sprintf(" over %d seeds", n-d)
			if d > 0 {
				line += fmt.Sprintf(" (%d more diverged)", d)
			}
		}
		for _, b := range rep.Baselines[:len(rep.Baselines)/n] {
			k := fmt.Sprintf("w%da%d", b.WBits, b.ABits)
			if v, ok := rep.Summary.Baselines[k]; ok {
				line += fmt.Sprintf("; %s %s%%", k, pm(v, ""))
			} else {
				line += fmt.Sprintf("; %s diverged", k)
			}
		}
		fmt.Fprintln(stdout, line)
		if f, d := rep.Summary.FrontierAtBudget, rep.Summary.MixedMinusFrontier; f != nil {
			fmt.Fprintf(stdout, "frontier at %.4g: %s%%; mixed − frontier %s", rep.Budget, pm(*f, ""), pm(*d, "+"))
			if n := rep.Summary.FrontierNote; n != "" {
				fmt.Fprintf(stdout, " (%s)", n)
			}
			fmt.Fprintln(stdout)
		}
	}
	return nil
}
