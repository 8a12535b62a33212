package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/qnas/qnas/internal/outputs"
	"io"
	"path/filepath"
	"strings"

	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/figure"
	"github.com/qnas/qnas/internal/quant"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/supernet"
	"github.com/spf13/cobra"
)

type inspectOptions struct {
	JSON      bool
	FoldBN    bool
	DumpAfter string
	Arch      string
	Cost      string
	Target    string
	Supernet  bool
	space     spaceFlags
	Out       string
	Plot      string
}

func newInspectCmd() *cobra.Command {
	var o inspectOptions
	cmd := &cobra.Command{
		Use:   "inspect MODEL [--arch FILE]",
		Short: "Print the per-layer table: output shape, params, MACs, cost at 8/8 bits, weight bytes",
		Long: `inspect prints one row per layer with parameters or multiply-accumulates (Conv,
Gemm, MatMul, BatchNormalization): output shape per sample, params, MACs per sample, BOPs at
8-bit weights and activations (MACs·64) and the bytes its weights take in the file. For a
model qnas wrote it adds each layer's bits (weights per filter group, input activation) and
kept filters.

With --arch FILE it prices an architecture (qnas.arch/1) before anything is trained: per
layer the bits, kept filters, MACs, params and cost under --cost or --target, and the cost
ratio to the unpruned model at 8-bit weights and activations.

With --supernet it rewrites the model for the search (the search-space flags of optimize
apply) and writes the rewritten graph with -o as ONNX — mixed ops as nodes of the "qnas"
domain carrying their choices as attributes, names traceable to the model's — for a graph
viewer such as Netron; --dump-after supernet prints it as text.

With --plot FILE.svg or FILE.png it draws the bit map of a model qnas wrote, or of MODEL
under --arch FILE: one row per layer, its kept filters coloured by weight bits, its pruned
filters grey, its input bits and kept share beside it.`,
		Args: exactArgs(1, "MODEL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.JSON, "json", false, "print JSON to stdout instead of the table")
	f.BoolVar(&o.FoldBN, "fold-bn", false, "fold BatchNormalization into convolutions first")
	f.StringVar(&o.DumpAfter, "dump-after", "", "print the graph as text after this pass (or * for all): "+strings.Join(graph.PassNames(), ", "))
	f.StringVar(&o.Arch, "arch", "", "price this architecture file (qnas.arch/1) on the model")
	f.StringVar(&o.Cost, "cost", "bops", "cost model for --arch: bops, bops-acc or size")
	f.StringVar(&o.Target, "target", "", "device profile for --arch (a file or a shipped name) as the cost model")
	f.BoolVar(&o.Supernet, "supernet", false, "rewrite the model for the search (with optimize's search-space flags)")
	o.space.register(f)
	f.StringVarP(&o.Out, "output", "o", "", "with --supernet: write the rewritten graph to this ONNX file")
	f.StringVar(&o.Plot, "plot", "", "draw the bit map of a model qnas wrote, or of --arch, to this .svg or .png file")
	return cmd
}

// inspectSummary is inspect's JSON: graph.Summary plus the bytes of the weights and, for a
// model qnas wrote, each layer's quantization.
type inspectSummary struct {
	Params      int64                `json:"params"`
	MACs        int64                `json:"macs"`
	BOPsW8A8    int64                `json:"bops_w8a8"`
	WeightBytes int64                `json:"weight_bytes"`
	Inputs      []graph.ValueSummary `json:"inputs"`
	Outputs     []graph.ValueSummary `json:"outputs"`
	Layers      []inspectLayer       `json:"layers"`
}

type inspectLayer struct {
	graph.LayerSummary
	WeightBytes int64 `json:"weight_bytes"`
	// For a model qnas wrote: bits per kept filter, input bits, filter counts.
	WBits       []int `json:"wbits,omitempty"`
	ABits       int   `json:"abits,omitempty"`
	Filters     int   `json:"filters,omitempty"`
	KeptFilters int   `json:"kept_filters,omitempty"`
}

func runInspect(stdout, stderr io.Writer, path string, o inspectOptions) error {
	if o.Arch != "" && (o.FoldBN || o.DumpAfter != "") {
		return usageError{fmt.Errorf("--arch prices an architecture; it does not combine with --fold-bn or --dump-after")}
	}
	if o.Plot != "" {
		if _, err := figure.Format(o.Plot); err != nil {
			return usageError{fmt.Errorf("--plot %w", err)}
		}
		if o.Supernet {
			return usageError{fmt.Errorf("--plot draws a model's bits; it does not combine with --supernet")}
		}
	}
	if o.Supernet {
		return inspectSupernet(stdout, path, o)
	}
	if o.Out != "" || o.DumpAfter == "supernet" {
		return usageError{fmt.Errorf("-o and --dump-after supernet go with --supernet")}
	}
	cm, err := supernet.NewCostModel(o.Cost, o.Target)
	if err != nil {
		return usageError{err}
	}
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
	if o.Arch != "" {
		return inspectArch(stdout, path, g, o, cm)
	}
	s := graph.Summarize(g)
	bytes := export.WeightBytes(g)
	var q map[string]export.LayerInfo
	if m, err := export.FromGraph(g.Clone()); err == nil {
		q = map[string]export.LayerInfo{}
		for _, l := range m.Layers {
			q[l.Name] = l
		}
	} else if !errors.Is(err, export.ErrNotQNAS) {
		return fmt.Errorf("%s: %w", path, err)
	}
	if o.Plot != "" && q == nil {
		return usageError{fmt.Errorf("--plot: %s was not written by qnas, so it has no bits to draw; give --arch FILE for an architecture", path)}
	}
	sum := inspectSummary{Params: s.Params, MACs: s.MACs, BOPsW8A8: s.BOPsW8A8, Inputs: s.Inputs, Outputs: s.Outputs, Layers: []inspectLayer{}}
	for _, l := range s.Layers {
		il := inspectLayer{LayerSummary: l, WeightBytes: bytes[l.Name]}
		if info, ok := q[l.Name]; ok {
			il.WBits, il.ABits, il.Filters, il.KeptFilters = info.WBits, info.ABits, info.Filters, info.KeptFilters()
		}
		sum.WeightBytes += il.WeightBytes
		sum.Layers = append(sum.Layers, il)
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(sum)
	} else {
		err = writeInspectTable(stdout, path, g, sum, q != nil)
	}
	if err != nil || o.Plot == "" {
		return err
	}
	var layers []figure.Layer
	for _, l := range sum.Layers {
		if l.WBits != nil {
			layers = append(layers, figure.Layer{Name: l.Name, WBits: l.WBits, ABits: l.ABits, Filters: l.Filters, KeptFilters: l.KeptFilters})
		}
	}
	return plotBits(stdout, o, filepath.Base(path), layers)
}

func writeInspectTable(w io.Writer, path string, g *graph.Graph, s inspectSummary, quantized bool) error {
	var b strings.Builder
	writeHeader(&b, path, g)
	nameW := len("layer")
	for _, l := range s.Layers {
		nameW = max(nameW, len(l.Name))
	}
	row := func(idx, name, op, shape, params, macs, bops, wbytes, bits, kept string) {
		fmt.Fprintf(&b, "%4s  %-*s  %-18s  %-12s  %12s  %15s  %17s  %12s", idx, nameW, name, op, shape, params, macs, bops, wbytes)
		if quantized {
			fmt.Fprintf(&b, "  %-16s  %9s", bits, kept)
		}
		b.WriteString("\n")
	}
	row("#", "layer", "op", "output", "params", "MACs", "BOPs w8a8", "weight bytes", "bits w/a", "filters")
	for i, l := range s.Layers {
		bits, kept := "", ""
		if l.WBits != nil {
			bits = fmt.Sprintf("%s/%s", bitsString(l.WBits), bitString(l.ABits))
			kept = fmt.Sprint(l.Filters)
			if l.KeptFilters < l.Filters {
				kept = fmt.Sprintf("%d/%d", l.KeptFilters, l.Filters)
			}
		}
		row(fmt.Sprint(i+1), l.Name, l.Op, graph.Shape(l.OutputShape).String(), commas(l.Params), commas(l.MACs), commas(l.BOPsW8A8),
			commas(l.WeightBytes), bits, kept)
	}
	row("", "total", "", "", commas(s.Params), commas(s.MACs), commas(s.BOPsW8A8), commas(s.WeightBytes), "", "")
	fmt.Fprintf(&b, "\n%d layers, %s params, %s MACs per sample, %s BOPs at w8a8, %s bytes of weights\n",
		len(s.Layers), human(s.Params), human(s.MACs), human(s.BOPsW8A8), human(s.WeightBytes))
	_, err := io.WriteString(w, b.String())
	return err
}

func writeHeader(b *strings.Builder, path string, g *graph.Graph) {
	fmt.Fprintf(b, "model     %s\n", path)
	prod := strings.TrimSpace(g.Source.ProducerName + " " + g.Source.ProducerVersion)
	if prod == "" {
		prod = "unknown producer"
	}
	fmt.Fprintf(b, "format    ONNX IR %d, opset %d, %s\n", g.Source.IRVersion, g.Opset, prod)
	for _, in := range g.Inputs {
		fmt.Fprintf(b, "input     %s: %s\n", in, g.Shapes[in])
	}
	for _, out := range g.Outputs {
		fmt.Fprintf(b, "output    %s: %s\n", out, g.Shapes[out])
	}
	b.WriteByte('\n')
}

// bitString writes a bitwidth, "f" for float.
func bitString(b int) string {
	if b == quant.Float {
		return "f"
	}
	return fmt.Sprint(b)
}

// bitsString writes per-filter bits compactly: "4", or the distinct widths "2,4,8".
func bitsString(bits []int) string {
	seen := map[int]bool{}
	var ws []int
	for _, b := range bits {
		if !seen[b] {
			seen[b] = true
			ws = append(ws, b)
		}
	}
	parts := make([]string, len(ws))
	for i := range ws {
		for j := i + 1; j < len(ws); j++ {
			if ws[j] < ws[i] {
				ws[i], ws[j] = ws[j], ws[i]
			}
		}
		parts[i] = bitString(ws[i])
	}
	return strings.Join(parts, ",")
}

// archSummary is inspect --arch's JSON.
type archSummary struct {
	CostModel     string      `json:"cost_model"`
	CostUnit      string      `json:"cost_unit"`
	Cost          float64     `json:"cost"`
	ReferenceCost float64     `json:"reference_cost"`
	CostRatio     float64     `json:"cost_ratio"`
	MACs          int64       `json:"macs"`
	Params        int64       `json:"params"`
	Layers        []archLayer `json:"layers"`
}

type archLayer struct {
	Name        string  `json:"name"`
	Op          string  `json:"op"`
	WBits       []int   `json:"wbits"` // per kept filter
	ABits       int     `json:"abits"`
	Filters     int     `json:"filters"`
	KeptFilters int     `json:"kept_filters"`
	MACs        int64   `json:"macs"`
	Params      int64   `json:"params"`
	Cost        float64 `json:"cost"`
}

func inspectArch(w io.Writer, path string, g *graph.Graph, o inspectOptions, cm supernet.CostModel) error {
	a, err := supernet.ReadArch(o.Arch)
	if err != nil {
		return err
	}
	space, err := supernet.NewSpace(g)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	r, err := space.Resolve(a)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Arch, err)
	}
	costs, err := cm.LayerCosts(r)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Arch, err)
	}
	s := archSummary{CostModel: cm.String(), CostUnit: cm.Unit(), ReferenceCost: cm.Reference(space)}
	for _, l := range space.Layers {
		kept, keptIn := r.Kept(l), r.KeptIn(l)
		al := archLayer{Name: l.Name, Op: l.Op, WBits: r.KeptBits(l), ABits: r.Choices[l.Index].ABits, Filters: l.Filters,
			KeptFilters: kept, MACs: l.MACs(keptIn, kept), Params: l.Params(keptIn, kept), Cost: costs[l.Index]}
		s.Layers = append(s.Layers, al)
		s.Cost += al.Cost
		s.MACs += al.MACs
		s.Params += al.Params
	}
	s.CostRatio = s.Cost / s.ReferenceCost
	if err := supernet.CheckCosts(cm, s.Cost, s.ReferenceCost); err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil || o.Plot == "" {
			return err
		}
		return plotArch(w, path, o, s)
	}
	var b strings.Builder
	writeHeader(&b, path, g)
	fmt.Fprintf(&b, "arch      %s, cost model %s (%s)\n\n", o.Arch, s.CostModel, s.CostUnit)
	nameW := len("layer")
	for _, l := range s.Layers {
		nameW = max(nameW, len(l.Name))
	}
	row := func(idx, name, op, bits, filters, macs, params, cost string) {
		fmt.Fprintf(&b, "%4s  %-*s  %-5s  %-14s  %9s  %15s  %10s  %15s\n", idx, nameW, name, op, bits, filters, macs, params, cost)
	}
	row("#", "layer", "op", "bits w/a", "filters", "MACs", "params", "cost")
	for i, l := range s.Layers {
		f := fmt.Sprint(l.Filters)
		if l.KeptFilters < l.Filters {
			f = fmt.Sprintf("%d/%d", l.KeptFilters, l.Filters)
		}
		row(fmt.Sprint(i+1), l.Name, l.Op, bitsString(l.WBits)+"/"+bitString(l.ABits), f, commas(l.MACs), commas(l.Params), supernet.FormatCost(l.Cost))
	}
	row("", "total", "", "", "", commas(s.MACs), commas(s.Params), supernet.FormatCost(s.Cost))
	fmt.Fprintf(&b, "\ncost %s %s = %.4f of the unpruned model at w8a8 (%s %s)\n", supernet.FormatCost(s.Cost), s.CostUnit, s.CostRatio, supernet.FormatCost(s.ReferenceCost), s.CostUnit)
	_, err = io.WriteString(w, b.String())
	if err != nil || o.Plot == "" {
		return err
	}
	return plotArch(w, path, o, s)
}

// plotArch draws the bit map of an architecture priced by inspect --arch.
func plotArch(w io.Writer, path string, o inspectOptions, s archSummary) error {
	layers := make([]figure.Layer, len(s.Layers))
	for i, l := range s.Layers {
		layers[i] = figure.Layer{Name: l.Name, WBits: l.WBits, ABits: l.ABits, Filters: l.Filters, KeptFilters: l.KeptFilters}
	}
	title := fmt.Sprintf("%s under %s: cost ratio %.4f", filepath.Base(path), filepath.Base(o.Arch), s.CostRatio)
	return plotBits(w, o, title, layers)
}

// plotBits draws the bit map of layers to --plot and, unless --json, says so.
func plotBits(w io.Writer, o inspectOptions, title string, layers []figure.Layer) error {
	if err := (figure.BitMap{Title: title, Layers: layers}).Save(o.Plot); err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	if !o.JSON {
		_, err := fmt.Fprintf(w, "wrote %s: bit map of %d layers\n", o.Plot, len(layers))
		return err
	}
	return nil
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

// inspectSupernet writes (with -o) and dumps (with --dump-after supernet) the search's
// rewrite of the model.
func inspectSupernet(stdout io.Writer, path string, o inspectOptions) error {
	if o.Arch != "" || o.FoldBN || o.JSON {
		return usageError{fmt.Errorf("--supernet does not combine with --arch, --fold-bn or --json")}
	}
	if o.DumpAfter != "" && o.DumpAfter != "supernet" {
		return usageError{fmt.Errorf("--dump-after %q: with --supernet the pass to dump is supernet", o.DumpAfter)}
	}
	if o.Out == "" && o.DumpAfter == "" {
		return usageError{fmt.Errorf("--supernet needs -o SUPER.onnx or --dump-after supernet")}
	}
	files := &outputs.Files{}
	files.Read("the input model", path)
	files.Write("-o", o.Out)
	if err := files.Check(); err != nil {
		return err
	}
	opts, err := o.space.options()
	if err != nil {
		return usageError{err}
	}
	_, space, err := loadSpace(path)
	if err != nil {
		return err
	}
	sn, err := space.NewSupernet(opts)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if o.DumpAfter == "supernet" {
		fmt.Fprintln(stdout, "== after supernet ==")
		if err := sn.Graph.Dump(stdout); err != nil {
			return err
		}
	}
	if o.Out == "" {
		return nil
	}
	m, err := sn.Graph.ToONNX(graphWriteOptions())
	if err != nil {
		return err
	}
	if err := onnxio.SaveChecked(o.Out, path, m); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "wrote %s: %d layers, %d prunable channel groups searched, %d choices\n", o.Out, len(sn.Layers), len(sn.Groups), len(sn.ArchParams()))
	return err
}
