package export

import (
	"fmt"
	"math"
	"slices"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/quant"
	"github.com/qnas/qnas/supernet"
)

// A model's metadata is read back from a file that anyone may have edited, so FromGraph
// checks it in two steps before trusting it: checkLayers, against itself and the graph's
// structure, before anything indexes the graph by it; then Model.check, against the
// values of the canonical QDQ graph (bits against the integers' range, scales, clips,
// axes) and against the architecture document. Errors name the layer.

// layerError is a contradiction in one layer's metadata.
func layerError(l LayerInfo, format string, args ...any) error {
	return fmt.Errorf("metadata of layer %q: %s", l.Name, fmt.Sprintf(format, args...))
}

// graphError is a contradiction between one layer's metadata and the graph's values.
func graphError(l LayerInfo, format string, args ...any) error {
	return fmt.Errorf("layer %q: %s", l.Name, fmt.Sprintf(format, args...))
}

// checkLayers checks the layers' metadata on its own and against the graph's nodes and
// weight shapes.
func checkLayers(g *graph.Graph, layers []LayerInfo) error {
	if len(layers) == 0 {
		return fmt.Errorf("metadata %s lists no layers", MetaLayers)
	}
	nodes := map[string]*graph.Node{}
	for _, n := range g.Nodes {
		nodes[n.Name] = n
	}
	seen := map[string]bool{}
	producers := g.Producers()
	for _, l := range layers {
		if seen[l.Name] {
			return layerError(l, "listed twice")
		}
		seen[l.Name] = true
		n := nodes[l.Name]
		if n == nil {
			return fmt.Errorf("metadata names layer %q, which the graph lacks", l.Name)
		}
		if l.Op != n.Op || len(n.Inputs) < 2 {
			return layerError(l, "op %q, but the node is a %s with %d inputs", l.Op, n.Op, len(n.Inputs))
		}
		if err := checkBits(l); err != nil {
			return err
		}
		w := g.Consts[n.Inputs[1]]
		if p := producers[n.Inputs[1]]; p != nil && (p.Op == "DequantizeLinear" || p.Op == "Quant") {
			w = g.Consts[p.Inputs[0]]
		}
		if w == nil {
			return layerError(l, "its weight %q is not a constant", n.Inputs[1])
		}
		if l.WAxis < 0 || l.WAxis >= len(w.Shape) || l.WAxis > 1 || l.WAxis == 1 && (len(w.Shape) != 2 || n.Op == "Conv") {
			return layerError(l, "w_axis %d does not fit its %s weight of shape %v", l.WAxis, n.Op, w.Shape)
		}
		if w.Shape[l.WAxis] != len(l.WBits) {
			return layerError(l, "wbits has %d values, its weight %d filters along axis %d", len(l.WBits), w.Shape[l.WAxis], l.WAxis)
		}
	}
	return nil
}

// checkBits checks a layer's bits, filter counts, kept filters and clip on their own.
func checkBits(l LayerInfo) error {
	if l.Filters < 1 {
		return layerError(l, "filters %d: want at least 1", l.Filters)
	}
	if len(l.WBits) == 0 || len(l.WBits) > l.Filters {
		return layerError(l, "wbits has %d values for %d filters", len(l.WBits), l.Filters)
	}
	for _, b := range l.WBits {
		if !quant.ValidBits(b) {
			return layerError(l, "wbits %d: want %d..%d, or %d for float", b, quant.MinBits, quant.MaxBits, quant.Float)
		}
	}
	float := l.WBits[0] == quant.Float
	if slices.ContainsFunc(l.WBits, func(b int) bool { return (b == quant.Float) != float }) {
		return layerError(l, "wbits mixes float (32) with integer bitwidths")
	}
	if float && l.Weight != "" {
		return layerError(l, "wbits are float (32), but its weight %q is stored as integers", l.Weight)
	}
	if !float && l.Weight == "" {
		return layerError(l, "wbits %v, but it names no integer weight", l.WBits)
	}
	if l.Kept == nil && len(l.WBits) != l.Filters {
		return layerError(l, "wbits has %d values for %d filters, and no kept filters are listed", len(l.WBits), l.Filters)
	}
	if l.Kept != nil {
		if len(l.Kept) != len(l.WBits) {
			return layerError(l, "keeps %d filters but wbits has %d values", len(l.Kept), len(l.WBits))
		}
		for i, k := range l.Kept {
			if k < 0 || k >= l.Filters || i > 0 && k <= l.Kept[i-1] {
				return layerError(l, "kept filters must be ascending indices in 0..%d, got %d at position %d", l.Filters-1, k, i)
			}
		}
	}
	if !quant.ValidBits(l.ABits) {
		return layerError(l, "abits %d: want %d..%d, or %d for float", l.ABits, quant.MinBits, quant.MaxBits, quant.Float)
	}
	if l.ABits != quant.Float && !(l.AClip > 0 && !math.IsInf(float64(l.AClip), 0)) {
		return layerError(l, "a_clip %g: want a positive finite clip", l.AClip)
	}
	return nil
}

// check verifies every layer against the values of the canonical QDQ graph, and the
// architecture document against the layers.
func (m *Model) check() error {
	g := m.Graph
	producers := g.Producers()
	nodes := map[string]*graph.Node{}
	for _, n := range g.Nodes {
		nodes[n.Name] = n
	}
	for _, l := range m.Layers {
		n := nodes[l.Name]
		if n == nil {
			return fmt.Errorf("metadata names layer %q, which the graph lacks", l.Name)
		}
		if l.Weight != "" {
			if err := checkWeight(g, producers[n.Input(1)], l); err != nil {
				return err
			}
		}
		if n.Inputs[0] != l.Input {
			return graphError(l, "reads %q, but the node reads %q", l.Input, n.Inputs[0])
		}
		if l.ABits != quant.Float {
			if err := checkInput(g, producers, l); err != nil {
				return err
			}
		}
		if b := producers[n.Input(2)]; b != nil && b.Op == "DequantizeLinear" {
			p, err := g.QDQ(b)
			if err != nil {
				return graphError(l, "bias: %v", err)
			}
			if err := positiveFinite(p.Scale); err != nil {
				return graphError(l, "bias scale %q %v", b.Inputs[1], err)
			}
		}
	}
	return m.checkArch()
}

// checkWeight checks a quantized layer's weight: integers read through a DequantizeLinear
// along w_axis with one finite positive scale and a zero point of 0 per filter, each
// filter's integers inside the symmetric range of its bits.
func checkWeight(g *graph.Graph, dq *graph.Node, l LayerInfo) error {
	w := g.Consts[l.Weight]
	if dq == nil || dq.Op != "DequantizeLinear" || dq.Inputs[0] != l.Weight || w == nil {
		return graphError(l, "weight %q is not read through a DequantizeLinear", l.Weight)
	}
	if w.DType != graph.Int8 {
		return graphError(l, "weight %q is %s, not int8", l.Weight, w.DType)
	}
	p, err := g.QDQ(dq)
	if err != nil {
		return graphError(l, "weight: %v", err)
	}
	if len(p.Scale) != len(l.WBits) || len(p.Scale) > 1 && p.Axis != l.WAxis {
		return graphError(l, "weight scale has %d values along axis %d, wbits %d along w_axis %d", len(p.Scale), p.Axis, len(l.WBits), l.WAxis)
	}
	if err := positiveFinite(p.Scale); err != nil {
		return graphError(l, "weight scale %q %v", dq.Inputs[1], err)
	}
	if slices.ContainsFunc(p.Zero, func(z int64) bool { return z != 0 }) {
		return graphError(l, "weight zero point %q is not 0", dq.Input(2))
	}
	rows := filterRows(&graph.Tensor{Shape: w.Shape, F: make([]float32, len(w.I))}, l.WAxis)
	for c, b := range l.WBits {
		hi := int64(quant.WeightMax(b))
		for _, i := range rows(c) {
			if v := w.I[i]; v < -hi || v > hi {
				return graphError(l, "filter %d holds the integer %d, outside the %d-bit range ±%d its wbits give", c, v, b, hi)
			}
		}
	}
	return nil
}

// checkInput checks a quantized layer's input: Clip → QuantizeLinear → DequantizeLinear
// with the clip, grid and signedness the metadata gives.
func checkInput(g *graph.Graph, producers map[string]*graph.Node, l LayerInfo) error {
	dq := producers[l.Input]
	var q, clip *graph.Node
	if dq != nil && dq.Op == "DequantizeLinear" {
		q = producers[dq.Inputs[0]]
	}
	if q != nil && q.Op == "QuantizeLinear" {
		clip = producers[q.Inputs[0]]
	}
	if clip == nil || clip.Op != "Clip" {
		return graphError(l, "its input is not quantized by Clip → QuantizeLinear → DequantizeLinear")
	}
	want := quant.ActScale(l.AClip, l.ABits, l.ASigned)
	zt := graph.Uint8
	if l.ASigned {
		zt = graph.Int8
	}
	for _, n := range []*graph.Node{q, dq} {
		p, err := g.QDQ(n)
		if err != nil {
			return graphError(l, "input: %v", err)
		}
		if len(p.Scale) != 1 || !closeTo(p.Scale[0], want) || p.Zero[0] != 0 || p.Type != zt {
			return graphError(l, "input %s %q: scale %v, zero point %v %s; %d-bit %s with clip %g means scale %g, zero point 0 %s",
				n.Op, n.Name, p.Scale, p.Zero, p.Type, l.ABits, signedness(l.ASigned), l.AClip, want, zt)
		}
	}
	lo, hi, err := g.ClipBoundsOf(clip)
	if err != nil {
		return graphError(l, "input clip: %v", err)
	}
	wantLo := float32(0)
	if l.ASigned {
		wantLo = -l.AClip
	}
	if !closeTo(hi, l.AClip) || !closeTo(lo, wantLo) {
		return graphError(l, "input clip %q is [%g, %g], the metadata says [%g, %g]", clip.Name, lo, hi, wantLo, l.AClip)
	}
	return nil
}

func signedness(signed bool) string {
	if signed {
		return "signed"
	}
	return "unsigned"
}

// positiveFinite returns an error saying which value is not a positive finite number.
func positiveFinite(v []float32) error {
	for i, x := range v {
		if !(x > 0) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("holds %g at %d; scales must be positive and finite", x, i)
		}
	}
	return nil
}

// closeTo compares two float32 values as the same number written twice: equal within a
// relative 1e-6.
func closeTo(a, b float32) bool {
	return math.Abs(float64(a)-float64(b)) <= 1e-6*math.Max(math.Abs(float64(a)), math.Abs(float64(b)))
}

// checkArch checks that the architecture document parses and says, of every layer, what
// the layers' metadata says.
func (m *Model) checkArch() error {
	a, err := supernet.ParseArch(m.Arch)
	if err != nil {
		return fmt.Errorf("metadata %s: %v", MetaArch, err)
	}
	listed := map[string]bool{}
	for _, l := range m.Layers {
		listed[l.Name] = true
		spec, ok := a.Layers[l.Name]
		if !ok && a.Default == nil {
			return fmt.Errorf("metadata %s does not list layer %q", MetaArch, l.Name)
		}
		if !ok {
			spec = *a.Default
		}
		wb, ab := spec.WBits, spec.ABits
		if wb == nil && a.Default != nil {
			wb = a.Default.WBits
		}
		if ab == 0 && a.Default != nil {
			ab = a.Default.ABits
		}
		if ab != l.ABits {
			return fmt.Errorf("metadata %s gives layer %q %d-bit inputs, %s %d", MetaArch, l.Name, ab, MetaLayers, l.ABits)
		}
		if len(wb) == 0 || l.Filters%len(wb) != 0 {
			return fmt.Errorf("metadata %s gives layer %q %d weight bitwidths for its %d filters", MetaArch, l.Name, len(wb), l.Filters)
		}
		kept := l.Kept
		if kept == nil {
			kept = make([]int, l.Filters)
			for i := range kept {
				kept[i] = i
			}
		}
		var archKept []int
		if spec.Keep != nil {
			archKept = slices.Sorted(slices.Values(spec.Keep.Indices))
			if archKept == nil && spec.Keep.Count != len(kept) {
				return fmt.Errorf("metadata %s keeps %d filters of layer %q, %s %d", MetaArch, spec.Keep.Count, l.Name, MetaLayers, len(kept))
			}
		}
		if archKept != nil && !slices.Equal(archKept, l.Kept) || archKept == nil && spec.Keep == nil && l.Kept != nil {
			return fmt.Errorf("metadata %s and %s keep different filters of layer %q", MetaArch, MetaLayers, l.Name)
		}
		per := l.Filters / len(wb)
		for i, f := range kept {
			if wb[f/per] != l.WBits[i] {
				return fmt.Errorf("metadata %s gives filter %d of layer %q %d-bit weights, %s %d", MetaArch, f, l.Name, wb[f/per], MetaLayers, l.WBits[i])
			}
		}
	}
	for name := range a.Layers {
		if !listed[name] {
			return fmt.Errorf("metadata %s lists layer %q, which %s lacks", MetaArch, name, MetaLayers)
		}
	}
	return nil
}

// checkQuant checks a QONNX Quant node against the metadata: its bitwidths (one, or one
// per filter) are bits, its scales are scale (weights: finite and positive; an input's:
// the one its clip gives), its zero points 0, and it is signed and narrow exactly when
// signed (weights always are).
func checkQuant(g *graph.Graph, q *graph.Node, bits []int, scale []float32, signed bool) error {
	s, z, b := g.Consts[q.Inputs[1]], g.Consts[q.Inputs[2]], g.Consts[q.Inputs[3]]
	if s == nil || z == nil || b == nil || s.DType != graph.Float32 || z.DType != graph.Float32 || b.DType != graph.Float32 {
		return fmt.Errorf("Quant %q: scale, zero point and bitwidth must be float constants", q.Name)
	}
	if err := positiveFinite(s.F); err != nil {
		return fmt.Errorf("Quant %q scale %v", q.Name, err)
	}
	if s.Len() != len(scale) || len(scale) == 1 && !closeTo(s.F[0], scale[0]) {
		return fmt.Errorf("Quant %q: scale %v, the metadata gives %v", q.Name, s.F, scale)
	}
	if slices.ContainsFunc(z.F, func(v float32) bool { return v != 0 }) {
		return fmt.Errorf("Quant %q: zero point is not 0", q.Name)
	}
	if b.Len() != 1 && b.Len() != len(bits) {
		return fmt.Errorf("Quant %q: %d bitwidths for %d filters", q.Name, b.Len(), len(bits))
	}
	for i, want := range bits {
		if got := b.F[min(i, b.Len()-1)]; got != float32(want) {
			return fmt.Errorf("Quant %q: bitwidth %g where the metadata gives %d", q.Name, got, want)
		}
	}
	sg, err := q.Int("signed", 1)
	if err != nil {
		return err
	}
	nw, err := q.Int("narrow", 0)
	if err != nil {
		return err
	}
	if (sg != 0) != signed || (nw != 0) != signed {
		return fmt.Errorf("Quant %q: signed=%d narrow=%d, the metadata gives a %s grid", q.Name, sg, nw, signedness(signed))
	}
	return nil
}
