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
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/supernet"
)

// calibSample is the number of values kept per quantizer and batch for choosing its clip.
const calibSample = 1 << 14

// Calibrate sets the clip of every QuantAct in g (and of every option of every MixedAct)
// from the values its input takes on batches×batch samples spread over d (inference mode,
// weights quantized, activations not): for each quantizer and bitwidth, the clip among 100
// evenly spaced fractions of the largest magnitude seen that minimizes the mean squared
// error of quantizing a sample of those values at those bits (with power-of-two scales,
// each fraction moved to its power-of-two grid first). Unsigned quantizers look at x ≥ 0,
// signed ones at |x|.
func Calibrate(g *graph.Graph, d *data.Dataset, norm data.Normalize, batches, batch int, log io.Writer) error {
	if err := train.CheckData(g, d); err != nil {
		return err
	}
	type quantizer struct {
		node   *graph.Node
		bits   []int
		clips  string // the constant that holds one clip per bitwidth
		signed bool
		pow2   bool
		values []float32
	}
	var qs []*quantizer
	calib := g.Clone()
	for _, n := range calib.Nodes {
		q := &quantizer{node: n}
		switch n.Op {
		case supernet.OpQuantAct:
			b, err := n.Int("bits", 8)
			if err != nil {
				return fmt.Errorf("node %q: %w", n.Name, err)
			}
			if b == quant.Float {
				continue
			}
			q.bits, q.clips = []int{int(b)}, n.Inputs[1]
		case supernet.OpMixedAct:
			bs, err := n.Ints("bits", nil)
			if err != nil {
				return fmt.Errorf("node %q: %w", n.Name, err)
			}
			for _, b := range bs {
				q.bits = append(q.bits, int(b))
			}
			q.clips = n.Inputs[2]
			// Observe through a pass-through QuantAct.
			one := "calibrate" + n.Name + "/clip"
			calib.Consts[one] = graph.NewFloat([]int{1}, []float32{1})
			n.Op, n.Inputs = supernet.OpQuantAct, []string{n.Inputs[0], one}
			delete(n.Attrs, "bits")
		default:
			continue
		}
		s, err := n.Int("signed", 0)
		if err != nil {
			return fmt.Errorf("node %q: %w", n.Name, err)
		}
		q.signed, q.pow2 = s != 0, supernet.Pow2(n)
		qs = append(qs, q)
		n.SetInt("bits", quant.Float) // pass the float value through while observing it
	}
	if len(qs) == 0 {
		return nil
	}
	batch = min(batch, d.N)
	observed := map[string]bool{}
	for _, q := range qs {
		observed[q.node.Inputs[0]] = true
	}
	p, err := engine.Compile(calib, batch, engine.Options{Inference: true, Observed: observed})
	if err != nil {
		return err
	}
	for _, q := range qs {
		err := p.Observe(q.node.Inputs[0], func(v []float32) {
			stride := max(1, len(v)/calibSample)
			for i := 0; i < len(v); i += stride {
				q.values = append(q.values, v[i])
			}
		})
		if err != nil {
			return fmt.Errorf("node %q: %w", q.node.Name, err)
		}
	}
	n := min(batches*batch, d.N)
	d = data.Subset(d, n) // spread over the data: files stored class by class stay balanced
	bar := progress.New(log, "calibrate", n)
	err = forBatches(d, norm, n, batch, p.Value(calib.Inputs[0]).Data, func(done int) {
		p.Forward(false)
		bar.Update(done, "")
	})
	if err != nil {
		return err
	}
	bar.Done(fmt.Sprintf("%d quantizers", len(qs)))
	for _, q := range qs {
		clips := make([]float32, len(q.bits))
		for i, b := range q.bits {
			clips[i] = bestClip(q.values, b, q.signed, q.pow2)
		}
		if t := g.Consts[q.clips]; t != nil && len(t.F) == len(clips) {
			copy(t.F, clips) // in place: a plan compiled on g sees them
		} else {
			g.Consts[q.clips] = graph.NewFloat([]int{len(clips)}, clips)
		}
	}
	return nil
}

// bestClip returns the clip minimizing the squared quantization error of values.
func bestClip(values []float32, bits int, signed, pow2 bool) float32 {
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
		if pow2 {
			c = quant.Pow2Clip(c, bits, signed)
		}
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
	if err := train.CheckData(g, d); err != nil {
		return err
	}
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
	k := 0
	err = forBatches(d, norm, n, batch, p.Value(g.Inputs[0]).Data, func(done int) {
		p.SetStatsMomentum(1 / float32(k+1))
		p.Forward(true)
		k++
		bar.Update(done, "")
	})
	if err != nil {
		return err
	}
	bar.Done(fmt.Sprintf("%d batches", k))
	return nil
}

// forBatches loads the first n samples of d (n/batch whole batches, in order) into x one
// batch at a time and calls step after each with the number of samples loaded so far; it
// stops at the first sample the data set cannot read (Dataset.Err).
func forBatches(d *data.Dataset, norm data.Normalize, n, batch int, x []float32, step func(done int)) error {
	idx := make([]int, 0, batch)
	for start := 0; start+batch <= n; start += batch {
		idx = idx[:0]
		for i := start; i < start+batch; i++ {
			idx = append(idx, i)
		}
		d.Batch(idx, norm, nil, nil, x, nil)
		if err := d.Err(); err != nil {
			return err
		}
		step(start + batch)
	}
	return nil
}
