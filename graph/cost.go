package graph

// LayerCost is the per-sample cost of one node.
type LayerCost struct {
	MACs int64 // multiply-accumulates per sample (design.md §2)
}

// Layer is one row of a model's cost table: a node that has learnable parameters or MACs.
type Layer struct {
	Name        string
	Op          string
	OutputShape Shape
	Params      int64 // elements of the node's constant weight inputs (weights, biases, BN scale and shift)
	MACs        int64 // per sample
}

// BOPs returns the layer's bit operations per sample at weight bits wb and activation bits ab:
// MACs·wb·ab (saturating at math.MaxInt64).
func (l Layer) BOPs(wb, ab int) int64 { return satMul(l.MACs, int64(wb)*int64(ab)) }

// Layers returns the cost table: every node with learnable parameters or MACs, in graph
// order. The graph's shapes must be inferred.
func (g *Graph) Layers() []Layer {
	var out []Layer
	seen := map[string]bool{} // a weight shared by several nodes counts once
	producers := g.Producers()
	for _, n := range g.Nodes {
		d, ok := LookupNode(n)
		if !ok || (d.Cost == nil && len(d.Weights) == 0) {
			continue
		}
		c := g.ctx(n)
		l := Layer{Name: n.Name, Op: n.Op, OutputShape: g.Shapes[n.Outputs[0]]}
		for _, i := range d.Weights {
			if i >= len(n.Inputs) {
				continue
			}
			name, t := n.Inputs[i], c.Const[i]
			if t == nil { // a quantized weight: the integers a DequantizeLinear (or QONNX Quant) reads
				if dq := producers[name]; dq != nil && (dq.Op == "DequantizeLinear" || dq.Op == "Quant") {
					name, t = dq.Inputs[0], g.Consts[dq.Inputs[0]]
				}
			}
			if t != nil && !seen[name] && t.DType != Int64 { // float or quantized, not a shape vector
				seen[name] = true
				l.Params += int64(t.Len())
			}
		}
		if d.Cost != nil && l.OutputShape != nil {
			outs := make([]Shape, len(n.Outputs))
			for i, o := range n.Outputs {
				outs[i] = g.Shapes[o]
			}
			l.MACs = d.Cost(c, outs).MACs
		}
		out = append(out, l)
	}
	return out
}

// Totals sums params and MACs over layers.
func Totals(ls []Layer) (params, macs int64) {
	for _, l := range ls {
		params, macs = satAdd(params, l.Params), satAdd(macs, l.MACs)
	}
	return params, macs
}
