package search

import (
	"fmt"
	"io"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/progress"
	"github.com/qnas/qnas/internal/train"
)

// RestoreBatchNorm returns a copy of g in which every convolution that no BatchNormalization
// normalizes (graph.UnnormalizedConvs: a model exported with its BatchNorms folded) is
// followed by one again, initialised from the statistics of the conv's output over
// batches×batch samples spread over d, so that the copy computes what g computes (in
// inference mode exactly; in training mode up to the difference between a batch's
// statistics and those). Fine-tuning and the search then train such a model as stably as
// one exported with its BatchNorms (docs/method.md, "Models with folded BatchNorm"); the
// exporter folds the BatchNorms back. It returns g itself and no names when every conv is
// normalized already, else the copy and the names of the added nodes.
func RestoreBatchNorm(g *graph.Graph, d *data.Dataset, norm data.Normalize, batches, batch int, log io.Writer) (*graph.Graph, []string, error) {
	convs := g.UnnormalizedConvs()
	if len(convs) == 0 {
		return g, nil, nil
	}
	if err := train.CheckData(g, d); err != nil {
		return nil, nil, err
	}
	batch = min(batch, d.N)
	observed := map[string]bool{}
	for _, n := range convs {
		observed[n.Outputs[0]] = true
	}
	p, err := engine.Compile(g, batch, engine.Options{Inference: true, Observed: observed})
	if err != nil {
		return nil, nil, err
	}
	type moments struct{ sum, sq []float64 }
	stats := make([]moments, len(convs))
	count := make([]float64, len(convs))
	for i, n := range convs {
		c := g.Shapes[n.Outputs[0]]
		if len(c) != 4 {
			return nil, nil, fmt.Errorf("node %q: output shape %v, want N×C×H×W", n.Name, c)
		}
		st := moments{make([]float64, c[1]), make([]float64, c[1])}
		stats[i] = st
		err := p.Observe(n.Outputs[0], func(v []float32) {
			ch := len(st.sum)
			hw := len(v) / (batch * ch)
			for b := 0; b < batch; b++ {
				for c := 0; c < ch; c++ {
					var s, q float64
					for _, y := range v[(b*ch+c)*hw : (b*ch+c+1)*hw] {
						s += float64(y)
						q += float64(y) * float64(y)
					}
					st.sum[c] += s
					st.sq[c] += q
				}
			}
			count[i] += float64(batch * hw)
		})
		if err != nil {
			return nil, nil, fmt.Errorf("node %q: %w", n.Name, err)
		}
	}
	n := min(batches*batch, d.N)
	sub := data.Subset(d, n)
	bar := progress.New(log, "BatchNorm statistics", n)
	err = forBatches(sub, norm, n, batch, p.Value(g.Inputs[0]).Data, func(done int) {
		p.Forward(false)
		bar.Update(done, "")
	})
	if err != nil {
		return nil, nil, err
	}
	bar.Done(fmt.Sprintf("%d convolutions", len(convs)))
	out := g.Clone()
	byName := map[string]*graph.Node{}
	for _, nd := range out.Nodes {
		byName[nd.Name] = nd
	}
	var added []string
	for i, cv := range convs {
		ch := len(stats[i].sum)
		mean, variance := make([]float64, ch), make([]float64, ch)
		for c := range mean {
			mean[c] = stats[i].sum[c] / count[i]
			variance[c] = max(stats[i].sq[c]/count[i]-mean[c]*mean[c], 0)
		}
		bn, err := out.InsertBatchNorm(byName[cv.Name], mean, variance)
		if err != nil {
			return nil, nil, err
		}
		added = append(added, bn.Name)
	}
	if err := out.InferShapes(); err != nil {
		return nil, nil, err
	}
	return out, added, nil
}

// TrainingForm returns a copy of g in the one form every model is trained in, whether it
// was exported with its BatchNorms or with them folded: each BatchNormalization that
// directly follows a Conv is folded into it (graph.FoldBatchNorm), then RestoreBatchNorm
// puts one back after every convolution, with the conv's weights at unit output scale and
// statistics measured on d. A folded export and its BatchNorm-kept twin thus start training
// from the same parameters, to float rounding, instead of from weights whose scales differ
// by the original BatchNorm's (which sets how far an SGD step moves a normalized conv). It
// returns g itself and no names when g has no Conv, else the copy and the names of the
// BatchNormalizations it holds after the convs.
func TrainingForm(g *graph.Graph, d *data.Dataset, norm data.Normalize, batches, batch int, log io.Writer) (*graph.Graph, []string, error) {
	fg := g.Clone()
	if err := fg.FoldBatchNorm(); err != nil {
		return nil, nil, err
	}
	if err := fg.InferShapes(); err != nil {
		return nil, nil, err
	}
	rg, added, err := RestoreBatchNorm(fg, d, norm, batches, batch, log)
	if err != nil || len(added) == 0 {
		return g, nil, err
	}
	return rg, added, nil
}
