package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/qnas/qnas"
	"github.com/qnas/qnas/supernet"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// quantFlags are the flags quantize and optimize share: fine-tuning, data, cost and output
// (each sets a field of qnas.Options; the defaults are qnas.DefaultOptions's).
type quantFlags struct {
	data    dataFlags
	opts    qnas.Options
	Threads int
	JSON    bool
}

func (q *quantFlags) register(f *pflag.FlagSet) {
	q.opts = qnas.DefaultOptions()
	o, t := &q.opts, &q.opts.Training
	q.data.register(f)
	f.StringVarP(&o.Output.Path, "output", "o", "", "output model (required); NAME.encodings.json and NAME.arch.json are written beside it")
	f.IntVar(&t.Calib, "calib", t.Calib, "batches that calibrate the activation clips and re-estimate BatchNorm statistics")
	f.IntVar(&t.Batch, "batch", t.Batch, "batch size")
	f.Float64Var(&t.LR, "lr", t.LR, "base learning rate of the fine-tuning (cosine schedule)")
	f.Float64Var(&t.Momentum, "momentum", t.Momentum, "SGD momentum")
	f.Float64Var(&t.WeightDecay, "wd", t.WeightDecay, "weight decay on convolution and Gemm weights")
	f.Uint64Var(&t.Seed, "seed", t.Seed, "seed for data order and augmentation")
	f.IntVar(&o.Data.LimitTrain, "limit-train", 0, "train on N training samples spread over the training split (0: all)")
	f.IntVar(&o.Data.LimitTest, "limit-test", 0, "evaluate on N test samples spread over the test split (0: all)")
	f.BoolVar(&t.Augment, "augment", t.Augment, "random crop (padding 2) and horizontal flip while fine-tuning and searching; --augment=false for data whose mirror image is another class (digits, text)")
	f.IntVar(&q.Threads, "threads", 2, "CPU threads")
	f.StringVar(&o.CostModel, "cost", o.CostModel, "cost model: "+strings.Join(supernet.CostKinds, ", "))
	f.StringVar(&o.Target, "target", "", "device profile (a file, or a shipped one: "+strings.Join(supernet.ShippedTargets(), ", ")+") as the cost model")
	f.BoolVar(&o.Pow2Scales, "pow2-scales", false, "make every scale of the output a power of two: ONNX Runtime then computes exactly what qnas computes at every optimization level, and integer hardware can shift instead of multiply (costs some accuracy at low bits)")
	f.StringVar(&o.Output.Format, "format", o.Output.Format, "output format: qdq or qonnx")
	f.BoolVar(&o.Output.Pack, "pack", false, "store weights of layers at ≤ 4 bits as INT4 (opset 21, IR 10)")
	f.Int64Var(&o.Output.IRVersion, "ir", o.Output.IRVersion, "ONNX IR version of the output (10 also writes per-node metadata_props)")
	f.StringVar(&o.Output.Report, "report", "", "write a JSON report to this file, and the model's bit map beside it (REPORT without .json, plus .bits.png)")
	f.StringVar(&o.Resume, "resume", "", "continue the run saved in this checkpoint (OUT.onnx.ckpt, written every epoch and on SIGINT/SIGTERM; optimize also keeps OUT.onnx.search.ckpt)")
	f.BoolVar(&q.JSON, "json", false, "print the report as JSON to stdout")
	f.Float64Var(&t.Distill, "distill", t.Distill, "weight in [0, 1] of knowledge distillation from the input float model in fine-tuning and search (0: off)")
	f.Float64Var(&t.DistillTemp, "distill-temp", t.DistillTemp, "temperature of the distillation")
	f.BoolVar(&t.TrainExported, "train-exported", t.TrainExported, "with 2 fine-tuning epochs or more, the last trains the model as it is exported (integer biases, BatchNorm on fixed statistics)")
}

// options completes the options from the flags that need parsing, and sets the threads.
func (q *quantFlags) options(stderr io.Writer) (qnas.Options, error) {
	o := q.opts
	if o.Output.Path == "" {
		return o, usageError{fmt.Errorf("-o/--output is required")}
	}
	var err error
	if o.Data.Mean, o.Data.Std, err = q.data.values(); err != nil {
		return o, err
	}
	o.Data.Dir = q.data.Dir
	o.Output.Producer = version
	o.Progress = cliProgress{stderr}
	return o, setThreads(q.Threads)
}

// interruptible returns a context that SIGINT and SIGTERM cancel: the run then saves its
// state and stops.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// quantizeOptions are quantize's flags.
type quantizeOptions struct {
	quantFlags
	WBits, ABits int
	Arch         string
	Epochs       int
}

func newQuantizeCmd() *cobra.Command {
	var o quantizeOptions
	cmd := &cobra.Command{
		Use:   "quantize MODEL (--wbits B --abits B | --arch FILE) --data DIR -o OUT.onnx",
		Short: "Quantize (and prune) a model to a given architecture, fine-tune it and write ONNX",
		Long: `quantize applies an architecture to MODEL — uniform bits (--wbits, --abits; the network
input stays at 8 bits) or a qnas.arch/1 file (--arch: bits per layer, per filter group or per
filter, kept filters) — calibrates the activation clips on --calib batches of the training
data, fine-tunes with quantization in the loop for --epochs (0: post-training quantization),
re-estimates the BatchNorm statistics, and writes OUT.onnx (QDQ by default), with
OUT.encodings.json and OUT.arch.json beside it.`,
		Args: exactArgs(1, "MODEL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runQuantize(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	f := cmd.Flags()
	o.register(f)
	f.IntVar(&o.WBits, "wbits", 0, "weight bits of every layer (2..8)")
	f.IntVar(&o.ABits, "abits", 0, "input activation bits of every layer but the first (2..8)")
	f.StringVar(&o.Arch, "arch", "", "architecture file (qnas.arch/1)")
	f.IntVar(&o.Epochs, "epochs", 0, "quantization-aware fine-tuning epochs (0: post-training quantization)")
	return cmd
}

func runQuantize(stdout, stderr io.Writer, path string, o quantizeOptions) error {
	opts, err := o.options(stderr)
	if err != nil {
		return err
	}
	var arch *supernet.Arch
	switch {
	case o.Arch != "" && (o.WBits != 0 || o.ABits != 0):
		return usageError{fmt.Errorf("give --arch or --wbits/--abits, not both")}
	case o.Arch != "":
		if arch, err = supernet.ReadArch(o.Arch); err != nil {
			return err
		}
	case o.WBits == 0 || o.ABits == 0:
		return usageError{fmt.Errorf("give --wbits and --abits, or --arch FILE")}
	default:
		for _, b := range []struct {
			flag string
			v    int
		}{{"--wbits", o.WBits}, {"--abits", o.ABits}} {
			if b.v < 2 || b.v > 8 {
				return usageError{fmt.Errorf("%s %d: want 2..8", b.flag, b.v)}
			}
		}
		arch = &supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{o.WBits}, ABits: o.ABits}, Layers: map[string]supernet.LayerSpec{}}
	}
	ctx, stop := interruptible()
	defer stop()
	rep, err := qnas.Quantize(ctx, path, arch, qnas.QuantizeOptions{Options: opts, Epochs: o.Epochs, ArchSource: o.Arch})
	if err != nil {
		return err
	}
	return o.print(stdout, rep, rep)
}

// print prints the summary of r (or, with --json, the whole report).
func (q *quantFlags) print(stdout io.Writer, rep any, r *qnas.QuantizeReport) error {
	if q.JSON {
		b, err := qnas.MarshalReport(rep)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	_, err := fmt.Fprintf(stdout, "wrote %s: accuracy %.2f%% (float %.2f%%), cost %s %s = %.4f of w8a8 (%s)\n", r.Output,
		100*r.Accuracy, 100*r.FloatAccuracy, supernet.FormatCost(r.Cost), r.CostUnit, r.CostRatio, supernet.FormatCost(r.ReferenceCost))
	if err != nil {
		return err
	}
	total := r.QuantizedMACs + r.FloatMACs
	_, err = fmt.Fprintf(stdout, "quantized: %d of %d layers, %s of %s MACs per sample (%.1f%%); left float: %s MACs\n",
		r.QuantizedLayers, r.QuantizedLayers+r.FloatLayers, human(r.QuantizedMACs), human(total),
		100*float64(r.QuantizedMACs)/float64(max(total, 1)), human(r.FloatMACs))
	if err == nil && len(r.SaturatedBiases) > 0 {
		_, err = fmt.Fprintf(stdout, "note: the integer biases of %s did not fit in int32 and were clamped\n", strings.Join(r.SaturatedBiases, ", "))
	}
	return err
}
