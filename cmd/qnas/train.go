package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/field"
	"github.com/qnas/qnas/internal/outputs"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/search"
	"github.com/spf13/cobra"
)

type trainOptions struct {
	data       dataFlags
	Out        string
	Epochs     int
	Batch      int
	LR         float64
	Momentum   float64
	WD         float64
	Schedule   string
	Seed       uint64
	LimitTrain int
	LimitTest  int
	Augment    bool
	FoldBN     bool
	Threads    int
	JSON       bool
	Checkpoint string
	Resume     string
}

func newTrainCmd() *cobra.Command {
	var o trainOptions
	cmd := &cobra.Command{
		Use:   "train MODEL --data DIR --epochs N -o OUT.onnx",
		Short: "Train or fine-tune a float model and write it as ONNX",
		Long: `train trains every weight of MODEL (SGD with momentum, cosine schedule, BatchNorm in
training mode) on the training split of --data, evaluates it on the test split, and writes
OUT.onnx atomically (never over MODEL), with BatchNorm kept or, with --fold-bn, folded.`,
		Args: exactArgs(1, "MODEL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTrain(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	f := cmd.Flags()
	o.data.register(f)
	f.StringVarP(&o.Out, "output", "o", "", "output model (required)")
	f.IntVar(&o.Epochs, "epochs", 1, "training epochs")
	f.IntVar(&o.Batch, "batch", 128, "batch size")
	f.Float64Var(&o.LR, "lr", 0.05, "base learning rate")
	f.Float64Var(&o.Momentum, "momentum", 0.9, "SGD momentum")
	f.Float64Var(&o.WD, "wd", 5e-4, "weight decay on convolution and Gemm weights")
	f.StringVar(&o.Schedule, "schedule", "cosine", "learning-rate schedule: cosine or step")
	f.Uint64Var(&o.Seed, "seed", 0, "seed for data order and augmentation")
	f.IntVar(&o.LimitTrain, "limit-train", 0, "train on the first N training samples (0: all)")
	f.IntVar(&o.LimitTest, "limit-test", 0, "evaluate on N test samples spread over the test split (0: all)")
	f.BoolVar(&o.Augment, "augment", false, "random crop (padding 2) and horizontal flip")
	f.BoolVar(&o.FoldBN, "fold-bn", false, "fold BatchNormalization into convolutions in the output")
	f.IntVar(&o.Threads, "threads", 2, "CPU threads")
	f.BoolVar(&o.JSON, "json", false, "print the epochs and final test accuracy as JSON to stdout")
	f.StringVar(&o.Checkpoint, "checkpoint", "", "training state file, saved after every epoch and on SIGINT/SIGTERM (default: the -o path plus .ckpt, OUT.onnx.ckpt; removed when the run completes)")
	f.StringVar(&o.Resume, "resume", "", "continue the run saved in this checkpoint (same model, data and flags)")
	return cmd
}

func runTrain(stdout, stderr io.Writer, path string, o trainOptions) error {
	if o.Out == "" {
		return usageError{fmt.Errorf("-o/--output is required")}
	}
	if err := checkFloats(field.Float{Name: "--lr", Value: o.LR, Range: field.Positive}, field.Float{Name: "--momentum", Value: o.Momentum, Range: field.BelowOne},
		field.Float{Name: "--wd", Value: o.WD, Range: field.NonNegative}); err != nil {
		return err
	}
	if err := o.data.check(); err != nil {
		return err
	}
	ckptFile := o.Checkpoint
	if o.Resume != "" {
		if ckptFile != "" && ckptFile != o.Resume {
			return usageError{fmt.Errorf("--checkpoint and --resume name different files")}
		}
		ckptFile = o.Resume
		if _, err := ckpt.ReadHeader(o.Resume); err != nil {
			return fmt.Errorf("--resume %w", err)
		}
	}
	if ckptFile == "" {
		ckptFile = o.Out + ".ckpt"
	}
	files := &outputs.Files{}
	files.Read("the input model", path)
	files.Write("-o", o.Out)
	files.Write("the checkpoint", ckptFile)
	if err := files.Check(); err != nil {
		return err
	}
	if err := setThreads(o.Threads); err != nil {
		return err
	}
	g, err := loadModel(path, false)
	if err != nil {
		return err
	}
	modelHash, err := ckpt.FileHash(path)
	if err != nil {
		return err
	}
	trainSet, err := o.data.open(data.Train)
	if err != nil {
		return err
	}
	if o.LimitTrain > 0 {
		trainSet = data.Subset(trainSet, o.LimitTrain)
	}
	if err := train.CheckData(g, trainSet); err != nil {
		return err
	}
	if o.Batch > trainSet.N { // no step would run, and a huge batch's buffers could exhaust the memory
		return usageError{fmt.Errorf("--batch %d is more than the %d training samples of %s", o.Batch, trainSet.N, trainSet.Source)}
	}
	testSet, err := o.data.open(data.Test)
	if err != nil {
		return err
	}
	if o.LimitTest > 0 {
		testSet = data.Subset(testSet, o.LimitTest)
	}
	noteTo := stderr
	if o.Resume != "" {
		noteTo = io.Discard // the run being resumed said it
	}
	norm, err := o.data.normalization(g, noteTo)
	if err != nil {
		return err
	}
	var aug *data.Augment
	if o.Augment {
		aug = &data.Augment{PadCrop: 2, HFlip: true}
	}
	if o.Resume == "" && ckpt.Left(ckptFile) {
		fmt.Fprintf(stderr, "qnas: note: %s is left from an earlier run; this run starts afresh and replaces it (to continue that run instead, add --resume %s)\n", ckptFile, ckptFile)
	}
	// A folded model trains with its BatchNorms restored (docs/method.md) and is written
	// folded again.
	g, restored, err := search.RestoreBatchNorm(g, trainSet, norm, 16, o.Batch, stderr)
	if err != nil {
		return err
	}
	if len(restored) > 0 {
		fmt.Fprintf(stderr, "qnas: %d convolutions have no BatchNorm (a folded export): training with BatchNorm restored after each; the output is folded again\n", len(restored))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stats, err := train.Train(g, trainSet, train.Config{Epochs: o.Epochs, Batch: o.Batch, LR: o.LR, Schedule: o.Schedule,
		Momentum: o.Momentum, WeightDecay: o.WD, Seed: o.Seed, Norm: norm, Augment: aug, Log: stderr,
		Checkpoint: ckptFile, Resume: o.Resume != "", Context: ctx, Depends: ckpt.Settings{{Name: "model", Value: modelHash}}})
	if err != nil {
		return err
	}
	stop() // from here on a signal ends the process: the output is written atomically
	res, err := train.Evaluate(g, testSet, norm, 256, stderr)
	if err != nil {
		return err
	}
	fold := func(bn *graph.Node) bool { return o.FoldBN || slices.Contains(restored, bn.Name) }
	if err := g.FoldBatchNormIf(fold); err != nil {
		return err
	}
	g.Meta["qnas.mean"], g.Meta["qnas.std"] = joinFloats(norm.Mean), joinFloats(norm.Std)
	m, err := g.ToONNX(graphWriteOptions())
	if err != nil {
		return err
	}
	if err := onnxio.SaveChecked(o.Out, path, m); err != nil {
		return err
	}
	ckpt.Remove(ckptFile) // the run is complete; its state is in the output
	if o.JSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"epochs": stats, "test": res, "output": o.Out})
	}
	_, err = fmt.Fprintf(stdout, "wrote %s: test accuracy %.2f%%, loss %.4f\n", o.Out, 100*res.Accuracy, res.Loss)
	return err
}

func joinFloats(v []float32) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	return strings.Join(parts, ",")
}
