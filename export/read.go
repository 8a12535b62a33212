package export

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/quant"
)

// ErrNotQNAS is returned (wrapped) by Read for a model qnas did not write.
var ErrNotQNAS = fmt.Errorf("not a model qnas wrote (no %s metadata)", MetaLayers)

// Read reads back a model qnas wrote, in any format (QDQ, packed QDQ, QONNX), from the file
// alone, into its canonical QDQ form. Errors name the file.
func Read(path string, opts graph.ImportOptions) (*Model, error) {
	g, err := graph.Load(path, opts)
	if err != nil {
		return nil, err
	}
	m, err := FromGraph(g)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// FromGraph recovers the Model of an imported graph of a model qnas wrote.
func FromGraph(g *graph.Graph) (*Model, error) {
	raw, ok := g.Meta[MetaLayers]
	if !ok {
		return nil, ErrNotQNAS
	}
	arch, ok := g.Meta[MetaArch]
	if !ok {
		return nil, fmt.Errorf("metadata %s is missing", MetaArch)
	}
	m := &Model{Graph: g, Arch: []byte(arch + "\n")}
	if err := json.Unmarshal([]byte(raw), &m.Layers); err != nil {
		return nil, fmt.Errorf("metadata %s: %v", MetaLayers, err)
	}
	if err := checkLayers(g, m.Layers); err != nil {
		return nil, err
	}
	for _, k := range []string{MetaLayers, MetaArch, MetaFormat} {
		delete(g.Meta, k)
	}
	if err := fromQONNX(g, m.Layers); err != nil {
		return nil, err
	}
	for _, l := range m.Layers { // unpack 4-bit containers
		if w := g.Consts[l.Weight]; w != nil && w.DType == graph.Int4 {
			w.DType = graph.Int8
			for _, n := range g.Nodes {
				if n.Op == "DequantizeLinear" && n.Inputs[0] == l.Weight && len(n.Inputs) > 2 {
					if z := g.Consts[n.Inputs[2]]; z != nil {
						z.DType = graph.Int8
					}
				}
			}
		}
	}
	if v, ok := g.Meta[MetaOpset]; ok { // a packed model was raised to opset 21
		var o int
		if _, err := fmt.Sscan(v, &o); err != nil || o < 13 || o > g.Opset {
			return nil, fmt.Errorf("metadata %s = %q: want an opset from 13 to %d", MetaOpset, v, g.Opset)
		}
		g.Opset = o
		delete(g.Meta, MetaOpset)
	}
	return m, m.check()
}

// fromQONNX rewrites the Quant nodes of the layers' weights and inputs into the canonical
// QDQ form in place (the inverse of toQONNX); a graph without them is left alone.
func fromQONNX(g *graph.Graph, layers []LayerInfo) error {
	producers := g.Producers()
	replace := map[*graph.Node][]*graph.Node{}
	// The names the QDQ form gives must be free: not a value of the model (but those of the
	// Quant it replaces), nor one given to another layer.
	used := map[string]bool{}
	for k := range g.Consts {
		used[k] = true
	}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			used[o] = true
		}
	}
	for _, in := range g.Inputs {
		used[in] = true
	}
	claim := func(l LayerInfo, replaced []string, names ...string) error {
		for _, n := range names {
			if used[n] && !slices.Contains(replaced, n) {
				return graphError(l, "its QDQ form would name a value %q, which the model already has", n)
			}
		}
		for _, n := range names {
			used[n] = true
		}
		return nil
	}
	for _, l := range layers {
		var layer *graph.Node
		for _, n := range g.Nodes {
			if n.Name == l.Name {
				layer = n
			}
		}
		if layer == nil {
			continue // check reports it
		}
		if q := producers[layer.Input(1)]; l.Weight != "" && q != nil && q.Op == "Quant" {
			w, scale := g.Consts[q.Inputs[0]], g.Consts[q.Inputs[1]]
			if w == nil || scale == nil || w.DType != graph.Float32 || len(w.Shape) < 2 || scale.Len() != w.Shape[l.WAxis] {
				return fmt.Errorf("layer %q: Quant %q does not hold a per-channel weight", l.Name, q.Name)
			}
			if err := checkQuant(g, q, l.WBits, scale.F, true); err != nil {
				return graphError(l, "weight %v", err)
			}
			ints := make([]int64, len(w.F))
			rows := filterRows(w, l.WAxis)
			for c := 0; c < scale.Len(); c++ {
				hi := float32(quant.WeightMax(l.WBits[c]))
				for _, i := range rows(c) {
					if v := w.F[i] / scale.F[c]; !(v >= -hi-0.5 && v <= hi+0.5) {
						return graphError(l, "filter %d holds %g·scale, outside the %d-bit range ±%g its wbits give", c, v, l.WBits[c], hi)
					}
					ints[i] = int64(quant.Quantize(w.F[i], scale.F[c], -hi, hi))
				}
			}
			base := q.Inputs[0]
			if l.Weight != base+sufQuantized {
				return graphError(l, "weight %q, but its Quant reads %q (the weight is %q)", l.Weight, base, base+sufQuantized)
			}
			if err := claim(l, q.Inputs, l.Weight, base+sufScale, base+sufZero, base+sufDQ+sufOutput); err != nil {
				return err
			}
			for _, in := range q.Inputs {
				delete(g.Consts, in)
			}
			g.Consts[l.Weight] = graph.NewInts(graph.Int8, w.Shape, ints)
			g.Consts[base+sufScale] = graph.NewFloat([]int{scale.Len()}, scale.F)
			g.Consts[base+sufZero] = graph.NewInts(graph.Int8, []int{scale.Len()}, make([]int64, scale.Len()))
			dq := &graph.Node{Name: base + sufDQ, Op: "DequantizeLinear",
				Inputs: []string{l.Weight, base + sufScale, base + sufZero}, Outputs: []string{base + sufDQ + sufOutput}}
			dq.SetInt("axis", int64(l.WAxis))
			layer.Inputs[1] = dq.Outputs[0]
			replace[q] = []*graph.Node{dq}
		}
		if q := producers[layer.Input(0)]; l.ABits != quant.Float && q != nil && q.Op == "Quant" {
			if err := checkQuant(g, q, []int{l.ABits}, []float32{quant.ActScale(l.AClip, l.ABits, l.ASigned)}, l.ASigned); err != nil {
				return graphError(l, "input %v", err)
			}
			x, base := q.Inputs[0], l.Name+"/input"
			if err := claim(l, q.Inputs[1:], base+"_clip_min", base+"_clip_max", base+sufScale, base+sufZero, base+"_Clip"+sufOutput,
				base+sufQ+sufOutput, base+sufDQ+sufOutput); err != nil {
				return err
			}
			for _, in := range q.Inputs[1:] {
				delete(g.Consts, in)
			}
			nodes := actQDQ(g, base, x, l.AClip, l.ABits, l.ASigned)
			layer.Inputs[0] = nodes[len(nodes)-1].Outputs[0]
			replace[q] = nodes
		}
	}
	if len(replace) == 0 {
		return nil
	}
	var out []*graph.Node
	for _, n := range g.Nodes {
		if r, ok := replace[n]; ok {
			out = append(out, r...)
			continue
		}
		out = append(out, n)
	}
	return g.Rebuild(out)
}

// StoredBytes returns the bytes a constant takes in an ONNX file's raw data.
func StoredBytes(t *graph.Tensor) int64 {
	n := int64(t.Len())
	switch t.DType {
	case graph.Int8, graph.Uint8:
		return n
	case graph.Int4, graph.Uint4:
		return (n + 1) / 2
	case graph.Int64:
		return 8 * n
	}
	return 4 * n
}

// WeightBytes returns, per node that has weights (by name), the bytes its weight and bias
// take as stored: the constants it reads directly, or through a DequantizeLinear or a QONNX
// Quant (integers at their container width, scales, zero points and bit widths included).
func WeightBytes(g *graph.Graph) map[string]int64 {
	producers := g.Producers()
	out := map[string]int64{}
	for _, n := range g.Nodes {
		d, ok := graph.LookupNode(n)
		if !ok || len(d.Weights) == 0 {
			continue
		}
		var total int64
		for _, i := range d.Weights {
			in := n.Input(i)
			if t := g.Consts[in]; t != nil {
				total += StoredBytes(t)
				continue
			}
			if p := producers[in]; p != nil && (p.Op == "DequantizeLinear" || p.Op == "Quant") {
				if g.Consts[p.Inputs[0]] == nil {
					continue // an activation, not a weight
				}
				for _, c := range p.Inputs {
					if t := g.Consts[c]; t != nil {
						total += StoredBytes(t)
					}
				}
			}
		}
		out[n.Name] = total
	}
	return out
}
