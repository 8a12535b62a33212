package graph

import (
	"fmt"
	"math"
	"slices"
)

// UnnormalizedConvs returns the Conv nodes with a constant 4-D weight whose output is not
// normalized by a BatchNormalization: nothing but a BatchNormalization reads it, or it is a
// graph output. These are the convolutions of a model exported with its BatchNorms folded
// (PyTorch's default), or trained without them.
func (g *Graph) UnnormalizedConvs() []*Node {
	consumers := g.Consumers()
	var out []*Node
	for _, n := range g.Nodes {
		if n.Op != "Conv" || len(n.Outputs) == 0 || g.IsOutput(n.Outputs[0]) {
			continue
		}
		if w := g.Consts[n.Input(1)]; w == nil || w.DType != Float32 || len(w.Shape) != 4 {
			continue
		}
		cs := consumers[n.Outputs[0]]
		if len(cs) == 1 && cs[0].Op == "BatchNormalization" {
			continue
		}
		out = append(out, n)
	}
	return out
}

// BatchNormSuffix ends the name of a BatchNormalization InsertBatchNorm adds after a conv
// (conv name + suffix); its parameters are named after it (…/scale, …/B, …/mean, …/var).
const BatchNormSuffix = "/BatchNormalization"

// InsertBatchNorm puts an inference BatchNormalization after conv n, which must have a
// constant weight, without changing what the graph computes: given the per-channel mean and
// variance of the conv's output y (over representative inputs), the conv is rescaled to
// output y/s (s = the channel's standard deviation, 1 where it is degenerate) and the
// BatchNormalization, holding statistics mean/s and variance/s² and parameters
// γ = s·√(variance/s² + ε), β = mean, maps it back to y. Trained in training mode, the
// new BatchNormalization normalizes the conv as in a model trained with one, with its
// weights at unit output scale. The conv's output value keeps its name (the
// BatchNormalization now produces it); the conv writes conv name + "/pre_bn". It returns the
// new node.
func (g *Graph) InsertBatchNorm(n *Node, mean, variance []float64) (*Node, error) {
	const eps = 1e-5
	w := g.Consts[n.Input(1)]
	if n.Op != "Conv" || w == nil || w.DType != Float32 || len(w.Shape) != 4 || len(n.Outputs) != 1 {
		return nil, fmt.Errorf("node %q: not a Conv with a constant 4-D weight", n.Name)
	}
	oc := w.Shape[0]
	if len(mean) != oc || len(variance) != oc || oc == 0 || len(w.F)%oc != 0 {
		return nil, fmt.Errorf("node %q: statistics of %d and %d channels for %d filters", n.Name, len(mean), len(variance), oc)
	}
	var bias *Tensor
	if name := n.Input(2); name != "" {
		if bias = g.Consts[name]; bias == nil || bias.DType != Float32 || len(bias.F) != oc {
			return nil, fmt.Errorf("node %q: bias %q is not a constant of %d floats", n.Name, name, oc)
		}
	}
	consumers := g.Consumers()
	for _, name := range n.Inputs[1:] {
		if name != "" && len(consumers[name]) != 1 {
			return nil, fmt.Errorf("node %q: weight or bias %q is shared with other nodes", n.Name, name)
		}
	}
	per := len(w.F) / oc
	nw := w.Clone()
	var nb *Tensor
	if bias != nil {
		nb = bias.Clone()
	}
	gamma, beta, rmean, rvar := make([]float32, oc), make([]float32, oc), make([]float32, oc), make([]float32, oc)
	for c := 0; c < oc; c++ {
		m, v := mean[c], variance[c]
		if math.IsNaN(m) || math.IsInf(m, 0) || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, fmt.Errorf("node %q: channel %d has statistics mean %v, variance %v", n.Name, c, m, v)
		}
		s := math.Sqrt(v)
		if !(s > 1e-6) {
			s = 1 // a constant channel: nothing to normalize
		}
		for i := c * per; i < (c+1)*per; i++ {
			nw.F[i] = float32(float64(w.F[i]) / s)
		}
		if nb != nil {
			nb.F[c] = float32(float64(bias.F[c]) / s)
		}
		rm, rv := m/s, v/(s*s)
		rmean[c], rvar[c] = float32(rm), float32(rv)
		gamma[c] = float32(s * math.Sqrt(float64(rvar[c])+eps))
		beta[c] = float32(m)
	}
	names := g.valueNames()
	bnName := names.unique(n.Name + BatchNormSuffix)
	params := make([]string, 4)
	for i, t := range []struct {
		suffix string
		v      []float32
	}{{"/scale", gamma}, {"/B", beta}, {"/mean", rmean}, {"/var", rvar}} {
		params[i] = names.unique(bnName + t.suffix)
		g.Consts[params[i]] = NewFloat([]int{oc}, t.v)
	}
	g.Consts[n.Inputs[1]] = nw
	if nb != nil {
		g.Consts[n.Inputs[2]] = nb
	}
	y := n.Outputs[0]
	pre := names.unique(n.Name + "/pre_bn")
	n.Outputs[0] = pre
	bn := &Node{Name: bnName, Op: "BatchNormalization", Inputs: append([]string{pre}, params...), Outputs: []string{y}}
	bn.SetFloat("epsilon", eps)
	bn.SetFloat("momentum", 0.9)
	i := slices.Index(g.Nodes, n)
	g.Nodes = slices.Insert(g.Nodes, i+1, bn)
	if s, ok := g.Shapes[y]; ok {
		g.Shapes[pre] = slices.Clone(s)
	}
	return bn, nil
}
