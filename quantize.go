package qnas

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/field"
	"github.com/qnas/qnas/internal/figure"
	"github.com/qnas/qnas/internal/quant"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/search"
	"github.com/qnas/qnas/supernet"
)

// QuantizeReport is the report of Quantize (and the part of Optimize's report about the
// model it wrote): the cost and accuracy of the written model, per layer, and the time of
// every phase. It is the JSON `qnas quantize --json` prints.
type QuantizeReport struct {
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
	Pow2Scales    bool           `json:"pow2_scales,omitempty"` // every scale a power of two (Options.Pow2Scales)
	Layers        []LayerReport  `json:"layers"`
	Phases        []search.Phase `json:"phases"`
	// What runs on integers in the written model: the layers whose weights and inputs are
	// both quantized, and their MACs; the other layers (a float weight or input) and the
	// MACs of ops that are no layer (a MatMul of two activations) stay float.
	QuantizedLayers int   `json:"quantized_layers"`
	FloatLayers     int   `json:"float_layers"`
	QuantizedMACs   int64 `json:"quantized_macs"`
	FloatMACs       int64 `json:"float_macs"`
	// SaturatedBiases lists the layers whose integer biases (bias / (input scale × weight
	// scale)) did not fit in int32 and were clipped to its range.
	SaturatedBiases []string `json:"saturated_biases,omitempty"`
}

// LayerReport is one quantized layer of a report.
type LayerReport struct {
	Name        string  `json:"name"`
	WBits       []int   `json:"wbits"` // per kept filter
	ABits       int     `json:"abits"`
	Filters     int     `json:"filters"`
	KeptFilters int     `json:"kept_filters"`
	MACs        int64   `json:"macs"`
	Cost        float64 `json:"cost"`
}

// Quantize applies the architecture arch (uniform bits: a Default LayerSpec; or a
// qnas.arch/1 document read with supernet.ReadArch) to the float model in the file model,
// calibrates its clips, fine-tunes it with quantization in the loop for opts.Epochs (0:
// post-training quantization) and writes it to opts.Output.Path. Cancelling ctx stops the
// fine-tuning at the next step, saving its state in OUT.onnx.ckpt (*train.InterruptedError).
func Quantize(ctx context.Context, model string, arch *supernet.Arch, opts QuantizeOptions) (*QuantizeReport, error) {
	o := &opts.Options
	if opts.Epochs < 0 {
		return nil, field.Errorf("Epochs", " %d: must not be negative", opts.Epochs)
	}
	if arch == nil {
		return nil, field.Errorf("Arch", ": no architecture given")
	}
	s := &session{o: o, model: model}
	var err error
	if s.ckpt, err = quantizePlan(&opts); err != nil {
		return nil, err
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := s.checkFiles(namedFile{"ArchSource", opts.ArchSource}); err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	r, err := s.space.Resolve(arch)
	if err != nil {
		if opts.ArchSource != "" {
			return nil, fmt.Errorf("%s: %w", opts.ArchSource, err)
		}
		return nil, err
	}
	if err := checkArchCost(s.cm, r); err != nil {
		return nil, err
	}
	if err := s.openData(); err != nil {
		return nil, err
	}
	if err := s.checkTeacher(opts.Epochs > 0); err != nil {
		return nil, err
	}
	if err := s.checkResume(r, opts.Epochs); err != nil { // before any work
		return nil, err
	}
	s.notes()
	if err := s.restoreBatchNorm(); err != nil {
		return nil, err
	}
	if r, err = s.space.Resolve(arch); err != nil {
		return nil, err
	}
	rep, err := s.fineTune(ctx, r, opts.Epochs, o.Output.Path, o.Training.Seed)
	if err != nil {
		return nil, err
	}
	return rep, writeReport(o.Output.Report, rep, rep)
}

// checkArchCost checks, before any work, that the architecture r has a finite cost under
// cm, as has the model at the reference pair (the reference of every ratio).
func checkArchCost(cm supernet.CostModel, r *supernet.Resolved) error {
	cost, err := cm.Cost(r)
	if err != nil {
		return err
	}
	return supernet.CheckCosts(cm, cost, cm.Reference(r.Space))
}

// fineTune trains the architecture r of the session's model for epochs, evaluates the
// frozen model on the test split, and writes it to out (when not empty).
func (s *session) fineTune(ctx context.Context, r *supernet.Resolved, epochs int, out string, seed uint64) (*QuantizeReport, error) {
	cm, t := s.cm, s.o.Training
	rep := &QuantizeReport{Model: s.model, Output: out, CostModel: cm.String(), CostUnit: cm.Unit(), Epochs: epochs, Seed: seed,
		Pow2Scales: s.space.Pow2Scales}
	costs, err := cm.LayerCosts(r)
	if err != nil {
		return nil, err
	}
	rep.ReferenceCost = cm.Reference(r.Space)
	for _, l := range r.Space.Layers {
		rep.Cost += costs[l.Index]
		rep.Layers = append(rep.Layers, LayerReport{Name: l.Name, WBits: r.KeptBits(l), ABits: r.Choices[l.Index].ABits,
			Filters: l.Filters, KeptFilters: r.Kept(l), MACs: l.MACs(r.KeptIn(l), r.Kept(l)), Cost: costs[l.Index]})
	}
	rep.CostRatio = rep.Cost / rep.ReferenceCost
	if err := supernet.CheckCosts(cm, rep.Cost, rep.ReferenceCost); err != nil {
		return nil, err
	}
	cfg, err := s.quantizeConfig(r, epochs, out, seed)
	if err != nil {
		return nil, err
	}
	if cfg.Resume { // before any work
		if err := cfg.CheckResume(r, s.trainSet); err != nil {
			return nil, err
		}
	}
	clock := time.Now()
	lap := func(name string) {
		rep.Phases = append(rep.Phases, search.Phase{Name: name, Seconds: time.Since(clock).Seconds()})
		clock = time.Now()
	}
	bars := s.o.bars()
	ev, err := s.evalFloat(bars)
	if err != nil {
		return nil, err
	}
	rep.FloatAccuracy = ev.Accuracy
	lap("evaluate float")
	cfg.Context = ctx
	qg, err := search.Calibrated(r, s.trainSet, cfg)
	if err != nil {
		return nil, err
	}
	// The accuracy reported is the written model's, as qnas's engine computes it (ONNX
	// Runtime agrees): integer biases and folded BatchNorms included.
	frozenAccuracy := func(g *graph.Graph) (*export.Model, train.Eval, error) {
		m, err := export.Freeze(g, r)
		if err != nil {
			return nil, train.Eval{}, err
		}
		ev, err := train.Evaluate(m.Graph, s.testSet, s.norm, 256, bars)
		return m, ev, err
	}
	if epochs > 0 {
		// The accuracy after calibration alone (post-training quantization), to show what
		// fine-tuning buys and to catch a fine-tuning that destroys the model.
		ptq := qg.Clone()
		if err := search.ReestimateBN(ptq, s.trainSet, s.norm, t.Calib, t.Batch, bars); err != nil {
			return nil, err
		}
		_, ev, err := frozenAccuracy(ptq)
		if err != nil {
			return nil, err
		}
		rep.PTQAccuracy = ev.Accuracy
		lap("post-training quantization")
	}
	tg, _, err := search.FineTune(qg, s.trainSet, cfg)
	if err != nil {
		return nil, err
	}
	lap("fine-tune")
	if qg, err = supernet.ExportForm(tg); err != nil {
		return nil, err
	}
	m, ev, err := frozenAccuracy(qg)
	if err != nil {
		return nil, err
	}
	rep.Accuracy, rep.TestSamples = ev.Accuracy, ev.Samples
	rep.SaturatedBiases = m.SaturatedBiases
	rep.countQuantized(m.Graph)
	if epochs == 0 {
		rep.PTQAccuracy = rep.Accuracy
	} else if drop := rep.PTQAccuracy - rep.Accuracy; drop > train.AccuracyDropLimit(rep.PTQAccuracy, ev.Samples) {
		ckpt.Remove(cfg.Checkpoint) // it holds the diverged state
		return nil, &train.AccuracyDropError{PTQ: rep.PTQAccuracy, Now: rep.Accuracy, LR: t.LR}
	}
	lap("evaluate quantized")
	if out == "" {
		return rep, nil
	}
	if err := ctx.Err(); err != nil { // stopped after the fine-tuning's last checkpoint
		if cfg.Checkpoint != "" {
			return nil, &train.InterruptedError{Checkpoint: cfg.Checkpoint}
		}
		return nil, fmt.Errorf("interrupted before writing %s", out)
	}
	m.Graph.Meta["qnas.mean"], m.Graph.Meta["qnas.std"] = joinFloats(s.norm.Mean), joinFloats(s.norm.Std)
	o := s.o.Output
	if _, err := m.Write(out, s.model, export.WriteOptions{Format: o.Format, Pack: o.Pack, IRVersion: o.IRVersion, ProducerVersion: s.o.producer()}); err != nil {
		return nil, err
	}
	ckpt.Remove(cfg.Checkpoint)
	lap("export")
	return rep, nil
}

// countQuantized fills the report's quantized and float layer and MAC counts of the written
// model m.
func (r *QuantizeReport) countQuantized(m *graph.Graph) {
	r.QuantizedLayers, r.FloatLayers, r.QuantizedMACs = 0, 0, 0
	for _, l := range r.Layers {
		if l.ABits != quant.Float && !slices.Contains(l.WBits, quant.Float) {
			r.QuantizedLayers++
			r.QuantizedMACs += l.MACs
		} else {
			r.FloatLayers++
		}
	}
	r.FloatMACs = graph.Summarize(m).MACs - r.QuantizedMACs
}

// writeReport writes a report as indented JSON to path and the bit map of its model (q)
// to BitMapPath(path), both or neither ("" writes nothing).
func writeReport(path string, rep any, q *QuantizeReport) error {
	if path == "" {
		return nil
	}
	b, err := MarshalReport(rep)
	if err != nil {
		return err
	}
	img, err := q.BitMap().Encode("png")
	if err != nil {
		return fmt.Errorf("the bit map of %s: %w", path, err)
	}
	return onnxio.WriteFilesAtomic([]onnxio.FileContent{
		{Path: BitMapPath(path), Write: func(w io.Writer) error { _, err := w.Write(img); return err }},
		{Path: path, Write: func(w io.Writer) error { _, err := w.Write(b); return err }},
	})
}

// BitMapPath is where a run that writes its report to report draws the bit map of its
// model: report without its .json extension, plus ".bits.png".
func BitMapPath(report string) string {
	return strings.TrimSuffix(report, ".json") + ".bits.png"
}

// BitMap is the bit map of the report's model: one row per quantized layer, its kept
// filters coloured by weight bits, its pruned ones grey, its input bits beside it.
func (r *QuantizeReport) BitMap() figure.BitMap {
	name := filepath.Base(r.Output)
	if r.Output == "" {
		name = filepath.Base(r.Model)
	}
	m := figure.BitMap{Title: fmt.Sprintf("%s: cost ratio %.4f, accuracy %.2f %%", name, r.CostRatio, 100*r.Accuracy)}
	for _, l := range r.Layers {
		m.Layers = append(m.Layers, figure.Layer{Name: l.Name, WBits: l.WBits, ABits: l.ABits, Filters: l.Filters, KeptFilters: l.KeptFilters})
	}
	return m
}

// MarshalReport returns a report as the qnas command writes it: indented JSON and a
// newline.
func MarshalReport(rep any) ([]byte, error) {
	b, err := json.MarshalIndent(rep, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// joinFloats writes values as metadata holds them ("0.286,0.353").
func joinFloats(v []float32) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	return strings.Join(parts, ",")
}
