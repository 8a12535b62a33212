// Package search finds and trains architectures: calibration of activation clips,
// BatchNorm re-estimation, post-training quantization and quantization-aware fine-tuning of
// a fixed architecture, and (with supernet) the differentiable search under a budget.
package search

import (
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/progress"
	"github.com/qnas/qnas/internal/quant"
	"github.com/qnas/qnas/supernet"
)

// calibSample is the number of values kept per quantizer and batch for choosing its clip.
const calibSample = 1 << 14

// Calibrate sets the clip of every QuantAct in g from the values its input takes on the
// first batches×batch samples of d (inference mode, weights quantized, activations not):
// for each quantizer, the clip among 100 evenly spaced fractions of the largest magnitude
// seen that minimizes the mean squared error of quantizing a sample of those values at its
// bits. Unsigned quantizers look at x ≥ 0, signed ones at |x|.
func Calibrate(g *graph.Graph, d *data.Dataset, norm data.Normalize, batches, batch int, log io.Writer) error {
	type quantizer struct {
		node   *graph.Node
		bits   int
		signed bool
		values []float32
	}
	var qs []*quantizer
	calib := g.Clone()
	keep := map[string]bool{}
	for _, n := range calib.Nodes {
		if n.Op != supernet.OpQuantAct {
			continue
		}
		b, _ := n.Int("bits", 8)
		s, _ := n.Int("signed", 0)
		if b == quant.Float {
			continue
		}
		qs = append(qs, &quantizer{node: n, bits: int(b), signed: s != 0})
		keep[n.Inputs[0]] = true
		n.SetInt("bits", quant.Float) // pass the float value through while observing it
	}
	if len(qs) == 0 {
		return nil
	}
	batch = min(batch, d.N)
	p, err := engine.Compile(calib, batch, engine.Options{Inference: true, Keep: keep})
	if err != nil {
		return err
	}
	n := min(batches*batch, d.N)
	d = data.Subset(d, n) // spread over the data: files stored class by class stay balanced
	bar := progress.New(log, "calibrate", n)
	x := p.Value(calib.Inputs[0]).Data
	idx := make([]int, 0, batch)
	for start := 0; start+batch <= n; start += batch {
		idx = idx[:0]
		for i := start; i < start+batch; i++ {
			idx = append(idx, i)
		}
		d.Batch(idx, norm, nil, nil, x, nil)
		p.Forward(false)
		for _, q := range qs {
			v := p.Value(q.node.Inputs[0]).Data
			stride := max(1, len(v)/calibSample)
			for i := 0; i < len(v); i += stride {
				q.values = append(q.values, v[i])
			}
		}
		bar.Update(start+batch, "")
	}
	bar.Done(fmt.Sprintf("%d quantizers", len(qs)))
	for _, q := range qs {
		clip := bestClip(q.values, q.bits, q.signed)
		g.Consts[q.node.Inputs[1]] = graph.NewFloat([]int{1}, []float32{clip})
	}
	return nil
}

// bestClip returns the clip minimizing the squared quantization error of values.
func bestClip(values []float32, bits int, signed bool) float32 {
	v := slices.Clone(values)
	top := float32(0)
	for i, x := range v {
		if signed {
			x = max(x, -x)
		}
		v[i] = x
		top = max(top, x)
	}
	if !(top > 0) || math.IsInf(float64(top), 0) {
		return 1
	}
	best, bestErr := top, math.Inf(1)
	q := make([]float32, len(v))
	for k := 100; k >= 1; k-- {
		c := top * float32(k) / 100
		quant.FakeQuantAct(v, q, c, bits, signed)
		e := 0.0
		for i, x := range v {
			if !signed && x < 0 {
				continue
			}
			d := float64(x - q[i])
			e += d * d
		}
		if e < bestErr {
			best, bestErr = c, e
		}
	}
	return best
}

// ReestimateBN replaces the running statistics of every BatchNormalization in g with their
// average over the first batches×batch samples of d, computed in training mode by the
// model as it is (quantizers included); nothing else changes.
func ReestimateBN(g *graph.Graph, d *data.Dataset, norm data.Normalize, batches, batch int, log io.Writer) error {
	has := slices.ContainsFunc(g.Nodes, func(n *graph.Node) bool { return n.Op == "BatchNormalization" })
	if !has {
		return nil
	}
	batch = min(batch, d.N)
	p, err := engine.Compile(g, batch, engine.Options{Inference: true})
	if err != nil {
		return err
	}
	n := min(batches*batch, d.N)
	d = data.Subset(d, n)
	bar := progress.New(log, "BN statistics", n)
	x := p.Value(g.Inputs[0]).Data
	idx := make([]int, 0, batch)
	k := 0
	for start := 0; start+batch <= n; start += batch {
		idx = idx[:0]
		for i := start; i < start+batch; i++ {
			idx = append(idx, i)
		}
		d.Batch(idx, norm, nil, nil, x, nil)
		p.SetStatsMomentum(1 / float32(k+1))
		p.Forward(true)
		k++
		bar.Update(start+batch, "")
	}
	bar.Done(fmt.Sprintf("%d batches", k))
	return nil
}
