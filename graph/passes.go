package graph

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Pass is one named transformation of a graph.
type Pass struct {
	Name string
	Doc  string
	Run  func(*Graph) error
}

// Passes is the table of graph passes, in the order Canonicalize runs them: check-finite
// (refuse NaN or ±Inf weights, naming the node), fold-constants, remove-identity,
// dead-code, fold-layernorm, fold-gelu, fold-scale, canonical-reshape, fold-bn (only with
// CanonicalOptions.FoldBN) and infer-shapes.
var Passes = []Pass{
	{"check-finite", "refuse NaN or ±Inf in float constants and attributes, naming the node and the value", (*Graph).CheckFinite},
	{"fold-constants", "evaluate nodes whose inputs are all constant (Constant, shape chains, …)", (*Graph).FoldConstants},
	{"remove-identity", "drop Identity, inference Dropout and float-to-float Cast", (*Graph).RemoveIdentity},
	{"dead-code", "drop nodes and constants no output depends on", (*Graph).RemoveDeadCode},
	{"fold-layernorm", "replace the opset-13 LayerNorm decomposition (ReduceMean, Sub, Pow, Sqrt, Div, Mul, Add) by LayerNormalization", (*Graph).FoldLayerNorm},
	{"fold-gelu", "replace GELU's erf form x·(1 + erf(x/√2))/2 by Gelu", (*Graph).FoldGelu},
	{"fold-scale", "fold a Mul by a per-channel constant (a layer scale) into the Conv, Gemm or MatMul before it", (*Graph).FoldScale},
	{"canonical-reshape", "rewrite Reshape targets as [-1, per-sample dims…] when they keep the batch first", (*Graph).CanonicalReshape},
	{"fold-bn", "fold inference BatchNormalization into the preceding Conv (optional)", (*Graph).FoldBatchNorm},
	{"infer-shapes", "infer every value's shape and check every node", (*Graph).InferShapes},
}

// PassNames lists the names in Passes.
func PassNames() []string {
	var names []string
	for _, p := range Passes {
		names = append(names, p.Name)
	}
	return names
}

// CanonicalOptions selects the optional passes of Canonicalize.
type CanonicalOptions struct {
	FoldBN    bool                        // fold BatchNormalization into Conv
	DumpAfter string                      // pass name after which Dump is called
	Dump      func(pass string, g *Graph) // called after DumpAfter ("*" : after every pass)
}

// Canonicalize runs the pass table on g: non-finite weights refused, constants folded,
// identities removed, dead code dropped, shapes inferred, and BatchNorm kept unless
// opts.FoldBN.
func (g *Graph) Canonicalize(opts CanonicalOptions) error {
	if opts.DumpAfter != "" && opts.DumpAfter != "*" && !slices.Contains(PassNames(), opts.DumpAfter) {
		return fmt.Errorf("no pass named %q (passes: %s)", opts.DumpAfter, strings.Join(PassNames(), ", "))
	}
	for _, p := range Passes {
		if p.Name == "fold-bn" && !opts.FoldBN {
			continue
		}
		if err := p.Run(g); err != nil {
			return err
		}
		if opts.Dump != nil && (opts.DumpAfter == p.Name || opts.DumpAfter == "*") {
			opts.Dump(p.Name, g)
		}
	}
	return nil
}

// InferShapes computes the shape of every node output in order, checking each node against
// its op's rules.
func (g *Graph) InferShapes() error {
	for _, n := range g.Nodes {
		if err := g.inferNode(n); err != nil {
			return err
		}
	}
	for _, o := range g.Outputs {
		if _, ok := g.Shapes[o]; !ok {
			if _, c := g.Consts[o]; !c {
				return fmt.Errorf("graph output %q has no inferred shape", o)
			}
		}
	}
	return nil
}

func (g *Graph) inferNode(n *Node) error {
	d, ok := LookupNode(n)
	if !ok {
		return &UnsupportedError{Node: n.Name, Op: n.Op, Domain: n.Domain}
	}
	if err := checkArity(d, n); err != nil {
		return err
	}
	c := g.ctx(n)
	for i, in := range n.Inputs {
		if in != "" && c.In[i] == nil {
			return &NodeError{n.Name, n.Op, fmt.Sprintf("shape of input %q is unknown", in)}
		}
	}
	if err := checkFloatInputs(c); err != nil {
		return err
	}
	shapes, err := d.Infer(c)
	if err != nil {
		return err
	}
	if len(shapes) != len(n.Outputs) {
		return &NodeError{n.Name, n.Op, fmt.Sprintf("shape rule gave %d shapes for %d outputs", len(shapes), len(n.Outputs))}
	}
	for i, o := range n.Outputs {
		if o == "" || shapes[i] == nil {
			continue
		}
		for _, dim := range shapes[i] {
			if dim < 0 && dim != Batch {
				return &NodeError{n.Name, n.Op, fmt.Sprintf("output %q has the invalid shape %v", o, []int(shapes[i]))}
			}
		}
		if _, err := checkedElems(shapes[i].PerSample(), g.limits().MaxActivationElems); err != nil {
			return &NodeError{n.Name, n.Op, fmt.Sprintf("output %q: %v", o, err)}
		}
		g.Shapes[o] = shapes[i]
	}
	return nil
}

// FoldConstants infers shapes in order and evaluates every node whose inputs are all
// constant (or, for Shape, whose input shape is known), replacing it by its outputs. A node
// whose outputs would exceed Limits.MaxConstFoldElems, or the rest of the run's
// Limits.MaxConstFoldTotal, stays in the graph unfolded.
func (g *Graph) FoldConstants() error {
	lim := g.limits()
	budget := lim.MaxConstFoldTotal
	kept := g.Nodes[:0:0]
	for _, n := range g.Nodes {
		if err := g.inferNode(n); err != nil {
			return err
		}
		d, _ := LookupNode(n)
		if d.Eval == nil || !g.foldable(n, d) {
			kept = append(kept, n)
			continue
		}
		{
			// Every named output needs a known, small enough shape: folding is bounded by
			// the shapes, so a node without one (or writing only "") is not folded.
			var size int64
			named := false
			for _, o := range n.Outputs {
				if o == "" {
					continue
				}
				named = true
				s, ok := g.Shapes[o]
				e, err := checkedElems(s, lim.MaxConstFoldElems)
				if !ok || slices.Contains(s, Batch) || err != nil || e > budget-size {
					kept = append(kept, n) // folding would create a batch-sized or huge constant
					goto next
				}
				size += e
			}
			if !named {
				kept = append(kept, n)
				goto next
			}
			budget -= size
		}
		{
			vals, err := d.Eval(g.ctx(n))
			if err != nil {
				return err
			}
			for i, o := range n.Outputs {
				if o == "" || i >= len(vals) {
					continue
				}
				g.Consts[o] = vals[i]
				delete(g.Shapes, o)
			}
		}
	next:
	}
	g.Nodes = kept
	return nil
}

func (g *Graph) foldable(n *Node, d *OpDef) bool {
	if d.FoldsOnShape {
		return true
	}
	for _, in := range n.Inputs {
		if in == "" {
			continue
		}
		if _, ok := g.Consts[in]; !ok {
			return false
		}
	}
	return true
}

// RemoveIdentity drops Identity, Dropout (whose mask output is unused) and Cast to float on
// activations, wiring their readers to their input. An identity that produces a graph output
// is dropped by renaming its input at the producer, so output names survive.
func (g *Graph) RemoveIdentity() error {
	isIdentity := func(n *Node) bool {
		return n.Op == "Identity" ||
			(n.Op == "Dropout" && (len(n.Outputs) < 2 || n.Outputs[1] == "")) ||
			(n.Op == "Cast" && n.Attrs["to"] != nil && n.Attrs["to"].I == 1)
	}
	kept := g.Nodes[:0:0]
	rename := map[string]string{}
	isOutput := g.outputSet()
	for _, n := range g.Nodes {
		for i, in := range n.Inputs {
			if r, ok := rename[in]; ok {
				n.Inputs[i] = r
			}
		}
		if isIdentity(n) && n.Outputs[0] != "" && !isOutput[n.Outputs[0]] {
			rename[n.Outputs[0]] = n.Inputs[0]
			delete(g.Shapes, n.Outputs[0])
			continue
		}
		kept = append(kept, n)
	}
	g.Nodes = kept
	producers, consumers := g.Producers(), g.Consumers()
	kept = g.Nodes[:0:0]
	for _, n := range g.Nodes {
		in, out := n.Input(0), n.Outputs[0]
		p := producers[in]
		if !isIdentity(n) || p == nil || out == "" || isOutput[in] || len(consumers[in]) != 1 {
			kept = append(kept, n)
			continue
		}
		for i, o := range p.Outputs {
			if o == in {
				p.Outputs[i] = out
			}
		}
		g.Shapes[out] = g.Shapes[in]
		delete(g.Shapes, in)
	}
	g.Nodes = kept
	return nil
}

// Rebuild makes nodes the graph's nodes and infers every shape anew (the inputs' are kept)
// after dropping what no output needs: the last step of a pass that rewrites nodes.
func (g *Graph) Rebuild(nodes []*Node) error {
	g.Nodes = nodes
	for k := range g.Shapes {
		if !slices.Contains(g.Inputs, k) {
			delete(g.Shapes, k)
		}
	}
	if err := g.RemoveDeadCode(); err != nil {
		return err
	}
	return g.InferShapes()
}

// RemoveDeadCode drops nodes whose outputs reach no graph output, and unused constants.
func (g *Graph) RemoveDeadCode() error {
	live := map[string]bool{}
	for _, o := range g.Outputs {
		live[o] = true
	}
	keep := make([]bool, len(g.Nodes))
	for i := len(g.Nodes) - 1; i >= 0; i-- {
		n := g.Nodes[i]
		for _, o := range n.Outputs {
			if o != "" && live[o] {
				keep[i] = true
			}
		}
		if keep[i] {
			for _, in := range n.Inputs {
				if in != "" { // "" is an omitted input, not a value
					live[in] = true
				}
			}
		}
	}
	kept := g.Nodes[:0:0]
	for i, n := range g.Nodes {
		if keep[i] {
			kept = append(kept, n)
		} else {
			for _, o := range n.Outputs {
				delete(g.Shapes, o)
			}
		}
	}
	g.Nodes = kept
	for name := range g.Consts {
		if !live[name] {
			delete(g.Consts, name)
		}
	}
	return nil
}

// CanonicalReshape rewrites the target of every Reshape whose input and output both start
// with the batch as [-1, per-sample dims…], so the graph runs at any batch size.
func (g *Graph) CanonicalReshape() error {
	var names *valueNames // built on first use
	for _, n := range g.Nodes {
		if n.Op != "Reshape" {
			continue
		}
		in, out := g.Shapes[n.Inputs[0]], g.Shapes[n.Outputs[0]]
		if len(in) == 0 || len(out) == 0 || in[0] != Batch || out[0] != Batch || slices.Contains(out[1:], Batch) {
			continue
		}
		target := []int64{-1}
		for _, d := range out[1:] {
			target = append(target, int64(d))
		}
		if old := g.Consts[n.Inputs[1]]; old != nil && old.DType == Int64 && slices.Equal(old.I, target) {
			continue
		}
		if names == nil {
			names = g.valueNames()
		}
		name := names.unique(n.Name + "/shape")
		g.Consts[name] = NewInt([]int{len(target)}, target)
		n.Inputs[1] = name
		delete(n.Attrs, "allowzero")
	}
	return g.RemoveDeadCode()
}

// FoldBatchNormInto folds BatchNormalization bn, the only reader of conv's output, into
// conv, whose filters (along axis 0) are the float constant weight: conv's input 1, or the
// input of an op that reads it for conv. The weight and the conv's bias (added if it had
// none) become new constants of their names, W·γ/√(σ²+ε) and (b − μ)·γ/√(σ²+ε) + β, and conv
// writes bn's output. The caller removes bn from g.Nodes.
func (g *Graph) FoldBatchNormInto(conv, bn *Node, weight string) error {
	var p [4]*Tensor
	for i := range p {
		if p[i] = g.Consts[bn.Input(i+1)]; p[i] == nil || p[i].DType != Float32 {
			return fmt.Errorf("BatchNormalization %q: input %q is not a float constant", bn.Name, bn.Input(i+1))
		}
	}
	w := g.Consts[weight]
	if w == nil || w.DType != Float32 || len(w.Shape) < 2 {
		return fmt.Errorf("node %q: weight %q is not a float constant of rank ≥ 2", conv.Name, weight)
	}
	oc := w.Shape[0]
	var bias *Tensor
	if name := conv.Input(2); name != "" {
		if bias = g.Consts[name]; bias == nil || bias.DType != Float32 {
			return fmt.Errorf("node %q: bias %q is not a float constant", conv.Name, name)
		}
	}
	if oc == 0 || len(w.F)%oc != 0 || (bias != nil && len(bias.F) != oc) ||
		slices.ContainsFunc(p[:], func(t *Tensor) bool { return len(t.F) != oc }) {
		return fmt.Errorf("node %q: BatchNormalization %q does not match its %d filters", conv.Name, bn.Name, oc)
	}
	var names *valueNames
	if conv.Input(2) == "" {
		names = g.valueNames()
	}
	return g.foldPair(conv, bn, weight, p, bias, names)
}

// foldPair is the arithmetic of FoldBatchNormInto on checked inputs (p: γ, β, μ, σ²; names
// for a new bias's name when conv has none).
func (g *Graph) foldPair(conv, bn *Node, weight string, p [4]*Tensor, bias *Tensor, names *valueNames) error {
	eps, err := bn.Float("epsilon", 1e-5)
	if err != nil {
		return err
	}
	w := g.Consts[weight]
	oc := w.Shape[0]
	per := len(w.F) / oc
	nw := w.Clone()
	nb := make([]float32, oc)
	for c := 0; c < oc; c++ {
		gamma, beta, mean, variance := float64(p[0].F[c]), float64(p[1].F[c]), float64(p[2].F[c]), float64(p[3].F[c])
		s := gamma / math.Sqrt(variance+float64(eps))
		for k := 0; k < per; k++ {
			nw.F[c*per+k] = float32(float64(w.F[c*per+k]) * s)
		}
		b := 0.0
		if bias != nil {
			b = float64(bias.F[c])
		}
		nb[c] = float32((b-mean)*s + beta)
	}
	g.Consts[weight] = nw
	bname := conv.Input(2)
	if bname == "" {
		bname = names.unique(conv.Name + "/bias")
		conv.Inputs = append(conv.Inputs[:2], bname)
	}
	g.Consts[bname] = NewFloat([]int{oc}, nb)
	// The conv now produces the BN's output value.
	delete(g.Shapes, conv.Outputs[0])
	conv.Outputs[0] = bn.Outputs[0]
	return nil
}

// FoldBatchNorm folds every inference BatchNormalization that directly follows a Conv (whose
// output nothing else reads) into that Conv's weights and bias:
// W' = W·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β.
func (g *Graph) FoldBatchNorm() error { return g.FoldBatchNormIf(nil) }

// FoldBatchNormIf is FoldBatchNorm restricted to the BatchNormalizations for which fold
// returns true (all when fold is nil).
func (g *Graph) FoldBatchNormIf(fold func(bn *Node) bool) error {
	producers, consumers := g.Producers(), g.Consumers()
	isOutput := g.outputSet()
	var names *valueNames // built on first use
	kept := g.Nodes[:0:0]
	removed := map[*Node]bool{}
	for _, bn := range g.Nodes {
		if bn.Op != "BatchNormalization" || (fold != nil && !fold(bn)) {
			continue
		}
		conv := producers[bn.Inputs[0]]
		if conv == nil || conv.Op != "Conv" || len(consumers[bn.Inputs[0]]) != 1 || isOutput[bn.Inputs[0]] {
			continue
		}
		if len(bn.Outputs) > 1 && slices.ContainsFunc(bn.Outputs[1:], func(s string) bool { return s != "" }) {
			continue
		}
		var p [4]*Tensor
		ok := true
		for i := range p {
			p[i] = g.Consts[bn.Inputs[i+1]]
			ok = ok && p[i] != nil && p[i].DType == Float32
		}
		w := g.Consts[conv.Inputs[1]]
		if !ok || w == nil || w.DType != Float32 || len(w.Shape) != 4 || len(consumers[conv.Inputs[1]]) != 1 {
			continue
		}
		var bias *Tensor
		if conv.Input(2) != "" {
			if bias = g.Consts[conv.Inputs[2]]; bias == nil || len(consumers[conv.Inputs[2]]) != 1 {
				continue
			}
		}
		oc := w.Shape[0]
		if oc == 0 || len(w.F)%oc != 0 || (bias != nil && (bias.DType != Float32 || len(bias.F) != oc)) ||
			slices.ContainsFunc(p[:], func(t *Tensor) bool { return len(t.F) != oc }) {
			continue // nothing to fold, or inputs shape inference would have refused
		}
		if conv.Input(2) == "" && names == nil {
			names = g.valueNames()
		}
		if err := g.foldPair(conv, bn, conv.Inputs[1], p, bias, names); err != nil {
			return err
		}
		removed[bn] = true
	}
	for _, n := range g.Nodes {
		if !removed[n] {
			kept = append(kept, n)
		}
	}
	g.Nodes = kept
	if err := g.RemoveDeadCode(); err != nil {
		return err
	}
	return g.InferShapes()
}
