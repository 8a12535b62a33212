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

// Space is what a canonical graph offers to quantize and prune: its layers (every Conv,
// Gemm and MatMul with a constant weight, in graph order) and the dependency groups of their
// output channels.
type Space struct {
	Graph  *graph.Graph
	Layers []*Layer
	Groups []*Group
	// ChannelParams are the constants of Add and Mul nodes that hold one value per channel
	// of a layer's output (a MatMul's bias, a layer scale): parameters of the model that the
	// op reading them does not declare as weights. Training graphs read them through a
	// Learned node, so that they train with the weights.
	ChannelParams []string
	// Pow2Scales makes the quantizers of fixed architectures (Resolved.Apply) keep their
	// exported scales powers of two, so that ONNX Runtime's float and integer kernels
	// compute the same integers from the exported model (docs/method.md); the search's
	// mixed quantizers keep free scales.
	Pow2Scales bool
	byName     map[string]*Layer
	// chans maps an activation to the channels it carries: the groups concatenated along
	// one axis and, after a Flatten, the number of columns each channel became.
	chans map[string]chanRef
}

// Layer is one quantizable layer.
type Layer struct {
	Index   int
	Node    *graph.Node
	Name    string // the node name, as `qnas inspect` prints it
	Op      string // Conv, Gemm or MatMul
	Weight  string // the weight constant
	Bias    string // the bias input of the node, or ""
	WAxis   int    // the output-channel axis of the weight (1 for a MatMul, and a Gemm without transB)
	Filters int    // output channels
	// FanIn is the multiply-accumulates of one filter at one output position:
	// (C_in/groups)·k_h·k_w for a Conv, the input width for a Gemm or a MatMul.
	FanIn      int64
	Spatial    int64 // output positions per sample (1 for a Gemm; H·W for a MatMul over N×H×W×C)
	InC        int   // input channels (Gemm, MatMul: input columns)
	ConvGroups int   // the Conv's group attribute (1 for a Gemm or a MatMul)
	Depthwise  bool
	Input      string // the activation the layer reads
	// First is set when the layer reads the network input (through no other layer), Last
	// when its output reaches a graph output through no other layer.
	First, Last bool
	// SignedInput is set when the input can be negative (no ReLU-like op bounds it below).
	SignedInput bool
	// Biased is set when the layer has a bias input, or a BatchNormalization that export
	// folds into one. (A MatMul's bias is a separate Add; its constant is a ChannelParam.)
	Biased bool
	Out    *Group // the group of the output channels
	// In are the groups of the input channels, in order: one group, or the members of a
	// Concat the layer reads (a depthwise conv's In is its Out); nil for the network input
	// and for inputs whose channels qnas does not follow.
	In       []*Group
	InFactor int // columns per input channel (a Gemm after a Flatten of C×H×W)
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

// keptInputs returns the input channels (Gemm, MatMul: columns) the layer reads when each
// group of its input keeps kept(group) channels.
func (l *Layer) keptInputs(kept func(*Group) int) int {
	if l.Depthwise || l.In == nil {
		return l.InC
	}
	n := 0
	for _, g := range l.In {
		n += kept(g)
	}
	return n * l.InFactor
}

// inChannels is the number of channels of the groups of the layer's input.
func (l *Layer) inChannels() int {
	n := 0
	for _, g := range l.In {
		n += g.Channels
	}
	return n
}

// inFraction is the fraction of the input's channels kept when each group of it keeps the
// fraction frac(group).
func (l *Layer) inFraction(frac func(*Group) float64) float64 {
	f := 0.0
	for _, g := range l.In {
		f += frac(g) * float64(g.Channels)
	}
	return f / float64(l.inChannels())
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
	// included); Readers the layers that read them as input channels (directly, or as
	// part of a concatenation).
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

// chanRef is what NewSpace knows of the channels of an activation: the groups whose
// channels it carries along axis, concatenated in order (one group, or the members of a
// Concat), and the columns each channel became after a Flatten (1 before).
type chanRef struct {
	parts  []*Group
	axis   int
	factor int
}

func (r chanRef) ok() bool { return len(r.parts) > 0 }

// channels is the number of channels along the axis.
func (r chanRef) channels() int {
	n := 0
	for _, g := range r.parts {
		n += g.Channels
	}
	return n
}

// Layer returns the layer with the given node name.
func (s *Space) Layer(name string) *Layer { return s.byName[name] }

// elementwise are the ops whose output carries their first input's channels one to one,
// on any axis.
var elementwise = map[string]bool{
	"Relu": true, "Clip": true, "LeakyRelu": true, "Sigmoid": true, "HardSigmoid": true, "HardSwish": true,
	"Gelu": true, "Tanh": true, "Erf": true, "Sqrt": true, "Identity": true, "Dropout": true,
}

// channelsFirst are the ops whose output carries the channels of an N×C×… input one to one.
var channelsFirst = map[string]bool{
	"BatchNormalization": true, "MaxPool": true, "AveragePool": true, "GlobalAveragePool": true, "GlobalMaxPool": true,
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
		for _, p := range r.parts {
			if root := find(p); root.Prunable {
				root.Prunable, root.Reason = false, why
			}
		}
	}
	union := func(a, b *Group) {
		ra, rb := find(a), find(b)
		if ra == rb {
			return
		}
		parent[rb] = ra
		if !rb.Prunable && ra.Prunable {
			ra.Prunable, ra.Reason = false, rb.Reason
		}
	}
	ref := func(v string) chanRef { return s.chans[v] }
	nonNeg := nonNegative(g)
	consumers := g.Consumers()
	fromInput := map[string]bool{}
	for _, in := range g.Inputs {
		fromInput[in] = true
	}
	channelParam := map[string]bool{}
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
			inAxis := len(g.Shapes[l.Input]) - 1 // a Gemm's or MatMul's input columns
			if l.Op == "Conv" {
				inAxis = 1
			}
			if in.ok() && in.axis != inAxis {
				block(in, fmt.Sprintf("read by %q along another axis than the channels", l.Name))
				in = chanRef{}
			}
			switch {
			case l.Depthwise:
				if len(in.parts) != 1 {
					why := "depthwise convolution of the network input"
					if in.ok() {
						why = fmt.Sprintf("concatenated channels read by the depthwise convolution %q", l.Name)
						block(in, why)
					}
					in.parts = []*Group{newGroup(l.Filters)}
					block(in, why)
				}
				l.Out, l.In, l.InFactor = in.parts[0], in.parts, 1
			case l.Op == "Conv" && l.ConvGroups > 1:
				block(in, fmt.Sprintf("read by the grouped convolution %q", l.Name))
				l.Out = newGroup(l.Filters)
				block(chanRef{parts: []*Group{l.Out}}, fmt.Sprintf("written by the grouped convolution %q", l.Name))
				l.In, l.InFactor = in.parts, 1
			default:
				l.In, l.InFactor = in.parts, max(in.factor, 1)
				l.Out = newGroup(l.Filters)
			}
			outAxis := 1
			if l.Op == "MatMul" {
				outAxis = len(g.Shapes[n.Outputs[0]]) - 1
			}
			s.chans[n.Outputs[0]] = chanRef{parts: []*Group{l.Out}, axis: outAxis, factor: 1}
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
		blockAll := func(why string) {
			for _, in := range n.Inputs {
				block(ref(in), why)
			}
		}
		switch {
		case elementwise[n.Op] || channelsFirst[n.Op] && x.axis == 1 && x.factor == 1:
			if x.ok() {
				s.chans[n.Outputs[0]] = x
			}
		case n.Op == "Add" || n.Op == "Sub" || n.Op == "Mul" || n.Op == "Div":
			a, b := ref(n.Inputs[0]), ref(n.Inputs[1])
			sa, sb := g.Shapes[n.Inputs[0]], g.Shapes[n.Inputs[1]]
			switch {
			case a.ok() && b.ok() && sameLayout(a, b) && len(sa) == len(sb) && sa[a.axis] == sb[b.axis]:
				for i := range a.parts {
					union(a.parts[i], b.parts[i])
				}
				s.chans[n.Outputs[0]] = a
			case a.ok() && !b.ok() || b.ok() && !a.ok():
				c, _, ok := s.perChannelConst(n)
				if !ok {
					blockAll(fmt.Sprintf("%s %q mixes its channels with a tensor of another layout", n.Op, n.Name))
					break
				}
				if a.ok() {
					s.chans[n.Outputs[0]] = a
				} else {
					s.chans[n.Outputs[0]] = b
				}
				if name := n.Inputs[c]; (n.Op == "Add" || n.Op == "Mul") && g.Consts[name].Len() > 1 && !channelParam[name] {
					channelParam[name] = true
					s.ChannelParams = append(s.ChannelParams, name)
				}
			default:
				blockAll(fmt.Sprintf("%s %q mixes its channels with a tensor of another layout", n.Op, n.Name))
			}
		case (n.Op == "Flatten" || n.Op == "Reshape") && x.ok():
			in, out := g.Shapes[n.Inputs[0]], g.Shapes[n.Outputs[0]]
			if x.axis == 1 && len(in) == 4 && len(out) == 2 && in[0] == graph.Batch && out[0] == graph.Batch && out[1] == in[1]*in[2]*in[3] {
				s.chans[n.Outputs[0]] = chanRef{parts: x.parts, axis: 1, factor: max(x.factor, 1) * in[2] * in[3]}
			} else {
				block(x, fmt.Sprintf("%s %q reshapes the channels", n.Op, n.Name))
			}
		case n.Op == "Transpose" && x.ok() && x.factor == 1:
			perm, err := g.TransposePerm(n)
			if err != nil {
				return nil, err
			}
			s.chans[n.Outputs[0]] = chanRef{parts: x.parts, axis: slices.Index(perm, x.axis), factor: 1}
		case (n.Op == "ReduceMean" || n.Op == "ReduceSum") && x.ok() && x.factor == 1:
			axes, err := g.ReduceAxes(n)
			keep, _ := n.Int("keepdims", 1)
			if err != nil || len(axes) == 0 || slices.Contains(axes, x.axis) {
				block(x, fmt.Sprintf("%s %q reduces over the channels", n.Op, n.Name))
				break
			}
			r := x
			for _, a := range axes {
				if keep == 0 && a < x.axis {
					r.axis--
				}
			}
			s.chans[n.Outputs[0]] = r
		case n.Op == "Concat":
			if r, ok := s.concatRef(n); ok {
				s.chans[n.Outputs[0]] = r
			} else {
				blockAll(fmt.Sprintf("Concat %q joins tensors along another axis than their channels", n.Name))
			}
		default:
			blockAll(fmt.Sprintf("read by %s %q, which qnas does not prune through", n.Op, n.Name))
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
		root := find(gr)
		if c, ok := ids[root]; ok {
			return c
		}
		root.ID = len(s.Groups)
		s.Groups = append(s.Groups, root)
		ids[root] = root
		return root
	}
	canonAll := func(v []*Group) []*Group {
		if v == nil {
			return nil
		}
		out := make([]*Group, len(v))
		for i, gr := range v {
			out[i] = canon(gr)
		}
		return out
	}
	for _, l := range s.Layers {
		l.Out = canon(l.Out)
		l.In = canonAll(l.In)
		l.Out.Producers = append(l.Out.Producers, l)
		for _, gr := range l.In {
			if !l.Depthwise && !slices.Contains(gr.Readers, l) {
				gr.Readers = append(gr.Readers, l)
			}
		}
	}
	for v, r := range s.chans {
		r.parts = canonAll(r.parts)
		s.chans[v] = r
	}
	for _, gr := range s.Groups {
		for _, p := range gr.Producers {
			if p.Filters != gr.Channels {
				return nil, fmt.Errorf("layers %q and %q share channels but have %d and %d filters", gr.Producers[0].Name, p.Name, gr.Channels, p.Filters)
			}
		}
	}
	if len(s.Layers) == 0 {
		return nil, fmt.Errorf("the model has no Conv, Gemm or MatMul layer with constant weights to quantize")
	}
	return s, nil
}

// sameLayout reports whether two activations carry channels of groups of the same sizes in
// the same order, on the same axis.
func sameLayout(a, b chanRef) bool {
	if a.axis != b.axis || a.factor != b.factor || len(a.parts) != len(b.parts) {
		return false
	}
	for i := range a.parts {
		if a.parts[i].Channels != b.parts[i].Channels {
			return false
		}
	}
	return true
}

// concatRef returns the channels of a Concat's output when it joins, along their channel
// axis, activations whose channels NewSpace follows.
func (s *Space) concatRef(n *graph.Node) (chanRef, bool) {
	axis, err := n.Int("axis", 0)
	if err != nil {
		return chanRef{}, false
	}
	rank := len(s.Graph.Shapes[n.Outputs[0]])
	if axis < 0 {
		axis += int64(rank)
	}
	out := chanRef{axis: int(axis), factor: 1}
	for _, in := range n.Inputs {
		r := s.chans[in]
		if !r.ok() || r.axis != out.axis || r.factor != 1 {
			return chanRef{}, false
		}
		out.parts = append(out.parts, r.parts...)
	}
	return out, len(out.parts) > 0
}

// perChannelConst returns, for an Add, Sub, Mul or Div node of one constant operand and one
// activation whose channels NewSpace follows, the index of the constant input and its axis
// that runs along the channels, when the constant holds one value per channel (axis -1: one
// value for all).
func (s *Space) perChannelConst(n *graph.Node) (input, axis int, ok bool) {
	g := s.Graph
	for c := 0; c < 2; c++ {
		t, x := g.Consts[n.Inputs[c]], s.chans[n.Inputs[1-c]]
		if t == nil || t.DType != graph.Float32 || !x.ok() {
			continue
		}
		if t.Len() == 1 {
			return c, -1, true
		}
		xs := g.Shapes[n.Inputs[1-c]]
		off := len(xs) - len(t.Shape)
		if off < 0 || x.axis < off || t.Shape[x.axis-off] != x.channels() || t.Len() != x.channels() {
			return 0, 0, false
		}
		return c, x.axis - off, true
	}
	return 0, 0, false
}

// keptChannels returns the kept channels of an activation (positions along its channel
// axis, the members of a concatenation one after another), or nil when it keeps all.
func keptChannels(r chanRef, keep map[*Group][]int) []int {
	var out []int
	pruned, off := false, 0
	for _, gr := range r.parts {
		k := keep[gr]
		if k == nil || len(k) == gr.Channels {
			for c := 0; c < gr.Channels; c++ {
				out = append(out, off+c)
			}
		} else {
			pruned = true
			for _, c := range k {
				out = append(out, off+c)
			}
		}
		off += gr.Channels
	}
	if !pruned {
		return nil
	}
	return out
}

// layerOf returns the Layer of a Conv, Gemm or MatMul node with a constant float weight
// (a MatMul's the second input, 2-D), nil for any other node.
func (s *Space) layerOf(n *graph.Node) (*Layer, error) {
	g := s.Graph
	w := g.Consts[n.Input(1)]
	if (n.Op != "Conv" && n.Op != "Gemm" && n.Op != "MatMul") || w == nil || w.DType != graph.Float32 {
		return nil, nil
	}
	l := &Layer{Node: n, Name: n.Name, Op: n.Op, Weight: n.Inputs[1], Bias: n.Input(2), Input: n.Inputs[0], ConvGroups: 1, Spatial: 1}
	switch n.Op {
	case "Conv":
		ci, err := g.ConvGeometry(n)
		if err != nil {
			return nil, err
		}
		l.Filters, l.InC, l.ConvGroups = ci.OutC, ci.InC, ci.Group
		l.FanIn = int64(ci.InC/ci.Group) * int64(ci.KH) * int64(ci.KW)
		l.Spatial = int64(ci.OutH) * int64(ci.OutW)
		l.Depthwise = ci.Group > 1 && ci.Group == ci.InC && ci.OutC == ci.InC
		return l, nil
	case "MatMul":
		x := g.Shapes[n.Inputs[0]]
		if len(w.Shape) != 2 || len(x) < 2 || x[0] != graph.Batch || x[len(x)-1] != w.Shape[0] {
			return nil, nil // not a layer over the batch's rows: qnas leaves it float
		}
		for _, d := range x[1 : len(x)-1] {
			l.Spatial *= int64(d)
		}
		l.WAxis, l.Filters, l.InC, l.FanIn = 1, w.Shape[1], w.Shape[0], int64(w.Shape[0])
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
