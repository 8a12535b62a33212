// Package supernet turns a canonical float graph into the graphs qnas trains: it finds the
// layers that can be quantized and pruned and the channel dependencies between them (Space),
// reads and resolves architectures (qnas.arch/1), prices them under a cost model, prunes
// filters physically, and inserts the fake quantizers of quantization-aware training or the
// mixed ops of the search.
package supernet

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/qnas/qnas/graph"
)

// Space is what a canonical graph offers to quantize and prune: its layers (every Conv and
// Gemm with a constant weight, in graph order) and the dependency groups of their output
// channels.
type Space struct {
	Graph  *graph.Graph
	Layers []*Layer
	Groups []*Group
	byName map[string]*Layer
	// chans maps an activation to the channel group its axis 1 carries and, after a
	// Flatten, the number of columns each channel became.
	chans map[string]chanRef
}

// Layer is one quantizable layer.
type Layer struct {
	Index   int
	Node    *graph.Node
	Name    string // the node name, as `qnas inspect` prints it
	Op      string // Conv or Gemm
	Weight  string // the weight constant
	Bias    string // the bias constant, or ""
	WAxis   int    // the output-channel axis of the weight (1 for a Gemm without transB)
	Filters int    // output channels
	// FanIn is the multiply-accumulates of one filter at one output position:
	// (C_in/groups)·k_h·k_w for a Conv, the input width for a Gemm.
	FanIn      int64
	Spatial    int64 // output positions per sample (1 for a Gemm)
	InC        int   // input channels (Gemm: input columns)
	ConvGroups int   // the Conv's group attribute (1 for a Gemm)
	Depthwise  bool
	Input      string // the activation the layer reads
	// First is set when the layer reads the network input (through no other layer), Last
	// when its output reaches a graph output through no other layer.
	First, Last bool
	// SignedInput is set when the input can be negative (no ReLU-like op bounds it below).
	SignedInput bool
	// Biased is set when the layer has a bias, or a BatchNormalization that export folds
	// into one.
	Biased   bool
	Out      *Group // the group of the output channels
	In       *Group // the group of the input channels; nil for the network input
	InFactor int    // columns per input channel (a Gemm after a Flatten of C×H×W)
}

// MACs returns the layer's multiply-accumulates per sample with keptIn input channels (of
// InC) and keptOut filters.
func (l *Layer) MACs(keptIn, keptOut int) int64 {
	return l.Spatial * int64(keptOut) * l.FanInKept(keptIn)
}

// Params returns the layer's weights and biases with keptIn input channels and keptOut
// filters, as export writes them (a BatchNormalization folded into a bias).
func (l *Layer) Params(keptIn, keptOut int) int64 {
	p := int64(keptOut) * l.FanInKept(keptIn)
	if l.Biased {
		p += int64(keptOut)
	}
	return p
}

// FanInKept is FanIn with keptIn of the InC input channels kept.
func (l *Layer) FanInKept(keptIn int) int64 {
	if l.Depthwise || keptIn == l.InC {
		return l.FanIn
	}
	return l.FanIn / int64(l.InC) * int64(keptIn)
}

// Group is a set of channels that must be pruned together: the outputs of every layer that
// writes into it (the two branches of a residual Add, a depthwise conv and its producer, …).
type Group struct {
	ID       int
	Channels int
	// Producers are the layers whose filters are the group's channels (depthwise convs
	// included); Readers the layers that read them as input channels.
	Producers []*Layer
	Readers   []*Layer
	Prunable  bool
	Reason    string // why the group cannot be pruned
}

// Name is a readable name of the group: its first producer's.
func (g *Group) Name() string {
	if len(g.Producers) > 0 {
		return g.Producers[0].Name
	}
	return fmt.Sprintf("group %d", g.ID)
}

type chanRef struct {
	g      *Group
	factor int // columns per channel after a Flatten (1 before)
}

// Layer returns the layer with the given node name.
func (s *Space) Layer(name string) *Layer { return s.byName[name] }

// channelPreserving are the ops whose output carries their first input's channels one to one.
var channelPreserving = map[string]bool{
	"BatchNormalization": true, "Relu": true, "Clip": true, "LeakyRelu": true, "Sigmoid": true,
	"HardSigmoid": true, "HardSwish": true, "MaxPool": true, "AveragePool": true,
	"GlobalAveragePool": true, "GlobalMaxPool": true, "Identity": true, "Dropout": true,
}

// NewSpace analyzes a canonical graph (shapes inferred, BatchNormalization kept or folded).
func NewSpace(g *graph.Graph) (*Space, error) {
	s := &Space{Graph: g, byName: map[string]*Layer{}, chans: map[string]chanRef{}}
	parent := map[*Group]*Group{} // union-find over groups
	var find func(*Group) *Group
	find = func(x *Group) *Group {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	newGroup := func(ch int) *Group {
		gr := &Group{Channels: ch, Prunable: true}
		parent[gr] = gr
		return gr
	}
	block := func(r chanRef, why string) {
		if r.g != nil {
			if root := find(r.g); root.Prunable {
				root.Prunable, root.Reason = false, why
			}
		}
	}
	union := func(a, b *Group) *Group {
		ra, rb := find(a), find(b)
		if ra == rb {
			return ra
		}
		parent[rb] = ra
		if !rb.Prunable && ra.Prunable {
			ra.Prunable, ra.Reason = false, rb.Reason
		}
		return ra
	}
	ref := func(v string) chanRef { return s.chans[v] }
	nonNeg := nonNegative(g)
	consumers := g.Consumers()
	fromInput := map[string]bool{}
	for _, in := range g.Inputs {
		fromInput[in] = true
	}
	for _, n := range g.Nodes {
		l, err := s.layerOf(n)
		if err != nil {
			return nil, err
		}
		if l != nil {
			l.Index = len(s.Layers)
			l.First = fromInput[l.Input]
			cs := consumers[n.Outputs[0]]
			l.Biased = l.Bias != "" || len(cs) == 1 && cs[0].Op == "BatchNormalization"
			l.SignedInput = !nonNeg[l.Input]
			in := ref(l.Input)
			switch {
			case l.Depthwise:
				if in.g == nil {
					in.g = newGroup(l.Filters)
					block(in, "depthwise convolution of the network input")
				}
				l.Out, l.In, l.InFactor = in.g, in.g, 1
			case l.Op == "Conv" && l.ConvGroups > 1:
				block(in, fmt.Sprintf("read by the grouped convolution %q", l.Name))
				l.Out = newGroup(l.Filters)
				block(chanRef{g: l.Out}, fmt.Sprintf("written by the grouped convolution %q", l.Name))
				l.In, l.InFactor = in.g, 1
			default:
				l.In, l.InFactor = in.g, max(in.factor, 1)
				l.Out = newGroup(l.Filters)
			}
			s.chans[n.Outputs[0]] = chanRef{g: l.Out, factor: 1}
			s.Layers = append(s.Layers, l)
			s.byName[l.Name] = l
			continue
		}
		anyIn := false
		for _, in := range n.Inputs {
			anyIn = anyIn || fromInput[in]
		}
		for _, o := range n.Outputs {
			fromInput[o] = anyIn
		}
		x := ref(n.Input(0))
		switch {
		case channelPreserving[n.Op]:
			if x.g != nil {
				s.chans[n.Outputs[0]] = x
			}
		case n.Op == "Add" || n.Op == "Sub" || n.Op == "Mul" || n.Op == "Div":
			a, b := ref(n.Inputs[0]), ref(n.Inputs[1])
			sa, sb := g.Shapes[n.Inputs[0]], g.Shapes[n.Inputs[1]]
			_, bConst := g.Consts[n.Inputs[1]]
			_, aConst := g.Consts[n.Inputs[0]]
			switch {
			case a.g != nil && b.g != nil && a.factor == b.factor && len(sa) == len(sb) && len(sa) >= 2 && sa[1] == sb[1]:
				s.chans[n.Outputs[0]] = chanRef{g: union(a.g, b.g), factor: a.factor}
			case a.g != nil && bConst && g.Consts[n.Inputs[1]].Len() == 1:
				s.chans[n.Outputs[0]] = a
			case b.g != nil && aConst && g.Consts[n.Inputs[0]].Len() == 1:
				s.chans[n.Outputs[0]] = b
			default:
				why := fmt.Sprintf("%s %q mixes its channels with a tensor of another layout", n.Op, n.Name)
				block(a, why)
				block(b, why)
			}
		case (n.Op == "Flatten" || n.Op == "Reshape") && x.g != nil:
			in, out := g.Shapes[n.Inputs[0]], g.Shapes[n.Outputs[0]]
			if len(in) == 4 && len(out) == 2 && in[0] == graph.Batch && out[0] == graph.Batch && out[1] == in[1]*in[2]*in[3] {
				s.chans[n.Outputs[0]] = chanRef{g: x.g, factor: max(x.factor, 1) * in[2] * in[3]}
			} else {
				block(x, fmt.Sprintf("%s %q reshapes the channels", n.Op, n.Name))
			}
		default:
			for _, in := range n.Inputs {
				block(ref(in), fmt.Sprintf("read by %s %q, which qnas does not prune through", n.Op, n.Name))
			}
		}
	}
	for _, o := range g.Outputs {
		block(ref(o), fmt.Sprintf("the graph output %q", o))
	}
	// Last: a layer whose output reaches a graph output through no other layer.
	toOutput := map[string]bool{}
	for _, o := range g.Outputs {
		toOutput[o] = true
	}
	for i := len(g.Nodes) - 1; i >= 0; i-- {
		n := g.Nodes[i]
		reach := false
		for _, o := range n.Outputs {
			reach = reach || toOutput[o]
		}
		if l := s.byName[n.Name]; l != nil && l.Node == n {
			l.Last = reach
			continue
		}
		if reach {
			for _, in := range n.Inputs {
				toOutput[in] = true
			}
		}
	}
	// Resolve the union-find: one Group per root, numbered in graph order.
	ids := map[*Group]*Group{}
	canon := func(gr *Group) *Group {
		if gr == nil {
			return nil
		}
		root := find(gr)
		if c, ok := ids[root]; ok {
			return c
		}
		root.ID = len(s.Groups)
		s.Groups = append(s.Groups, root)
		ids[root] = root
		return root
	}
	for _, l := range s.Layers {
		l.Out = canon(l.Out)
		l.In = canon(l.In)
		l.Out.Producers = append(l.Out.Producers, l)
		if l.In != nil && !l.Depthwise {
			l.In.Readers = append(l.In.Readers, l)
		}
	}
	for v, r := range s.chans {
		s.chans[v] = chanRef{g: canon(r.g), factor: r.factor}
	}
	for _, gr := range s.Groups {
		for _, p := range gr.Producers {
			if p.Filters != gr.Channels {
				return nil, fmt.Errorf("layers %q and %q share channels but have %d and %d filters", gr.Producers[0].Name, p.Name, gr.Channels, p.Filters)
			}
		}
	}
	if len(s.Layers) == 0 {
		return nil, fmt.Errorf("the model has no Conv or Gemm layer with constant weights to quantize")
	}
	return s, nil
}

// layerOf returns the Layer of a Conv or Gemm node with a constant float weight, nil for
// any other node.
func (s *Space) layerOf(n *graph.Node) (*Layer, error) {
	g := s.Graph
	w := g.Consts[n.Input(1)]
	if (n.Op != "Conv" && n.Op != "Gemm") || w == nil || w.DType != graph.Float32 {
		return nil, nil
	}
	l := &Layer{Node: n, Name: n.Name, Op: n.Op, Weight: n.Inputs[1], Bias: n.Input(2), Input: n.Inputs[0], ConvGroups: 1, Spatial: 1}
	if n.Op == "Conv" {
		ci, err := g.ConvGeometry(n)
		if err != nil {
			return nil, err
		}
		l.Filters, l.InC, l.ConvGroups = ci.OutC, ci.InC, ci.Group
		l.FanIn = int64(ci.InC/ci.Group) * int64(ci.KH) * int64(ci.KW)
		l.Spatial = int64(ci.OutH) * int64(ci.OutW)
		l.Depthwise = ci.Group > 1 && ci.Group == ci.InC && ci.OutC == ci.InC
		return l, nil
	}
	ta, err := n.Int("transA", 0)
	if err != nil {
		return nil, err
	}
	tb, err := n.Int("transB", 0)
	if err != nil {
		return nil, err
	}
	if ta != 0 {
		return nil, nil // a transposed activation: not a layer qnas quantizes
	}
	if c := n.Input(2); c != "" {
		if b := g.Consts[c]; b == nil || b.Len() != w.Shape[1-int(tb)] && b.Len() != 1 {
			return nil, nil
		}
	}
	l.WAxis = 1 - int(tb)
	l.Filters = w.Shape[l.WAxis]
	l.InC = w.Shape[1-l.WAxis]
	l.FanIn = int64(l.InC)
	return l, nil
}

// nonNegative returns the values that cannot be negative: outputs of ReLU-like ops and of
// ops that keep the sign of non-negative inputs.
func nonNegative(g *graph.Graph) map[string]bool {
	nn := map[string]bool{}
	all := func(n *graph.Node) bool {
		for _, in := range n.Inputs {
			if in == "" {
				continue
			}
			if t, ok := g.Consts[in]; ok {
				if t.DType == graph.Float32 && slices.ContainsFunc(t.F, func(v float32) bool { return v < 0 }) {
					return false
				}
				continue
			}
			if !nn[in] {
				return false
			}
		}
		return true
	}
	for _, n := range g.Nodes {
		v := false
		switch n.Op {
		case "Relu", "Sigmoid", "HardSigmoid":
			v = true
		case "Clip":
			lo, _, err := g.ClipBoundsOf(n)
			v = err == nil && lo >= 0 || nn[n.Inputs[0]]
		case "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape",
			"Identity", "Dropout", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Split":
			v = nn[n.Inputs[0]]
		case "Concat", "Add", "Mul", "Div":
			v = all(n)
		}
		for _, o := range n.Outputs {
			nn[o] = v
		}
	}
	return nn
}

// Importance ranks the channels of a group, most important first: channel c scores the sum
// over the group's producers of |γ_c/√(σ²_c+ε)|·‖W_c‖₁ (the L1 norm of the filter as the
// following BatchNormalization scales it, or of the filter alone without one), each
// producer's scores divided by their mean so that layers of different scale weigh alike.
// Ties keep the lower index first.
func (s *Space) Importance(gr *Group) []int {
	score := make([]float64, gr.Channels)
	consumers := s.Graph.Consumers()
	for _, l := range gr.Producers {
		w := s.Graph.Consts[l.Weight]
		per := make([]float64, l.Filters)
		forEachFilter(w, l.WAxis, func(c int, v float32) { per[c] += math.Abs(float64(v)) })
		if cs := consumers[l.Node.Outputs[0]]; len(cs) == 1 && cs[0].Op == "BatchNormalization" {
			if a, ok := bnScale(s.Graph, cs[0]); ok {
				for c := range per {
					per[c] *= math.Abs(a[c])
				}
			}
		}
		mean := 0.0
		for _, v := range per {
			mean += v
		}
		mean /= float64(len(per))
		for c, v := range per {
			if mean > 0 {
				score[c] += v / mean
			}
		}
	}
	order := make([]int, gr.Channels)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return score[order[i]] > score[order[j]] })
	return order
}

// forEachFilter calls fn with the filter index and value of every element of the weight w,
// whose filters run along axis (0, or 1 for a 2-D weight).
func forEachFilter(w *graph.Tensor, axis int, fn func(c int, v float32)) {
	if axis == 0 {
		per := len(w.F) / w.Shape[0]
		for i, v := range w.F {
			fn(i/per, v)
		}
		return
	}
	cols := w.Shape[1]
	for i, v := range w.F {
		fn(i%cols, v)
	}
}

// bnScale returns γ/√(σ²+ε) of an inference BatchNormalization with constant parameters.
func bnScale(g *graph.Graph, bn *graph.Node) ([]float64, bool) {
	gamma, variance := g.Consts[bn.Inputs[1]], g.Consts[bn.Inputs[4]]
	if gamma == nil || variance == nil || gamma.DType != graph.Float32 || variance.DType != graph.Float32 {
		return nil, false
	}
	eps, err := bn.Float("epsilon", 1e-5)
	if err != nil {
		return nil, false
	}
	a := make([]float64, len(gamma.F))
	for c := range a {
		a[c] = float64(gamma.F[c]) / math.Sqrt(float64(variance.F[c])+float64(eps))
	}
	return a, true
}
