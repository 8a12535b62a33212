package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/qnas/qnas"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/search"
	"github.com/qnas/qnas/supernet"
	"github.com/spf13/cobra"
)

type benchOptions struct {
	Mode    string
	Batch   int
	Threads int
	Steps   int
	JSON    bool
	Ops     bool
}

// benchResult is bench's JSON (design.md §9).
type benchResult struct {
	Mode         string  `json:"mode"`
	ImagesPerSec float64 `json:"images_per_sec"`
	StepMS       float64 `json:"step_ms"`
	BestStepMS   float64 `json:"best_step_ms"` // the fastest timed step: the least disturbed by other load
	PeakRSSMB    float64 `json:"peak_rss_mb"`
	Batch        int     `json:"batch"`
	Threads      int     `json:"threads"`
	Steps        int     `json:"steps"`
	// OpMS is the wall time per step of each op type and pass, with --ops.
	OpMS map[string]float64 `json:"op_ms,omitempty"`
}

func newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench MODEL --mode float|qat|search",
		Short: "Time training steps on random data of the model's input shape",
		Long: `bench times training steps on random data: --mode float is a plain training step
(forward, softmax cross-entropy, backward, SGD update with momentum 0.9 and weight decay,
BatchNorm in training mode); --mode qat the same step with every layer fake-quantized at
w4a4 (network input at 8 bits); --mode search one search iteration of the default space (a
weight step on one batch and an architecture step on another, with the budget projection).
images_per_sec is the batch size over the median step (iteration) time, after three warm-up
steps; best_step_ms is the fastest step, the one least disturbed by other load.`,
		Args: exactArgs(1, "MODEL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBench(cmd.OutOrStdout(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Mode, "mode", "float", "what to time: float, qat (a fake-quantized w4a4 step) or search (a weight step and an architecture step of the default search space)")
	f.IntVar(&o.Batch, "batch", 128, "batch size")
	f.IntVar(&o.Threads, "threads", 2, "CPU threads")
	f.IntVar(&o.Steps, "steps", 20, "timed steps")
	f.BoolVar(&o.JSON, "json", false, `print {"mode", "images_per_sec", "step_ms", "peak_rss_mb"} to stdout`)
	f.BoolVar(&o.Ops, "ops", false, `after the timed steps, time each op type over as many more steps (table, or "op_ms" in the JSON)`)
	return cmd
}

func runBench(stdout io.Writer, path string, o benchOptions) error {
	switch o.Mode {
	case "float", "qat", "search":
	default:
		return usageError{fmt.Errorf("--mode %q: want float, qat or search", o.Mode)}
	}
	if o.Batch < 1 || o.Steps < 1 {
		return usageError{fmt.Errorf("--batch and --steps must be positive")}
	}
	if err := setThreads(o.Threads); err != nil {
		return err
	}
	g, err := loadModel(path, false)
	if err != nil {
		return err
	}
	p, step, err := benchStep(g, o)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for range 3 {
		if err := step(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	times := make([]float64, o.Steps)
	for i := range times {
		t0 := time.Now()
		if err := step(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		times[i] = time.Since(t0).Seconds()
	}
	sort.Float64s(times)
	med := times[len(times)/2]
	res := benchResult{Mode: o.Mode, ImagesPerSec: float64(o.Batch) / med, StepMS: med * 1000, BestStepMS: times[0] * 1000, PeakRSSMB: peakRSSMB(),
		Batch: o.Batch, Threads: o.Threads, Steps: o.Steps}
	if o.Ops {
		// Timing each op adds a clock read per op; it runs apart from the timed steps.
		p.Times = engine.OpTimes{}
		for range o.Steps {
			if err := step(); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		res.OpMS = map[string]float64{}
		for op, d := range p.Times {
			res.OpMS[op] = d.Seconds() * 1000 / float64(o.Steps)
		}
	}
	if o.JSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	if _, err := fmt.Fprintf(stdout, "%s step, batch %d, %d threads: %.1f images/s (%.1f ms/step median of %d), peak RSS %.0f MiB\n",
		res.Mode, res.Batch, res.Threads, res.ImagesPerSec, res.StepMS, res.Steps, res.PeakRSSMB); err != nil {
		return err
	}
	return writeOpTable(stdout, res.OpMS)
}

// writeOpTable prints the per-op times, largest first (nothing when there are none).
func writeOpTable(w io.Writer, opMS map[string]float64) error {
	ops := make([]string, 0, len(opMS))
	total := 0.0
	for op, ms := range opMS {
		ops = append(ops, op)
		total += ms
	}
	if len(ops) == 0 {
		return nil
	}
	sort.Slice(ops, func(i, j int) bool {
		if opMS[ops[i]] != opMS[ops[j]] {
			return opMS[ops[i]] > opMS[ops[j]]
		}
		return ops[i] < ops[j]
	})
	width := len("total")
	for _, op := range ops {
		width = max(width, len(op))
	}
	if _, err := fmt.Fprintf(w, "%-*s  %8s  %6s\n", width, "op", "ms/step", "share"); err != nil {
		return err
	}
	for _, op := range ops {
		fmt.Fprintf(w, "%-*s  %8.2f  %5.1f%%\n", width, op, opMS[op], 100*opMS[op]/total)
	}
	_, err := fmt.Fprintf(w, "%-*s  %8.2f\n", width, "total", total)
	return err
}

// benchQAT returns the fake-quantized training graph of g at w4a4 (network input at 8 bits),
// with every activation clip at 3 (its value does not change the work).
func benchQAT(g *graph.Graph) (*graph.Graph, error) {
	s, err := supernet.NewSpace(g)
	if err != nil {
		return nil, err
	}
	r, err := s.Resolve(&supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{4}, ABits: 4}})
	if err != nil {
		return nil, err
	}
	q, err := r.Apply()
	if err != nil {
		return nil, err
	}
	for _, n := range q.Nodes {
		if n.Op == supernet.OpQuantAct {
			q.Consts[n.Inputs[1]].F[0] = 3
		}
	}
	return q, nil
}

// benchStep returns the plan and the step to time, on seeded random data: the training
// step of train.Train (float, or fake-quantized), or a search iteration (a weight step and
// an architecture step) as search.Search runs it.
func benchStep(g *graph.Graph, o benchOptions) (*engine.Plan, func() error, error) {
	r := rand.New(rand.NewPCG(1, 2))
	randomize := func(p *engine.Plan) []int32 {
		for _, v := range p.Values {
			if v.Kind == engine.Input {
				for i := range v.Data {
					v.Data[i] = float32(r.NormFloat64())
				}
			}
		}
		labels := make([]int32, o.Batch)
		classes := p.Value(g.Outputs[0]).Len() / o.Batch
		for i := range labels {
			labels[i] = int32(r.IntN(classes))
		}
		return labels
	}
	if o.Mode == "search" {
		s, err := supernet.NewSpace(g)
		if err != nil {
			return nil, nil, err
		}
		sn, err := s.NewSupernet(supernet.DefaultSearchOptions())
		if err != nil {
			return nil, nil, err
		}
		for _, lc := range sn.Layers {
			for i := range sn.Graph.Consts[lc.Clips].F {
				sn.Graph.Consts[lc.Clips].F[i] = 3
			}
		}
		cm := supernet.BOPs()
		b, err := qnas.DefaultBudget.Resolve(sn, cm)
		if err != nil {
			return nil, nil, err
		}
		cfg := search.DefaultSearchConfig(cm, b)
		cfg.Batch = o.Batch
		tr, err := search.NewTrainer(sn, cfg)
		if err != nil {
			return nil, nil, err
		}
		labels := randomize(tr.Plan)
		it := 0
		return tr.Plan, func() error {
			defer func() { it++ }()
			if _, _, err := tr.WeightStep(labels, it, 2, 1e-3); err != nil {
				return err
			}
			_, _, _, err := tr.ArchStep(labels, it, 2)
			return err
		}, nil
	}
	if o.Mode == "qat" {
		var err error
		if g, err = benchQAT(g); err != nil {
			return nil, nil, err
		}
	}
	t := qnas.DefaultOptions().Training
	st, err := train.NewStepper(g, train.Config{Epochs: 1, Batch: o.Batch, LR: t.LR, Momentum: t.Momentum, WeightDecay: t.WeightDecay})
	if err != nil {
		return nil, nil, err
	}
	labels := randomize(st.Plan)
	return st.Plan, func() error {
		st.Loss(labels)
		st.Update(1e-3)
		return nil
	}, nil
}
