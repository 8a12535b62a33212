package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "qnas",
		Short: "Mixed-precision and pruning search for ONNX CNNs under a hardware budget",
		Long: `qnas reads a float ONNX CNN, finds per-filter bitwidths and per-layer widths by
differentiable architecture search under a budget, fine-tunes, and writes ONNX.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	limits = limitFlags{}
	limits.register(root.PersistentFlags())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newInspectCmd(), newEvalCmd(), newTrainCmd(), newBenchCmd(), newQuantizeCmd(), newExportCmd(), newOptimizeCmd(), newSweepCmd())
	return root
}
