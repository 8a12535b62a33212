package search

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/field"
	"github.com/qnas/qnas/internal/progress"
	"github.com/qnas/qnas/internal/quant"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/supernet"
)

// SensitivityConfig is one run of Sensitivity (docs/method.md, "Fast mode").
type SensitivityConfig struct {
	// Images is how many training images the estimate reads (at most the data's), in
	// micro-batches of Batch.
	Images, Batch int
	// CalibBatches batches of CalibBatch images calibrate the clips first, as in Search.
	CalibBatches, CalibBatch int
	Seed                     uint64 // which images: the first of a seeded shuffle
	Norm                     data.Normalize
	Log                      io.Writer
	Context                  context.Context
}

// SensitivityResult is what Sensitivity estimated.
type SensitivityResult struct {
	// Increase holds, for every logits constant of the supernet and laid out as its logits,
	// each option's estimated increase of the mean training loss when that choice alone
	// takes it, every other choice at its most precise option (0 for the most precise).
	Increase map[string][]float64
	// Logits are supernet.LossLogits(Increase), what Supernet.Derive takes.
	Logits        map[string][]float32
	Images, Batch int
	// Loss is the mean loss of the most precise architecture on those images.
	Loss   float64
	Phases []Phase // "calibrate", "sensitivity"
}

// Sensitivity estimates, instead of a search, how much each option of each choice of the
// supernet would raise the training loss, from one pass over cfg.Images training images of
// the most precise architecture (BatchNorm on its running statistics), and turns the
// estimates into logits for Derive. For a choice moved to option j, δ_j is the change it
// makes (of a unit's quantized weights, of a layer's quantized input, of a group's masked
// channels) and s_j = ∂ℓ/∂x·δ_j, per image, the first-order change of that image's loss ℓ;
// the estimate is the second-order term ½·E[s_j²] with the empirical Fisher information as
// the curvature. Inputs and channels give s_j per image exactly; a weight's gradient is a
// batch's mean, whose variance over the micro-batches gives E[s_j²] unbiasedly. The images
// are streamed one micro-batch at a time. The supernet's clips are calibrated (as Search
// does); its logits are left as they were.
func Sensitivity(sn *supernet.Supernet, trainSet *data.Dataset, cfg SensitivityConfig) (*SensitivityResult, error) {
	if cfg.Images < 1 {
		return nil, field.Errorf("SensitivityConfig.Images", " %d: must be positive", cfg.Images)
	}
	if cfg.Batch < 1 {
		return nil, field.Errorf("SensitivityConfig.Batch", " %d: must be positive", cfg.Batch)
	}
	g := sn.Graph
	if err := train.CheckData(g, trainSet); err != nil {
		return nil, err
	}
	ctx := cfg.Context
	if ctx == nil {
		ctx = context.Background()
	}
	t0 := time.Now()
	if err := Calibrate(g, trainSet, cfg.Norm, cfg.CalibBatches, cfg.CalibBatch, cfg.Log); err != nil {
		return nil, err
	}
	calibrated := time.Since(t0).Seconds()
	t0 = time.Now()
	n := min(cfg.Images, trainSet.N)
	b := min(cfg.Batch, n)
	steps := n / b
	restore := mostPrecise(sn)
	defer restore()
	probes, keep, reads := newProbes(sn)
	p, err := engine.Compile(g, b, engine.Options{KeepGrads: keep, Keep: reads})
	if err != nil {
		return nil, err
	}
	p.SetTrainable(func(string) bool { return false }) // activations' and layers' weight gradients only
	p.SetState(&engine.StepState{Argmax: true})
	for _, pr := range probes {
		if err := pr.bind(p); err != nil {
			return nil, err
		}
	}
	l, err := data.NewLoader(trainSet, data.LoaderOptions{BatchSize: b, Shuffle: true, DropLast: true, Seed: cfg.Seed, Norm: cfg.Norm})
	if err != nil {
		return nil, err
	}
	x, y := p.Value(g.Inputs[0]).Data, make([]int32, b)
	bar := progress.New(cfg.Log, "sensitivity", steps*b)
	lossSum := 0.0
	for s := 0; s < steps; s++ {
		if err := ctx.Err(); err != nil {
			bar.Stop(s*b, "interrupted")
			return nil, fmt.Errorf("interrupted during the sensitivity estimate (it keeps no checkpoint; run again): %w", err)
		}
		l.Next(x, y)
		if err := l.Err(); err != nil {
			return nil, err
		}
		p.Forward(false)
		loss, _ := p.SoftmaxCrossEntropy(g.Outputs[0], y)
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return nil, fmt.Errorf("sensitivity batch %d: the loss of the most precise architecture is %v", s+1, loss)
		}
		lossSum += loss
		p.Backward()
		for _, pr := range probes {
			pr.add(b)
		}
		bar.Update((s+1)*b, fmt.Sprintf("loss %.3f", lossSum/float64(s+1)))
	}
	bar.Done(fmt.Sprintf("%d images, loss %.3f", steps*b, lossSum/float64(steps)))
	res := &SensitivityResult{Increase: map[string][]float64{}, Images: steps * b, Batch: b, Loss: lossSum / float64(steps)}
	for _, pr := range probes {
		name, inc := pr.increase(steps, b)
		for i, v := range inc {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("sensitivity of %q option %d is %v", name, i, v)
			}
		}
		res.Increase[name] = inc
	}
	res.Logits = supernet.LossLogits(res.Increase)
	res.Phases = []Phase{{"calibrate", calibrated}, {"sensitivity", time.Since(t0).Seconds()}}
	return res, nil
}

// mostPrecise makes every choice's last option (the most bits, the widest) the most probable
// one and returns what restores the logits.
func mostPrecise(sn *supernet.Supernet) (restore func()) {
	saved := map[string][]float32{}
	for _, name := range sn.ArchParams() {
		t := sn.Graph.Consts[name]
		saved[name] = slices.Clone(t.F)
		k := t.Shape[len(t.Shape)-1]
		for i := range t.F {
			t.F[i] = 0
			if i%k == k-1 {
				t.F[i] = 1
			}
		}
	}
	return func() {
		for name, v := range saved {
			copy(sn.Graph.Consts[name].F, v)
		}
	}
}

// signed reports whether a quantizer node is signed (its attribute, checked when the
// supernet was built).
func signed(n *graph.Node) bool {
	s, _ := n.Int("signed", 0)
	return s != 0
}

// A probe gathers the first-order loss changes s_j of one logits constant's options.
type probe interface {
	bind(p *engine.Plan) error
	add(batch int) // after a backward pass
	// increase returns the constant's name and ½·E[s_j²] for each option (steps batches).
	increase(steps, batch int) (string, []float64)
}

// moments accumulates Σ s and Σ s² per option.
type moments struct{ sum, sq []float64 }

func newMoments(n int) moments { return moments{make([]float64, n), make([]float64, n)} }

func (m moments) put(i int, s float64) {
	m.sum[i] += s
	m.sq[i] += s * s
}

// newProbes returns the probes of every choice of sn that has options, the activations
// whose gradients they read (keep) and those whose values they read after a forward
// (reads: no BatchNormalization may be deferred into their readers).
func newProbes(sn *supernet.Supernet) (probes []probe, keep, reads map[string]bool) {
	g := sn.Graph
	keep, reads = map[string]bool{}, map[string]bool{}
	byOutput := map[string]*graph.Node{}
	var masks []*graph.Node
	for _, n := range g.Nodes {
		byOutput[n.Outputs[0]] = n
		if n.Op == supernet.OpWidthMask {
			masks = append(masks, n)
		}
	}
	var out []probe
	for _, lc := range sn.Layers {
		l := lc.Layer
		if lc.WLogits != "" {
			q := l.Name + supernet.SuffixWeightQuant
			keep[q] = true
			out = append(out, &weightProbe{lc: lc, weight: byOutput[q].Inputs[0], quantized: q, m: newMoments(lc.Units * len(lc.WBits))})
		}
		if lc.ALogits != "" {
			q := l.Name + supernet.SuffixInputQuant // its gradient is observed, not kept
			n := byOutput[q]
			reads[n.Inputs[0]] = true
			out = append(out, &actProbe{lc: lc, input: n.Inputs[0], quantized: q, signed: signed(n),
				m: newMoments(len(lc.ABits))})
		}
	}
	for _, gc := range sn.Groups {
		wp := &widthProbe{gc: gc, rank: make([]int, gc.Group.Channels), m: newMoments(len(gc.Keep))}
		for r, c := range gc.Order {
			wp.rank[c] = r
		}
		for _, n := range masks {
			if n.Inputs[1] == gc.Logits {
				axis, _ := n.Int("axis", 1) // checked when the supernet was built
				keep[n.Outputs[0]] = true
				reads[n.Inputs[0]] = true
				wp.points = append(wp.points, maskPoint{input: n.Inputs[0], output: n.Outputs[0], axis: int(axis)})
			}
		}
		out = append(out, wp)
	}
	return out, keep, reads
}

// weightProbe: a layer's weight bits, per unit. A batch gives S_j = ⟨G, δ_j⟩ for the mean
// gradient G of the batch's b images, the mean of their s_j: E[s²] = E[S]² + b·Var(S).
type weightProbe struct {
	lc                *supernet.LayerChoices
	weight, quantized string
	w, q              *engine.Value
	rows, cols        int
	wr, qmax, qj, gr  []float32 // the float weights, the most precise quantized, option j's, the gradient: as filter rows
	scales            []float32
	m                 moments
}

func (w *weightProbe) bind(p *engine.Plan) error {
	w.w, w.q = p.Value(w.weight), p.Value(w.quantized)
	w.rows = w.lc.Layer.Filters
	w.cols = w.w.Len() / w.rows
	w.wr, w.qmax, w.qj, w.gr = w.asRows(w.w.Data, nil), make([]float32, w.w.Len()), make([]float32, w.w.Len()), make([]float32, w.w.Len())
	w.scales = make([]float32, w.rows)
	return nil
}

// asRows returns v (the weight's layout) as filter rows, in dst (nil: new).
func (w *weightProbe) asRows(v, dst []float32) []float32 {
	if dst == nil {
		dst = make([]float32, len(v))
	}
	if w.lc.Layer.WAxis == 0 {
		copy(dst, v)
		return dst
	}
	for r := 0; r < w.cols; r++ { // v is [cols][rows]
		for c := 0; c < w.rows; c++ {
			dst[c*w.cols+r] = v[r*w.rows+c]
		}
	}
	return dst
}

func (w *weightProbe) add(int) {
	lc := w.lc
	w.asRows(w.q.Grad, w.gr)
	w.asRows(w.q.Data, w.qmax)
	per := w.rows / lc.Units * w.cols
	bits := make([]int, w.rows)
	k := len(lc.WBits)
	for j, b := range lc.WBits[:k-1] {
		for i := range bits {
			bits[i] = b
		}
		quant.FakeQuantWeights(w.wr, bits, w.scales, w.qj)
		for u := 0; u < lc.Units; u++ {
			var s float64
			for i := u * per; i < (u+1)*per; i++ {
				s += float64(w.gr[i]) * float64(w.qj[i]-w.qmax[i])
			}
			w.m.put(u*k+j, s)
		}
	}
}

func (w *weightProbe) increase(steps, batch int) (string, []float64) {
	out := make([]float64, len(w.m.sum))
	for i := range out {
		mean := w.m.sum[i] / float64(steps)
		v := 0.0
		if steps > 1 {
			v = max(0, (w.m.sq[i]-float64(steps)*mean*mean)/float64(steps-1))
		}
		out[i] = 0.5 * (mean*mean + float64(batch)*v)
	}
	return w.lc.WLogits, out
}

// actProbe: a layer's input bits. The gradient of the batch's mean loss with respect to
// one image's input is 1/b of that image's own, so s_j is exact per image.
type actProbe struct {
	lc               *supernet.LayerChoices
	input, quantized string
	signed           bool
	x, q, clips      *engine.Value
	qj               []float32
	batch            int
	m                moments
}

func (a *actProbe) bind(p *engine.Plan) error {
	a.x, a.q = p.Value(a.input), p.Value(a.quantized)
	a.clips = p.Value(a.lc.Clips)
	a.qj = make([]float32, a.x.Len()/p.Batch)
	a.batch = p.Batch
	// The quantized input's gradient is read as Backward completes it: a buffer of its own
	// for every layer's would cost as much memory as all the layers' inputs.
	return p.ObserveGrad(a.quantized, a.observe)
}

// observe adds a batch's s_j from the gradient grad of the quantized input.
func (a *actProbe) observe(grad []float32) {
	per := len(a.qj)
	k := len(a.lc.ABits)
	for n := 0; n < a.batch; n++ {
		x, q, g := a.x.Data[n*per:(n+1)*per], a.q.Data[n*per:(n+1)*per], grad[n*per:(n+1)*per]
		for j, b := range a.lc.ABits[:k-1] {
			quant.FakeQuantAct(x, a.qj, max(a.clips.Data[j], 1e-6), b, a.signed)
			var s float64
			for i, v := range a.qj {
				s += float64(g[i]) * float64(v-q[i])
			}
			a.m.put(j, s*float64(a.batch))
		}
	}
}

func (a *actProbe) add(int) {} // observe did, during the backward pass

func (a *actProbe) increase(steps, batch int) (string, []float64) {
	return a.lc.ALogits, halfSecondMoment(a.m, steps*batch)
}

// halfSecondMoment returns ½·Σ s²/n per option.
func halfSecondMoment(m moments, n int) []float64 {
	out := make([]float64, len(m.sq))
	for i, v := range m.sq {
		out[i] = 0.5 * v / float64(n)
	}
	return out
}

// widthProbe: a channel group's width. Option j removes, at each of the group's mask
// points, the channels ranked from its count to the most precise option's, so
// s_j = −Σ over those channels and points of ∂ℓ/∂y·x, exact per image.
type widthProbe struct {
	gc     *supernet.GroupChoices
	rank   []int // of each channel (0: most important)
	points []maskPoint
	z      []float64 // per channel: Σ ∂ℓ/∂y·x of the current image
	m      moments
}

type maskPoint struct {
	input, output string
	axis          int // of the channels
	x, y          *engine.Value
	inner         int // elements of one run of a channel (1 for channels last)
}

func (w *widthProbe) bind(p *engine.Plan) error {
	w.z = make([]float64, w.gc.Group.Channels)
	for i := range w.points {
		mp := &w.points[i]
		mp.x, mp.y = p.Value(mp.input), p.Value(mp.output)
		mp.inner = 1
		for _, d := range mp.x.Shape[mp.axis+1:] {
			mp.inner *= d
		}
	}
	return nil
}

func (w *widthProbe) add(batch int) {
	c := len(w.z)
	keep := w.gc.Keep
	top := keep[len(keep)-1]
	for n := 0; n < batch; n++ {
		clear(w.z)
		for _, mp := range w.points {
			per := mp.x.Len() / batch
			x, g := mp.x.Data[n*per:(n+1)*per], mp.y.Grad[n*per:(n+1)*per]
			for r := 0; r < per/mp.inner; r++ {
				var s float64
				for i := r * mp.inner; i < (r+1)*mp.inner; i++ {
					s += float64(g[i]) * float64(x[i])
				}
				w.z[r%c] += s
			}
		}
		for j, kept := range keep[:len(keep)-1] {
			var s float64
			for ch, r := range w.rank {
				if r >= kept && r < top {
					s -= w.z[ch]
				}
			}
			w.m.put(j, s*float64(batch))
		}
	}
}

func (w *widthProbe) increase(steps, batch int) (string, []float64) {
	return w.gc.Logits, halfSecondMoment(w.m, steps*batch)
}
