package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/qnas/qnas/graph"
	"github.com/spf13/cobra"
)

type inspectOptions struct {
	JSON      bool
	FoldBN    bool
	DumpAfter string
}

func newInspectCmd() *cobra.Command {
	var o inspectOptions
	cmd := &cobra.Command{
		Use:   "inspect MODEL",
		Short: "Print the per-layer table: output shape, params, MACs and cost at 8/8 bits",
		Long: `inspect prints one row per layer with parameters or multiply-accumulates (Conv,
Gemm, MatMul, BatchNormalization): output shape per sample, params, MACs per sample, and
BOPs at 8-bit weights and activations (MACs·64).`,
		Args: exactArgs(1, "MODEL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.JSON, "json", false, "print JSON to stdout instead of the table")
	f.BoolVar(&o.FoldBN, "fold-bn", false, "fold BatchNormalization into convolutions first")
	f.StringVar(&o.DumpAfter, "dump-after", "", "print the graph as text after this pass (or * for all): "+strings.Join(graph.PassNames(), ", "))
	return cmd
}

func runInspect(stdout, stderr io.Writer, path string, o inspectOptions) error {
	g, err := graph.Load(path, limits.importOptions())
	if err != nil {
		return err
	}
	dumpTo := stdout
	if o.JSON {
		dumpTo = stderr
	}
	err = g.Canonicalize(graph.CanonicalOptions{FoldBN: o.FoldBN, DumpAfter: o.DumpAfter,
		Dump: func(pass string, g *graph.Graph) {
			fmt.Fprintf(dumpTo, "== after %s ==\n", pass)
			g.Dump(dumpTo)
		}})
	if err != nil {
		if o.DumpAfter != "" && strings.HasPrefix(err.Error(), "no pass named") {
			return usageError{fmt.Errorf("--dump-after: %w", err)}
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	s := graph.Summarize(g)
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	return writeInspectTable(stdout, path, g, s)
}

func writeInspectTable(w io.Writer, path string, g *graph.Graph, s graph.Summary) error {
	var b strings.Builder
	fmt.Fprintf(&b, "model     %s\n", path)
	prod := strings.TrimSpace(g.Source.ProducerName + " " + g.Source.ProducerVersion)
	if prod == "" {
		prod = "unknown producer"
	}
	fmt.Fprintf(&b, "format    ONNX IR %d, opset %d, %s\n", g.Source.IRVersion, g.Opset, prod)
	for _, in := range g.Inputs {
		fmt.Fprintf(&b, "input     %s: %s\n", in, g.Shapes[in])
	}
	for _, out := range g.Outputs {
		fmt.Fprintf(&b, "output    %s: %s\n", out, g.Shapes[out])
	}
	b.WriteByte('\n')
	nameW := len("layer")
	for _, l := range s.Layers {
		nameW = max(nameW, len(l.Name))
	}
	row := func(idx, name, op, shape, params, macs, bops string) {
		fmt.Fprintf(&b, "%4s  %-*s  %-18s  %-12s  %12s  %15s  %17s\n", idx, nameW, name, op, shape, params, macs, bops)
	}
	row("#", "layer", "op", "output", "params", "MACs", "BOPs w8a8")
	for i, l := range s.Layers {
		row(fmt.Sprint(i+1), l.Name, l.Op, graph.Shape(l.OutputShape).String(), commas(l.Params), commas(l.MACs), commas(l.BOPsW8A8))
	}
	row("", "total", "", "", commas(s.Params), commas(s.MACs), commas(s.BOPsW8A8))
	fmt.Fprintf(&b, "\n%d layers, %s params, %s MACs per sample, %s BOPs at w8a8\n",
		len(s.Layers), human(s.Params), human(s.MACs), human(s.BOPsW8A8))
	_, err := io.WriteString(w, b.String())
	return err
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// human formats n with a k/M/G suffix and three significant digits.
func human(n int64) string {
	v := float64(n)
	for _, u := range []struct {
		div float64
		s   string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if v >= u.div {
			return fmt.Sprintf("%.3g%s", v/u.div, u.s)
		}
	}
	return fmt.Sprint(n)
}
