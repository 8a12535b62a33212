package supernet

import (
	"fmt"
	"slices"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/quant"
)

// Names of what Apply adds for a layer L: the nodes L/QuantWeight and L/QuantAct, their
// outputs L/weight_quant and L/input_quant, the clip constant L/input_clip, and with
// power-of-two scales L/pow2_factors, the BatchNorm factors that choose the weight's grids.
const (
	SuffixQuantWeight = "/QuantWeight"
	SuffixQuantAct    = "/QuantAct"
	SuffixWeightQuant = "/weight_quant"
	SuffixInputQuant  = "/input_quant"
	SuffixInputClip   = "/input_clip"
	SuffixPow2Factors = "/pow2_factors"
)

// Apply returns the training graph of the architecture: the graph pruned to the kept
// filters, every quantized layer's weight read through a QuantWeight (the bits of its kept
// filters) and its input through its own QuantAct, whose clip starts at 1 until calibrated,
// and every channel parameter through a Learned node. Float layers (32 bits) get no
// quantizer. With the space's Pow2Scales the quantizers keep their exported scales powers
// of two (QuantWeight and QuantAct's pow2): a Conv weight followed by a BatchNormalization,
// which export folds into it, is quantized on the grid its folded form will have, a power of
// two chosen (at 2 and 3 bits; finer filters follow the BatchNorm) with factors
// (L/pow2_factors) that start at the BatchNorm's and follow it only while training, so that
// re-estimating its statistics does not change them.
func (r *Resolved) Apply() (*graph.Graph, error) {
	keep := map[*Group][]int{}
	for _, gr := range r.Space.Groups {
		if k := r.GroupKeep(gr); k != nil {
			keep[gr] = k
		}
	}
	g, err := r.Space.Prune(keep)
	if err != nil {
		return nil, err
	}
	byName := map[string]*graph.Node{}
	for _, n := range g.Nodes {
		byName[n.Name] = n
	}
	consumers := g.Consumers()
	var out []*graph.Node
	added := map[*graph.Node][]*graph.Node{}
	for _, l := range r.Space.Layers {
		n := byName[l.Name]
		c := r.Choices[l.Index]
		bits := r.KeptBits(l)
		if slices.ContainsFunc(bits, func(b int) bool { return b != quant.Float }) {
			q := &graph.Node{Name: l.Name + SuffixQuantWeight, Op: OpQuantWeight, Domain: Domain,
				Inputs: []string{n.Inputs[1]}, Outputs: []string{l.Name + SuffixWeightQuant}}
			q.SetInts("bits", toInt64s(bits))
			q.SetInt("axis", int64(l.WAxis))
			if r.Space.Pow2Scales {
				q.SetInt("pow2", 1)
				if cs := consumers[n.Outputs[0]]; n.Op == "Conv" && len(cs) == 1 && cs[0].Op == "BatchNormalization" &&
					!g.IsOutput(n.Outputs[0]) && len(cs[0].Inputs) == 5 {
					bn := cs[0]
					eps, err := bn.Float("epsilon", 1e-5)
					if err != nil {
						return nil, err
					}
					gamma, vr := g.Consts[bn.Inputs[1]], g.Consts[bn.Inputs[4]]
					if gamma == nil || vr == nil || gamma.DType != graph.Float32 || vr.DType != graph.Float32 ||
						len(gamma.F) != len(bits) || len(vr.F) != len(bits) {
						return nil, fmt.Errorf("node %q: scale and variance of BatchNormalization %q are not float constants of one value per filter", n.Name, bn.Name)
					}
					factors := make([]float32, len(bits))
					for c := range factors {
						factors[c] = float32(bnFactor(gamma.F[c], vr.F[c], eps))
					}
					name := l.Name + SuffixPow2Factors
					g.Consts[name] = graph.NewFloat([]int{len(factors)}, factors)
					q.Inputs = append(q.Inputs, bn.Inputs[1], bn.Inputs[4], name)
					q.SetFloat("epsilon", eps)
				}
			}
			n.Inputs[1] = q.Outputs[0]
			added[n] = append(added[n], q)
		}
		if c.ABits != quant.Float {
			clip := l.Name + SuffixInputClip
			g.Consts[clip] = graph.NewFloat([]int{1}, []float32{1})
			q := &graph.Node{Name: l.Name + SuffixQuantAct, Op: OpQuantAct, Domain: Domain,
				Inputs: []string{n.Inputs[0], clip}, Outputs: []string{l.Name + SuffixInputQuant}}
			q.SetInt("bits", int64(c.ABits))
			if l.SignedInput {
				q.SetInt("signed", 1)
			}
			if r.Space.Pow2Scales {
				q.SetInt("pow2", 1)
			}
			n.Inputs[0] = q.Outputs[0]
			added[n] = append(added[n], q)
		}
	}
	for _, n := range g.Nodes {
		out = append(out, added[n]...)
		out = append(out, n)
	}
	g.Nodes = out
	r.Space.learnChannelParams(g)
	if err := g.InferShapes(); err != nil {
		return nil, err
	}
	return g, nil
}

// KeptBits returns the weight bits of layer l's kept filters, in order.
func (r *Resolved) KeptBits(l *Layer) []int {
	c := r.Choices[l.Index]
	if c.Keep == nil {
		return slices.Clone(c.WBits)
	}
	bits := make([]int, len(c.Keep))
	for i, f := range c.Keep {
		bits[i] = c.WBits[f]
	}
	return bits
}

func toInt64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}
