// Package qnas compresses convolutional networks for deployment: given a float ONNX CNN
// and its training data, Optimize finds by differentiable architecture search, under a
// cost budget, the bits of every filter group and the kept filters of every layer,
// fine-tunes that model with quantization in the loop and writes it as ONNX; Quantize
// does the same for a given architecture (uniform bits or a qnas.arch/1 document), and
// Export rewrites a model qnas wrote in another format.
//
// The qnas command is a thin front end of this package: each of its flags sets one field
// of the options below, and its defaults are the defaults of DefaultOptions,
// DefaultQuantizeOptions and DefaultOptimizeOptions. Errors in options name the field at
// fault (a *FieldError: "Training.LR -1: want a positive finite number"); the command
// renames fields to its flags.
//
// A run writes its model last, with its sidecars (OUT.encodings.json, OUT.arch.json) and
// report, all or none; it keeps its state in checkpoints that Options.Resume continues, and
// stops, saving them, when its context is cancelled. See docs/api.md.
//
// Memory: most of a run's heap is its plans' activation buffers. The qnas command sets the
// garbage collector's GOGC to 25 (unless the environment sets it), which kept the fast mode
// on a 224×224 MobileNetV2 at 4.9 GiB instead of 7.1 at Go's default of 100, at the same
// speed; a program calling this package decides that for itself (runtime/debug.SetGCPercent).
package qnas

import (
	"fmt"
	"io"

	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/field"
	"github.com/qnas/qnas/supernet"
)

// FieldError is an error in the value of an option, named by its field ("Budget",
// "Training.LR", "Space.Widths"); errors.As finds it in the errors of Optimize, Quantize
// and Export.
type FieldError = field.Error

// Options are the settings Quantize and Optimize share: data, fine-tuning, cost model,
// output. Start from DefaultOptions.
type Options struct {
	Data     Data
	Training Training
	// CostModel is the cost the budget and the reports count: "bops" (Σ MACs·w·a, the
	// default), "bops-acc" or "size"; Target, when set, is a device profile (a file, or a
	// shipped profile's name: supernet.ShippedTargets) used instead.
	CostModel string
	Target    string
	// Pow2Scales makes every scale of the written model a power of two (weights per filter,
	// activations per layer), chosen in calibration and kept through fine-tuning: then ONNX
	// Runtime's float and integer kernels compute, from the exported model, the integers
	// qnas computes (sums of integers times powers of two are exact in float32), which free
	// scales guarantee only up to rounding-boundary ties; and shifts replace multipliers in
	// integer hardware. It costs some accuracy at low bits (docs/results.md). The search's
	// mixed quantizers keep free scales.
	Pow2Scales bool
	Output     Output
	// Resume continues the run saved in this checkpoint file (a fine-tuning's, or for
	// Optimize its search's); "" starts afresh.
	Resume string
	// Import bounds what a model file may hold (sizes of the file, its tensors and
	// activations); the zero value keeps the defaults.
	Import graph.ImportOptions
	// Progress receives the run's notes and progress bars; nil: none.
	Progress Progress
}

// Data names the training and test data and the normalization of the model's inputs.
type Data struct {
	// Dir is a data set folder (IDX, CIFAR binary, image folders, NPZ), or "embedded" for
	// the built-in Fashion-MNIST subset.
	Dir string
	// Mean and Std normalize the inputs (one value, or one per channel); nil takes the
	// model's metadata qnas.mean and qnas.std, and without those inputs are pixels in [0, 1].
	Mean, Std []float32
	// LimitTrain and LimitTest use that many samples spread over a split (0: all).
	LimitTrain, LimitTest int
}

// EmbeddedData is the Data.Dir that selects the built-in Fashion-MNIST subset.
const EmbeddedData = "embedded"

// Training are the settings of calibration and quantization-aware fine-tuning (and of the
// search's weight steps).
type Training struct {
	Calib       int     // batches that calibrate the clips and re-estimate BatchNorm statistics
	Batch       int     // batch size
	LR          float64 // base learning rate (cosine schedule)
	Momentum    float64 // SGD momentum
	WeightDecay float64 // on convolution, Gemm and MatMul weights
	Seed        uint64  // data order and augmentation
	// Augment crops (padding 2) and flips horizontally at random while training; off for
	// data whose mirror image is another class.
	Augment bool
	// Distill in [0, 1] weighs distillation from the input model (0: off; default 0.5), at
	// temperature DistillTemp (docs/method.md, "Distillation from the input model").
	Distill, DistillTemp float64
	// TrainExported makes the last fine-tuning epoch (of 2 or more) train the model as it
	// is exported: integer biases, BatchNorm on fixed statistics.
	TrainExported bool
}

// Output says where and how a run writes its model; an empty Path writes nothing (the
// report still says the accuracy).
type Output struct {
	Path      string // OUT.onnx; OUT.encodings.json and OUT.arch.json are written beside it
	Format    string // export.FormatQDQ or export.FormatQONNX
	Pack      bool   // weights of layers at ≤ 4 bits as INT4 (QDQ, opset 21, IR 10)
	IRVersion int64  // ONNX IR version, 8 to 11
	// Report: also write the report as JSON to this file, and the bit map of the model
	// as a PNG image to BitMapPath(Report) ("": neither).
	Report string
	// Producer is the producer_version written into models ("" : "dev").
	Producer string
}

// Progress receives what a run reports while it works.
type Progress interface {
	// Note receives one line on what the run assumes or starts ("seed 0: searching …").
	Note(line string)
	// Bars returns where the training loops draw their progress bars (nil: none).
	Bars() io.Writer
}

// DefaultOptions returns the defaults of every run (those of the qnas command).
func DefaultOptions() Options {
	return Options{
		Training: Training{Calib: 16, Batch: 128, LR: 0.01, Momentum: 0.9, WeightDecay: 5e-4, Augment: true,
			Distill: 0.5, DistillTemp: 1, TrainExported: true},
		CostModel: "bops",
		Output:    Output{Format: export.FormatQDQ, IRVersion: 8},
	}
}

// QuantizeOptions are the settings of Quantize.
type QuantizeOptions struct {
	Options
	Epochs int // fine-tuning epochs (0: post-training quantization)
	// ArchSource is the file the architecture was read from, if any: errors about the
	// architecture name it, and no output may replace it.
	ArchSource string
}

// DefaultQuantizeOptions returns the defaults of Quantize.
func DefaultQuantizeOptions() QuantizeOptions { return QuantizeOptions{Options: DefaultOptions()} }

// OptimizeOptions are the settings of Optimize.
type OptimizeOptions struct {
	Options
	Space supernet.SearchOptions // what the search may choose
	// Method is how Optimize finds the architecture: MethodSearch (the differentiable
	// search; "" means it too), MethodSensitivity (the fast mode: every choice's effect on
	// the loss estimated from SensitivityImages training images, then the same derivation)
	// or MethodAuto (the default: the fast mode for models of AutoSensitivityMACs or more
	// per sample and for training splits of fewer than AutoSearchImages samples, the search
	// otherwise).
	Method string
	// SensitivityImages is how many training images the sensitivity estimate (of the fast
	// mode, or the search's starting point) reads (at most the training split's).
	SensitivityImages int
	// InitLogits is where the search's logits start: InitSensitivity (the default: each
	// option's estimated effect on the loss, as the fast mode estimates it from
	// SensitivityImages training images, InitSpread wide) or InitUniform (every option of a
	// choice equally likely; "" means it too).
	InitLogits string
	// InitSpread is the widest logit difference InitSensitivity starts with (between the
	// option of the largest estimated loss increase and the most precise one).
	InitSpread     float64
	SearchEpochs   int     // epochs of the search
	FineTuneEpochs int     // fine-tuning epochs of the derived architecture
	ArchLR         float64 // Adam learning rate of the architecture logits
	Warmup         float64 // fraction of the first search epoch that trains the weights alone
	// Sampling is "hard" (one-hot Gumbel-softmax samples, straight-through gradient) or
	// "soft" (the composite mixture).
	Sampling string
	// WidthPrices is how the search prices the width options of Space.Prune: WidthsMeasured
	// (the default: loss differences measured by pinning one group's width per
	// architecture step; needs hard Sampling) or WidthsGradient (the straight-through
	// gradient of the expected channel mask).
	WidthPrices string
	// FinalCheck is how a search in a space that contains simpler ones (Space.Prune,
	// Space.Granularity filter) ends (docs/method.md, "Final check"): CheckSearch (the
	// default) compares, on the search's held-out data and post-training quantized, the
	// derived architecture with those the simpler spaces derive from the same logits and
	// with the architecture of a search of the simplest space, and fine-tunes the one of
	// lowest loss (OptimizeReport.FinalCheck); CheckDerive compares without that search;
	// CheckOff keeps the derived architecture.
	FinalCheck string
	// FineTuneFrom is "search" (the supernet's weights, trained during the search) or
	// "float" (the input model's).
	FineTuneFrom string
	// Baselines also fine-tunes uniform models of the nearest costs (OptimizeReport.Baselines)
	// and compares each seed with their frontier at the budget (SeedResult.FrontierAtBudget,
	// SeedSummary.MixedMinusFrontier).
	Baselines bool
	// Seeds repeats the whole run for seeds Training.Seed, +1, …; the model written is the
	// first seed's, the report gives mean ± std.
	Seeds int
}

// The methods of OptimizeOptions.Method.
const (
	MethodSearch      = "search"
	MethodSensitivity = "sensitivity"
	MethodAuto        = "auto"
)

// The width prices of OptimizeOptions.WidthPrices.
const (
	WidthsMeasured = "measured"
	WidthsGradient = "gradient"
)

// The final checks of OptimizeOptions.FinalCheck.
const (
	CheckSearch = "search"
	CheckDerive = "derive"
	CheckOff    = "off"
)

// The starting points of OptimizeOptions.InitLogits.
const (
	InitUniform     = "uniform"
	InitSensitivity = "sensitivity"
)

// AutoSensitivityMACs is the size, in MACs per sample of the float model, from which
// MethodAuto takes the fast mode (docs/method.md, "Fast mode"): ImageNet-size CNNs at
// 224×224 (MobileNetV2 300 M, ResNet-18 1.8 G), whose search would take hours on a few
// cores, lie above it; CIFAR- and MNIST-size models (ResNet-20 at 28×28: 31 M) below.
const AutoSensitivityMACs = 100_000_000

// AutoSearchImages is the size of the training split (after Data.LimitTrain) below which
// MethodAuto takes the fast mode whatever the model's size (docs/method.md, "Fast mode"):
// the search's architecture steps read the held-out tenth of the split, and on a few
// thousand images they move the estimate's choices to worse ones.
const AutoSearchImages = 20_000

// DefaultSensitivityImages is the default of OptimizeOptions.SensitivityImages
// (docs/method.md, "Fast mode": the estimates' noise at 2 048 images is a few per cent).
const DefaultSensitivityImages = 2048

// DefaultOptimizeOptions returns the defaults of Optimize.
func DefaultOptimizeOptions() OptimizeOptions {
	return OptimizeOptions{Options: DefaultOptions(), Space: supernet.DefaultSearchOptions(), Method: MethodAuto,
		SensitivityImages: DefaultSensitivityImages, InitLogits: InitSensitivity, InitSpread: 5, SearchEpochs: 2, FineTuneEpochs: 6,
		ArchLR: 0.01, Warmup: 0.2, Sampling: "hard", WidthPrices: WidthsMeasured, FinalCheck: CheckSearch, FineTuneFrom: "search", Seeds: 1}
}

// check validates the output's format.
func (out Output) check() error {
	switch {
	case out.Format != export.FormatQDQ && out.Format != export.FormatQONNX:
		return field.Errorf("Output.Format", " %q: want %s or %s", out.Format, export.FormatQDQ, export.FormatQONNX)
	case out.Pack && out.Format != export.FormatQDQ:
		return field.Errorf("Output.Pack", " applies to the %s format", export.FormatQDQ)
	case out.IRVersion < 8 || out.IRVersion > 11:
		return field.Errorf("Output.IRVersion", " %d: want 8 to 11", out.IRVersion)
	}
	return nil
}

// check validates the options every run needs; errors name the field.
func (o *Options) check() error {
	if err := o.Output.check(); err != nil {
		return err
	}
	switch {
	case o.Training.Calib < 1:
		return field.Errorf("Training.Calib", " %d: must be positive", o.Training.Calib)
	case o.Training.Batch < 1:
		return field.Errorf("Training.Batch", " %d: must be positive", o.Training.Batch)
	case o.Data.LimitTrain < 0:
		return field.Errorf("Data.LimitTrain", " %d: must not be negative", o.Data.LimitTrain)
	case o.Data.LimitTest < 0:
		return field.Errorf("Data.LimitTest", " %d: must not be negative", o.Data.LimitTest)
	case o.Data.Dir == "":
		return field.Errorf("Data.Dir", " is required (a folder, or %q)", EmbeddedData)
	}
	t := o.Training
	return field.CheckFloats(field.Float{Name: "Training.LR", Value: t.LR, Range: field.Positive},
		field.Float{Name: "Training.Momentum", Value: t.Momentum, Range: field.BelowOne},
		field.Float{Name: "Training.WeightDecay", Value: t.WeightDecay, Range: field.NonNegative},
		field.Float{Name: "Training.Distill", Value: t.Distill, Range: field.Fraction},
		field.Float{Name: "Training.DistillTemp", Value: t.DistillTemp, Range: field.Positive})
}

// costModel returns the cost model the options name.
func (o *Options) costModel() (supernet.CostModel, error) {
	kind := o.CostModel
	if o.Target != "" && kind == "bops" {
		kind = ""
	}
	return supernet.NewCostModel(kind, o.Target)
}

// note sends a line to the progress receiver, if any.
func (o *Options) note(format string, args ...any) {
	if o.Progress != nil {
		o.Progress.Note(fmt.Sprintf(format, args...))
	}
}

// bars is where progress bars go.
func (o *Options) bars() io.Writer {
	if o.Progress == nil || o.Progress.Bars() == nil {
		return io.Discard
	}
	return o.Progress.Bars()
}

func (o *Options) producer() string {
	if o.Output.Producer == "" {
		return "dev"
	}
	return o.Output.Producer
}
