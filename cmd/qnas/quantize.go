package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/search"
	"github.com/qnas/qnas/supernet"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// quantFlags are the flags quantize and optimize share: fine-tuning, data, cost and output.
type quantFlags struct {
	data       dataFlags
	Out        string
	Calib      int
	Batch      int
	LR         float64
	Momentum   float64
	WD         float64
	Seed       uint64
	LimitTrain int
	LimitTest  int
	Augment    bool
	Threads    int
	Cost       string
	Target     string
	Format     string
	Pack       bool
	IR         int64
	Report     string
	Resume     string
	JSON       bool
	Distill    float64
	DistillT   float64
	Exported   bool

	// Set by the command before check: the checkpoints it keeps, the files it reads
	// besides the model (--arch); and, once computed, the model's hash.
	ckpt      checkpointPlan
	reads     []namedFile
	modelHash string
	// normNote is set by openData when no normalization was found (noted by notes).
	normNote bool
}

// distill returns the distillation settings of the flags with teacher g (nil when off).
func (q *quantFlags) distill(g *graph.Graph) *train.Distill {
	if q.Distill == 0 {
		return nil
	}
	return &train.Distill{Teacher: g, Weight: q.Distill, Temperature: q.DistillT}
}

func (q *quantFlags) register(f *pflag.FlagSet) {
	q.data.register(f)
	f.StringVarP(&q.Out, "output", "o", "", "output model (required); NAME.encodings.json and NAME.arch.json are written beside it")
	f.IntVar(&q.Calib, "calib", 16, "batches that calibrate the activation clips and re-estimate BatchNorm statistics")
	f.IntVar(&q.Batch, "batch", 128, "batch size")
	f.Float64Var(&q.LR, "lr", 0.01, "base learning rate of the fine-tuning (cosine schedule)")
	f.Float64Var(&q.Momentum, "momentum", 0.9, "SGD momentum")
	f.Float64Var(&q.WD, "wd", 5e-4, "weight decay on convolution and Gemm weights")
	f.Uint64Var(&q.Seed, "seed", 0, "seed for data order and augmentation")
	f.IntVar(&q.LimitTrain, "limit-train", 0, "train on N training samples spread over the training split (0: all)")
	f.IntVar(&q.LimitTest, "limit-test", 0, "evaluate on N test samples spread over the test split (0: all)")
	f.BoolVar(&q.Augment, "augment", true, "random crop (padding 2) and horizontal flip while fine-tuning and searching; --augment=false for data whose mirror image is another class (digits, text)")
	f.IntVar(&q.Threads, "threads", 2, "CPU threads")
	f.StringVar(&q.Cost, "cost", "bops", "cost model: bops, bops-acc or size")
	f.StringVar(&q.Target, "target", "", "device profile (a file, or a shipped one: "+joinNames(supernet.ShippedTargets())+") as the cost model")
	f.StringVar(&q.Format, "format", export.FormatQDQ, "output format: qdq or qonnx")
	f.BoolVar(&q.Pack, "pack", false, "store weights of layers at ≤ 4 bits as INT4 (opset 21, IR 10)")
	f.Int64Var(&q.IR, "ir", 8, "ONNX IR version of the output (10 also writes per-node metadata_props)")
	f.StringVar(&q.Report, "report", "", "write a JSON report to this file")
	f.StringVar(&q.Resume, "resume", "", "continue the run saved in this checkpoint (OUT.onnx.ckpt, written every epoch and on SIGINT/SIGTERM; optimize also keeps OUT.onnx.search.ckpt)")
	f.BoolVar(&q.JSON, "json", false, "print the report as JSON to stdout")
	f.Float64Var(&q.Distill, "distill", 0, "weight in [0, 1] of knowledge distillation from the input model in fine-tuning and search (0: off)")
	f.Float64Var(&q.DistillT, "distill-temp", 4, "temperature of the distillation")
	f.BoolVar(&q.Exported, "train-exported", true, "with 2 fine-tuning epochs or more, the last trains the model as it is exported (integer biases, BatchNorm on fixed statistics)")
}

func joinNames(v []string) string {
	s := ""
	for i, x := range v {
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}

// check validates the flags every run needs, before any work.
func (q *quantFlags) check(model string) error {
	if q.Out == "" {
		return usageError{fmt.Errorf("-o/--output is required")}
	}
	if q.Format != export.FormatQDQ && q.Format != export.FormatQONNX {
		return usageError{fmt.Errorf("--format %q: want qdq or qonnx", q.Format)}
	}
	if q.Pack && q.Format != export.FormatQDQ {
		return usageError{fmt.Errorf("--pack applies to --format qdq")}
	}
	if q.IR < 8 || q.IR > 11 {
		return usageError{fmt.Errorf("--ir %d: want 8 to 11", q.IR)}
	}
	if q.Calib < 1 || q.Batch < 1 || q.LimitTrain < 0 || q.LimitTest < 0 {
		return usageError{fmt.Errorf("--calib and --batch must be positive, --limit-train and --limit-test not negative")}
	}
	if err := checkFloats(floatFlag{"--lr", q.LR, positive}, floatFlag{"--momentum", q.Momentum, belowOne}, floatFlag{"--wd", q.WD, nonNegative}); err != nil {
		return err
	}
	if err := checkFloats(floatFlag{"--distill", q.Distill, fraction}, floatFlag{"--distill-temp", q.DistillT, positive}); err != nil {
		return err
	}
	if err := q.data.check(); err != nil {
		return err
	}
	if err := q.files(model).check(); err != nil {
		return err
	}
	return setThreads(q.Threads)
}

// files lists what a run reads and writes: the model, --arch, a --target file; the
// output model, its sidecars, the report and the checkpoints.
func (q *quantFlags) files(model string) *runFiles {
	f := &runFiles{}
	f.read("the input model", model)
	for _, r := range q.reads {
		f.read(r.what, r.path)
	}
	if fi, err := os.Stat(q.Target); err == nil && !fi.IsDir() {
		f.read("--target", q.Target)
	}
	out := export.OutputFiles(q.Out)
	f.write("-o", out.Model)
	f.write("the encodings sidecar", out.Encodings)
	f.write("the architecture sidecar", out.Arch)
	f.write("--report", q.Report)
	q.ckpt.addTo(f)
	return f
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

// quantReport is the report of quantize (design: the command-line contract).
type quantReport struct {
	Model         string         `json:"model"`
	Output        string         `json:"output"`
	CostModel     string         `json:"cost_model"`
	CostUnit      string         `json:"cost_unit"`
	Cost          float64        `json:"cost"`
	ReferenceCost float64        `json:"reference_cost"`
	CostRatio     float64        `json:"cost_ratio"`
	Accuracy      float64        `json:"accuracy"`
	PTQAccuracy   float64        `json:"ptq_accuracy"` // after calibration alone, before fine-tuning
	FloatAccuracy float64        `json:"float_accuracy"`
	TestSamples   int            `json:"test_samples"`
	Epochs        int            `json:"epochs"`
	Seed          uint64         `json:"seed"`
	Layers        []layerReport  `json:"layers"`
	Phases        []search.Phase `json:"phases"`
}

type layerReport struct {
	Name        string  `json:"name"`
	WBits       []int   `json:"wbits"` // per kept filter
	ABits       int     `json:"abits"`
	Filters     int     `json:"filters"`
	KeptFilters int     `json:"kept_filters"`
	MACs        int64   `json:"macs"`
	Cost        float64 `json:"cost"`
}

func runQuantize(stdout, stderr io.Writer, path string, o quantizeOptions) error {
	if o.Epochs < 0 {
		return usageError{fmt.Errorf("--epochs must not be negative")}
	}
	if err := o.planCheckpoints(); err != nil {
		return err
	}
	o.reads = []namedFile{{"--arch", o.Arch}}
	if err := o.check(path); err != nil {
		return err
	}
	var arch *supernet.Arch
	switch {
	case o.Arch != "" && (o.WBits != 0 || o.ABits != 0):
		return usageError{fmt.Errorf("give --arch or --wbits/--abits, not both")}
	case o.Arch != "":
		a, err := supernet.ReadArch(o.Arch)
		if err != nil {
			return err
		}
		arch = a
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
	cm, err := supernet.NewCostModel(o.Cost, o.Target)
	if err != nil {
		return usageError{err}
	}
	g, space, err := loadSpace(path)
	if err != nil {
		return err
	}
	r, err := space.Resolve(arch)
	if err != nil {
		if o.Arch != "" {
			return fmt.Errorf("%s: %w", o.Arch, err)
		}
		return err
	}
	if err := checkArchCost(cm, r); err != nil {
		return err
	}
	trainSet, testSet, norm, err := o.openData(g, stderr)
	if err != nil {
		return err
	}
	if err := o.checkResume(path, g, nil, o.Epochs, trainSet, norm); err != nil { // before any work
		return err
	}
	o.notes(stderr)
	if g, space, err = restoreBatchNorm(g, space, trainSet, norm, o.Calib, o.Batch, stderr); err != nil {
		return err
	}
	if r, err = space.Resolve(arch); err != nil {
		return err
	}
	rep, err := o.run(stderr, path, g, r, cm, o.Epochs, trainSet, testSet, norm)
	if err != nil {
		return err
	}
	return o.finish(stdout, rep, rep)
}

// run trains the architecture r of the float graph g (read from path) for epochs, evaluates
// the frozen model on testSet, and writes it to q.Out (when not empty).
func (q *quantFlags) run(stderr io.Writer, path string, g *graph.Graph, r *supernet.Resolved, cm supernet.CostModel, epochs int,
	trainSet, testSet *data.Dataset, norm data.Normalize) (*quantReport, error) {
	rep := &quantReport{Model: path, Output: q.Out, CostModel: cm.String(), CostUnit: cm.Unit(), Epochs: epochs, Seed: q.Seed}
	costs, err := cm.LayerCosts(r)
	if err != nil {
		return nil, err
	}
	rep.ReferenceCost = cm.Reference(r.Space)
	for _, l := range r.Space.Layers {
		rep.Cost += costs[l.Index]
		rep.Layers = append(rep.Layers, layerReport{Name: l.Name, WBits: r.KeptBits(l), ABits: r.Choices[l.Index].ABits,
			Filters: l.Filters, KeptFilters: r.Kept(l), MACs: l.MACs(r.KeptIn(l), r.Kept(l)), Cost: costs[l.Index]})
	}
	rep.CostRatio = rep.Cost / rep.ReferenceCost
	if err := checkCosts(cm, rep.Cost, rep.ReferenceCost); err != nil {
		return nil, err
	}
	cfg, err := q.quantizeConfig(stderr, path, g, r, epochs, norm)
	if err != nil {
		return nil, err
	}
	if cfg.Resume { // before any work
		if err := cfg.CheckResume(r, trainSet); err != nil {
			return nil, err
		}
	}
	clock := time.Now()
	lap := func(name string) {
		rep.Phases = append(rep.Phases, search.Phase{Name: name, Seconds: time.Since(clock).Seconds()})
		clock = time.Now()
	}
	ev, err := train.Evaluate(g, testSet, norm, 256, stderr)
	if err != nil {
		return nil, err
	}
	rep.FloatAccuracy = ev.Accuracy
	lap("evaluate float")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Context = ctx
	qg, err := search.Calibrated(r, trainSet, cfg)
	if err != nil {
		return nil, err
	}
	// The accuracy after calibration alone (post-training quantization), to show what
	// fine-tuning buys and to catch a fine-tuning that destroys the model.
	frozenAccuracy := func(g *graph.Graph) (*export.Model, train.Eval, error) {
		m, err := export.Freeze(g, r)
		if err != nil {
			return nil, train.Eval{}, err
		}
		// The accuracy reported is the written model's, as qnas's engine computes it (ONNX
		// Runtime agrees): integer biases and folded BatchNorms included.
		ev, err := train.Evaluate(m.Graph, testSet, norm, 256, stderr)
		return m, ev, err
	}
	if epochs > 0 {
		ptq := qg.Clone()
		if err := search.ReestimateBN(ptq, trainSet, norm, q.Calib, q.Batch, stderr); err != nil {
			return nil, err
		}
		_, ev, err := frozenAccuracy(ptq)
		if err != nil {
			return nil, err
		}
		rep.PTQAccuracy = ev.Accuracy
		lap("post-training quantization")
	}
	tg, _, err := search.FineTune(qg, trainSet, cfg)
	if err != nil {
		return nil, err
	}
	stop() // from here on a signal ends the process: outputs are written atomically
	lap("fine-tune")
	if qg, err = supernet.ExportForm(tg); err != nil {
		return nil, err
	}
	m, ev, err := frozenAccuracy(qg)
	if err != nil {
		return nil, err
	}
	rep.Accuracy, rep.TestSamples = ev.Accuracy, ev.Samples
	if epochs == 0 {
		rep.PTQAccuracy = rep.Accuracy
	} else if drop := rep.PTQAccuracy - rep.Accuracy; drop > train.AccuracyDropLimit(rep.PTQAccuracy, ev.Samples) {
		removeCheckpoint(cfg.Checkpoint) // it holds the diverged state
		return nil, fmt.Errorf("fine-tuning lowered the test accuracy from %.2f%% (after calibration alone) to %.2f%%: the run diverged; lower --lr (now %g), or use --epochs 0; nothing was written",
			100*rep.PTQAccuracy, 100*rep.Accuracy, q.LR)
	}
	lap("evaluate quantized")
	if q.Out == "" {
		return rep, nil
	}
	m.Graph.Meta["qnas.mean"], m.Graph.Meta["qnas.std"] = joinFloats(norm.Mean), joinFloats(norm.Std)
	if _, err := m.Write(q.Out, path, export.WriteOptions{Format: q.Format, Pack: q.Pack, IRVersion: q.IR, ProducerVersion: version}); err != nil {
		return nil, err
	}
	removeCheckpoint(cfg.Checkpoint)
	lap("export")
	return rep, nil
}

// openData opens the training and test splits and the normalization.
func (q *quantFlags) openData(g *graph.Graph, stderr io.Writer) (trainSet, testSet *data.Dataset, norm data.Normalize, err error) {
	if trainSet, err = q.data.open(data.Train); err != nil {
		return
	}
	if q.LimitTrain > 0 {
		trainSet = data.Subset(trainSet, q.LimitTrain)
	}
	if testSet, err = q.data.open(data.Test); err != nil {
		return
	}
	if q.LimitTest > 0 {
		testSet = data.Subset(testSet, q.LimitTest)
	}
	for _, d := range []*data.Dataset{trainSet, testSet} {
		if err = train.CheckData(g, d); err != nil {
			return
		}
	}
	if err = checkBatch(q.Batch, trainSet); err != nil {
		return
	}
	norm, err = q.data.normalization(g, io.Discard) // notes, after the checks, says it
	q.normNote = norm.Mean == nil && norm.Std == nil
	return
}

// finish writes the report file and prints the summary r (or, with --json, the report).
func (q *quantFlags) finish(stdout io.Writer, rep any, r *quantReport) error {
	b, err := json.MarshalIndent(rep, "", " ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if q.Report != "" {
		if err := onnxio.WriteFileAtomic(q.Report, func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
			return err
		}
	}
	if q.JSON {
		_, err = stdout.Write(b)
		return err
	}
	_, err = fmt.Fprintf(stdout, "wrote %s: accuracy %.2f%% (float %.2f%%), cost %s %s = %.4f of w8a8 (%s)\n", r.Output,
		100*r.Accuracy, 100*r.FloatAccuracy, humanF(r.Cost), r.CostUnit, r.CostRatio, humanF(r.ReferenceCost))
	return err
}

// humanF formats a cost with a k/M/G/T suffix.
func humanF(v float64) string {
	for _, u := range []struct {
		div float64
		s   string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if v >= u.div {
			return fmt.Sprintf("%.4g%s", v/u.div, u.s)
		}
	}
	return fmt.Sprintf("%.4g", v)
}
