package main

import (
	"fmt"
	"io"

	"github.com/qnas/qnas"
	"github.com/qnas/qnas/export"
	"github.com/spf13/cobra"
)

type exportOptions struct {
	Out    string
	Format string
	Pack   bool
	IR     int64
}

func newExportCmd() *cobra.Command {
	var o exportOptions
	cmd := &cobra.Command{
		Use:   "export Q.onnx --format qdq|qonnx -o OUT.onnx",
		Short: "Convert a model qnas wrote to another format, from that file alone",
		Long: `export reads a model written by qnas quantize or optimize (QDQ, packed QDQ or QONNX) and
writes it again in the chosen format, with OUT.encodings.json and OUT.arch.json beside it.
The model file holds everything needed: weights, scales, clips and the bits of every layer.`,
		Args: exactArgs(1, "Q.onnx"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExport(cmd.OutOrStdout(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Out, "output", "o", "", "output model (required)")
	f.StringVar(&o.Format, "format", export.FormatQDQ, "output format: qdq or qonnx")
	f.BoolVar(&o.Pack, "pack", false, "store weights of layers at ≤ 4 bits as INT4 (opset 21, IR 10)")
	f.Int64Var(&o.IR, "ir", 8, "ONNX IR version of the output (10 also writes per-node metadata_props)")
	return cmd
}

func runExport(stdout io.Writer, path string, o exportOptions) error {
	if o.Out == "" {
		return usageError{fmt.Errorf("-o/--output is required")}
	}
	files, err := qnas.Export(path, qnas.Output{Path: o.Out, Format: o.Format, Pack: o.Pack, IRVersion: o.IR, Producer: version},
		qnas.ExportOptions{Import: limits.importOptions()})
	if err != nil {
		return err
	}
	format := o.Format
	if o.Pack {
		format += ", INT4 weights where ≤ 4 bits"
	}
	_, err = fmt.Fprintf(stdout, "wrote %s (%s), %s, %s\n", files.Model, format, files.Encodings, files.Arch)
	return err
}
