package supernet

import (
	"fmt"
	"math"
	"slices"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/quant"
)

// FoldBatchNorms returns a copy of a training graph (Resolved.Apply) whose BatchNormalizations
// that follow a quantized Conv are folded into its weight and a bias, with every bias of a
// layer whose input and weights are quantized read through a QuantBias: the graph then
// computes what its export computes, integer biases included, and can be trained so. The
// BatchNorms must hold the statistics to fold (re-estimated, in inference form).
func FoldBatchNorms(g *graph.Graph) (*graph.Graph, error) {
	g = g.Clone()
	producers, consumers := g.Producers(), g.Consumers()
	remove := map[*graph.Node]bool{}
	for _, n := range g.Nodes {
		if n.Op != "Conv" {
			continue
		}
		q := producers[n.Input(1)]
		if q == nil || q.Op != OpQuantWeight {
			continue
		}
		cs := consumers[n.Outputs[0]]
		if len(cs) != 1 || cs[0].Op != "BatchNormalization" || g.IsOutput(n.Outputs[0]) {
			continue
		}
		bn := cs[0]
		var p [4]*graph.Tensor
		for i := range p {
			if p[i] = g.Consts[bn.Inputs[i+1]]; p[i] == nil || p[i].DType != graph.Float32 {
				return nil, fmt.Errorf("node %q: BatchNormalization parameter %q is not a float constant", bn.Name, bn.Inputs[i+1])
			}
		}
		eps, err := bn.Float("epsilon", 1e-5)
		if err != nil {
			return nil, err
		}
		w := g.Consts[q.Inputs[0]]
		if w == nil || len(w.Shape) != 4 || w.Shape[0] != len(p[0].F) {
			return nil, fmt.Errorf("node %q: weight %q does not match its BatchNormalization", n.Name, q.Inputs[0])
		}
		oc := w.Shape[0]
		per := len(w.F) / oc
		var b []float32
		if name := n.Input(2); name != "" {
			if b = g.Consts[name].F; len(b) != oc {
				return nil, fmt.Errorf("node %q: bias %q has %d values for %d filters", n.Name, name, len(b), oc)
			}
		}
		nw := w.Clone()
		nb := make([]float32, oc)
		for c := 0; c < oc; c++ {
			a := float64(p[0].F[c]) / math.Sqrt(float64(p[3].F[c])+float64(eps))
			for i := c * per; i < (c+1)*per; i++ {
				nw.F[i] = float32(float64(w.F[i]) * a)
			}
			cb := 0.0
			if b != nil {
				cb = float64(b[c])
			}
			nb[c] = float32((cb-float64(p[2].F[c]))*a + float64(p[1].F[c]))
		}
		g.Consts[q.Inputs[0]] = nw
		if n.Input(2) == "" {
			n.Inputs = append(n.Inputs[:2], n.Name+"/bias")
		}
		g.Consts[n.Inputs[2]] = graph.NewFloat([]int{oc}, nb)
		n.Outputs[0] = bn.Outputs[0]
		remove[bn] = true
	}
	var out []*graph.Node
	for _, n := range g.Nodes {
		if remove[n] {
			continue
		}
		if (n.Op == "Conv" || n.Op == "Gemm") && n.Input(2) != "" {
			qw, qa := producers[n.Input(1)], producers[n.Input(0)]
			if qw != nil && qw.Op == OpQuantWeight && qa != nil && qa.Op == OpQuantAct && g.Consts[n.Inputs[2]] != nil {
				abits, signed, err := actQuantAttrs(qa)
				if err != nil {
					return nil, err
				}
				if abits == quant.Float {
					out = append(out, n)
					continue
				}
				qb := &graph.Node{Name: n.Name + "/QuantBias", Op: OpQuantBias, Domain: Domain,
					Inputs: []string{n.Inputs[2], qw.Inputs[0], qa.Inputs[1]}, Outputs: []string{n.Name + "/bias_quant"}}
				wb, _ := qw.Ints("bits", nil)
				ax, _ := qw.Int("axis", 0)
				qb.SetInts("wbits", wb)
				qb.SetInt("axis", ax)
				qb.SetInt("abits", int64(abits))
				if signed {
					qb.SetInt("signed", 1)
				}
				n.Inputs[2] = qb.Outputs[0]
				out = append(out, qb)
			}
		}
		out = append(out, n)
	}
	g.Nodes = out
	for k := range g.Shapes {
		if !slices.Contains(g.Inputs, k) {
			delete(g.Shapes, k)
		}
	}
	if err := g.RemoveDeadCode(); err != nil {
		return nil, err
	}
	return g, g.InferShapes()
}
