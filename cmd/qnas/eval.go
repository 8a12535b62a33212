package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/train"
	"github.com/spf13/cobra"
)

type evalOptions struct {
	data    dataFlags
	Limit   int
	Batch   int
	Threads int
	JSON    bool
}

func newEvalCmd() *cobra.Command {
	var o evalOptions
	cmd := &cobra.Command{
		Use:   "eval MODEL --data DIR",
		Short: "Top-1 accuracy and loss of a model on the test split",
		Long: `eval runs the model on the test split of --data and prints top-1 accuracy and mean
cross-entropy. Pixels are scaled to [0,1], then (x − mean)/std with --mean/--std or the
model's qnas.mean/qnas.std metadata.`,
		Args: exactArgs(1, "MODEL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEval(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	f := cmd.Flags()
	o.data.register(f)
	f.IntVar(&o.Limit, "limit", 0, "evaluate N test samples spread evenly over the test split (0: all)")
	f.IntVar(&o.Batch, "batch", 256, "batch size")
	f.IntVar(&o.Threads, "threads", 2, "CPU threads")
	f.BoolVar(&o.JSON, "json", false, `print {"accuracy", "loss", "samples"} to stdout`)
	return cmd
}

func runEval(stdout, stderr io.Writer, path string, o evalOptions) error {
	if o.Batch < 1 || o.Limit < 0 {
		return usageError{fmt.Errorf("--batch must be positive and --limit not negative")}
	}
	if err := setThreads(o.Threads); err != nil {
		return err
	}
	g, err := loadModel(path, false)
	if err != nil {
		return err
	}
	test, err := o.data.open(data.Test)
	if err != nil {
		return err
	}
	if o.Limit > 0 {
		test = data.Subset(test, o.Limit)
	}
	norm, err := o.data.normalization(g, stderr)
	if err != nil {
		return err
	}
	res, err := train.Evaluate(g, test, norm, o.Batch, stderr)
	if err != nil {
		return err
	}
	if o.JSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	_, err = fmt.Fprintf(stdout, "accuracy %.2f%%  loss %.4f  on %d test samples of %s\n", 100*res.Accuracy, res.Loss, res.Samples, test.Source)
	return err
}

// exactArgs requires n positional arguments, naming them in the usage error.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %s, got %d arguments", cmd.Name(), names, len(args))}
		}
		return nil
	}
}
