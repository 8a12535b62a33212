// Package engine executes a graph.Graph forward and backward on the CPU: a Plan is compiled
// once per graph and batch size, with every buffer allocated up front and reused by every
// step, and runs each node through the kernel registered for its op.
//
// Ops are added by registering a Builder (Register) — the engine's own ops live in files
// named op_*.go, each with its forward and backward side by side; later stages (the
// supernet's quantizers and mixed ops) register theirs from their own packages.
package engine

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/kernels"
)

// Kind says what a Value holds.
type Kind uint8

// Value kinds.
const (
	Activation Kind = iota // computed by a node
	Input                  // a graph input, filled by the caller
	Param                  // a learnable constant: gets a gradient, updated by an optimizer
	State                  // a constant the op updates in training (BatchNorm running stats)
	Const                  // any other constant
)

// Value is one tensor of the plan at its concrete batch size.
type Value struct {
	Name  string
	Kind  Kind
	Shape []int     // concrete: the symbolic batch replaced by the plan's batch size
	Data  []float32 // the values (shared with the graph's constant for Param/State/Const)
	Grad  []float32 // the gradient of the loss, nil when none flows here
}

// Len returns the number of elements.
func (v *Value) Len() int { return len(v.Data) }

// Kernel runs one node. Forward reads the input values and writes the outputs; Backward reads
// the outputs' gradients and writes (overwrites) the gradient of every input whose GradDst
// (Build.InGrad) is not nil; the engine sums contributions when a value has several readers.
type Kernel interface {
	Forward(train bool)
	Backward()
}

// Builder makes the kernel of one node when a plan is compiled; it validates attributes,
// captures the value buffers and declares the scratch it needs.
type Builder func(b *Build) (Kernel, error)

// Register gives an op of ONNX's default domain, which the IR defines (package graph), its
// kernel. It panics when the IR does not know the op or the op has a kernel already
// (programming errors).
func Register(op string, b Builder) {
	d, ok := graph.LookupOp("", op)
	if !ok {
		panic("engine: kernel for an op the IR does not define: " + op)
	}
	if d.Kernel != nil {
		panic("engine: op registered twice: " + op)
	}
	d.Kernel = b
}

// RegisterOp adds a new op kind with its kernel in one registration: the definition (shape
// rule, cost, weights, state, fusion roles) goes to the IR's op table with b as its kernel.
// Packages after the engine (the supernet's quantizers and mixed ops, the exporter's QONNX
// op) define their ops this way.
func RegisterOp(d *graph.OpDef, b Builder) {
	d.Kernel = b
	graph.Register(d)
}

// kernelOf returns the builder of node n's op, nil when the engine cannot run it.
func kernelOf(n *graph.Node) Builder {
	if d, ok := graph.LookupNode(n); ok {
		if b, ok := d.Kernel.(Builder); ok {
			return b
		}
	}
	return nil
}

// Ops lists the ops the engine can run, sorted.
func Ops() []string {
	var names []string
	for _, op := range graph.Ops() {
		domain, name, ok := strings.Cut(op, "::")
		if !ok {
			domain, name = "", op
		}
		if d, _ := graph.LookupOp(domain, name); d != nil && d.Kernel != nil {
			names = append(names, op)
		}
	}
	sort.Strings(names)
	return names
}

// Build is what a Builder sees of its node.
type Build struct {
	Plan  *Plan
	Graph *graph.Graph
	Node  *graph.Node
	In    []*Value // nil for an absent optional input
	Out   []*Value // nil for an absent optional output
	// ReLU asks the kernel of an op with graph.OpDef.AbsorbsReLU to apply the ReLU that
	// alone reads its output too: Out is then the ReLU's output. ReLUMax, when positive, is
	// that ReLU's upper clip (a ReLU6; only for ops with graph.OpDef.AbsorbsBoundedReLU).
	ReLU    bool
	ReLUMax float32

	stepIndex int
}

// Errorf returns an error naming the node.
func (b *Build) Errorf(format string, args ...any) error {
	return &graph.NodeError{Node: b.Node.Name, Op: b.Node.Op, Msg: fmt.Sprintf(format, args...)}
}

// InGrad returns where Backward writes the gradient of input i, or nil when input i needs
// none. The kernel overwrites GradDst.Buf; the engine adds it to the value's gradient when
// another reader already contributed.
func (b *Build) InGrad(i int) *GradDst {
	if i >= len(b.In) || b.In[i] == nil || b.In[i].Grad == nil {
		return nil
	}
	d := b.Plan.gradDst[gradKey{b.Node, i}]
	st := &b.Plan.steps[b.stepIndex]
	if d != nil && d.target != nil && !slices.Contains(st.flush, d) {
		st.flush = append(st.flush, d)
	}
	return d
}

// GradDst is where a kernel writes one input's gradient.
type GradDst struct {
	Buf    []float32 // write here
	target []float32 // the value's Grad, when Buf is a temporary to add into it
	offset int       // Buf's offset in the plan's temporary gradient buffer
	off    bool      // the parameter is not being trained (Plan.SetTrainable)
	live   []float32 // Buf while off
	added  bool      // the kernel added into target itself this time (addInto)
}

func (d *GradDst) flush() {
	if d.added {
		d.added = false
		return
	}
	if d.target == nil || d.off {
		return
	}
	kernels.AddTo(d.target[:len(d.Buf)], d.Buf)
}

// addInto returns the value's gradient for a kernel that can add its contribution into it
// (instead of writing a temporary that flush then adds), and true, when the contribution is
// not the first; nil and false when it is (the kernel writes Buf). d must be active.
func (d *GradDst) addInto() ([]float32, bool) {
	if d.target == nil || !addIntoEnabled {
		return nil, false
	}
	d.added = true
	return d.target[:len(d.Buf)], true
}

// addIntoEnabled lets tests compare plans with and without kernels adding into gradients.
var addIntoEnabled = true

type gradKey struct {
	node  *graph.Node
	input int
}

// NeedScratch reserves n floats of scratch; at run time Plan.Scratch returns it. All
// kernels share one scratch buffer since they run one at a time.
func (b *Build) NeedScratch(n int) { b.Plan.scratchLen = max(b.Plan.scratchLen, n) }

// Options controls Compile.
type Options struct {
	// Inference compiles a forward-only plan: no gradient buffers.
	Inference bool
	// Frozen lists constants that stay fixed in training (no gradient).
	Frozen map[string]bool
	// InputGrads also computes the gradient of the loss with respect to the graph inputs.
	InputGrads bool
	// Keep lists activations the caller reads after Forward: an inference plan does not
	// reuse their memory, and no plan fuses them away or defers the BatchNormalization
	// writing them (see Deferred; a training plan keeps every other activation too, but
	// a deferred one is not written).
	Keep map[string]bool
	// KeepGrads lists activations whose gradients a training plan keeps in buffers of their
	// own, so the caller can read them after Backward (the others share memory).
	KeepGrads map[string]bool
	// NoDeferral has every op store its output in training, none deferred to the node
	// reading it (see Deferred): for comparisons.
	NoDeferral bool
	// Observed lists activations the caller will pass to Plan.Observe. A node's output
	// that only a ReLU reads is otherwise fused away (see fuse), and one that only a node
	// able to compute it reads is not written in training (a BatchNormalization's or an
	// activation quantizer's: see Deferred): neither can be observed.
	Observed map[string]bool
}

// Plan is a graph compiled for one batch size.
type Plan struct {
	Graph      *graph.Graph
	Batch      int
	Values     map[string]*Value
	Params     []*Value // learnable constants, in a stable order
	steps      []step
	scratch    []float32
	scratchLen int
	gradDst    map[gradKey]*GradDst
	gradTemp   []float32
	convBN     map[int]*convBN // by the Conv's step index (see linkConvBN)
	deferred   map[int]int     // the reader's step index by the deferred op's (see linkDeferred)
	shared     map[any]any     // state kernels share (Build.Shared)
	observers  map[string][]func([]float32)
	gradObs    map[string][]func([]float32) // by activation (ObserveGrad)
	// Times, when not nil, accumulates the wall time of each op type in Forward and
	// Backward (gradient additions included).
	Times OpTimes
}

type step struct {
	node     *graph.Node
	relu     bool    // the kernel also applies the ReLU that read the node's output (fuse)
	reluMax  float32 // that ReLU's upper clip, 0 for none
	kernel   Kernel
	backward bool       // some input needs a gradient
	flush    []*GradDst // gradients to add after Backward
}

// label names the step's op for timing tables ("BatchNormalization+Relu" when fused,
// "BatchNormalization+Clip" with a bounded ReLU).
func (s *step) label() string {
	switch {
	case s.reluMax > 0:
		return s.node.Op + "+Clip"
	case s.relu:
		return s.node.Op + "+Relu"
	}
	return s.node.Op
}

// Compile builds the plan of g (canonicalized, shapes inferred) for batch size n. Before
// allocating a plan of more than 64 MiB of activations it runs the garbage collector, so
// that the plans of earlier phases the caller dropped make room for it.
func Compile(g *graph.Graph, n int, opts Options) (*Plan, error) {
	if n < 1 {
		return nil, fmt.Errorf("batch size %d must be positive", n)
	}
	p := &Plan{Graph: g, Batch: n, Values: map[string]*Value{}}
	concrete := func(s graph.Shape) []int {
		out := make([]int, len(s))
		for i, d := range s {
			if d == graph.Batch {
				d = n
			}
			out[i] = d
		}
		return out
	}
	for _, in := range g.Inputs {
		s := concrete(g.Shapes[in])
		p.Values[in] = &Value{Name: in, Kind: Input, Shape: s, Data: make([]float32, prod(s))}
	}
	// Classify constants by how ops use them.
	kinds := map[string]Kind{}
	for _, nd := range g.Nodes {
		d, _ := graph.LookupNode(nd)
		for i, in := range nd.Inputs {
			c, ok := g.Consts[in]
			if !ok || c.DType != graph.Float32 {
				continue
			}
			k := Const
			if d != nil && slices.Contains(d.Weights, i) && !opts.Frozen[in] {
				k = Param
			}
			if d != nil && slices.Contains(d.State, i) {
				k = State
			}
			if kindPriority[k] > kindPriority[kinds[in]] {
				kinds[in] = k
			}
		}
	}
	for name, c := range g.Consts {
		k, used := kinds[name]
		if !used {
			k = Const
		}
		p.Values[name] = &Value{Name: name, Kind: k, Shape: slices.Clone(c.Shape), Data: c.Floats()}
		if k == Param {
			p.Params = append(p.Params, p.Values[name])
		}
	}
	sort.Slice(p.Params, func(i, j int) bool { return p.Params[i].Name < p.Params[j].Name })
	needGrad := map[string]bool{}
	if !opts.Inference {
		for _, v := range p.Params {
			needGrad[v.Name] = true
		}
		if opts.InputGrads {
			for _, in := range g.Inputs {
				needGrad[in] = true
			}
		}
	}
	for _, f := range fuse(g, opts) {
		nd := f.node
		back := false
		for _, in := range nd.Inputs {
			back = back || needGrad[in]
		}
		for _, o := range nd.Outputs {
			if o == "" {
				continue
			}
			s, ok := g.Shapes[o]
			if !ok {
				return nil, &graph.NodeError{Node: nd.Name, Op: nd.Op, Msg: fmt.Sprintf("output %q has no inferred shape", o)}
			}
			cs := concrete(s)
			p.Values[o] = &Value{Name: o, Kind: Activation, Shape: cs} // Data: allocActivations
			if back {
				needGrad[o] = true
			}
		}
		p.steps = append(p.steps, step{node: nd, relu: f.relu, reluMax: f.reluMax, backward: back})
	}
	if !opts.Inference {
		p.linkConvBN(opts.KeepGrads)
		p.linkDeferred(opts)
	}
	p.collectBefore()
	p.allocActivations(opts.Inference, opts.Keep)
	p.allocGradients(needGrad, opts.KeepGrads)
	p.planGradients()
	for i := range p.steps {
		nd := p.steps[i].node
		bld := kernelOf(nd)
		if bld == nil {
			return nil, &graph.NodeError{Node: nd.Name, Op: nd.Op, Msg: "the engine cannot run this op (it runs: " + strings.Join(Ops(), ", ") + ")"}
		}
		b := &Build{Plan: p, Graph: g, Node: nd, ReLU: p.steps[i].relu, ReLUMax: p.steps[i].reluMax, stepIndex: i}
		for _, in := range nd.Inputs {
			b.In = append(b.In, p.Values[in]) // nil for ""
		}
		for _, o := range nd.Outputs {
			b.Out = append(b.Out, p.Values[o])
		}
		k, err := bld(b)
		if err != nil {
			return nil, err
		}
		p.steps[i].kernel = k
	}
	p.attachConvBN()
	p.attachDeferred()
	p.scratch = make([]float32, p.scratchLen)
	for _, d := range p.gradDst {
		if d.target != nil {
			d.Buf = p.gradTemp[d.offset : d.offset+len(d.target)]
		}
	}
	return p, nil
}

// planGradients decides, for every (node, input) that receives a gradient, whether the
// kernel writes straight into the value's Grad (the first contribution in backward order)
// or into a temporary that is then added (later contributions). Temporaries of different
// steps share memory; backward never needs to clear gradients first.
func (p *Plan) planGradients() {
	p.gradDst = map[gradKey]*GradDst{}
	written := map[string]bool{}
	for _, o := range p.Graph.Outputs {
		written[o] = true // seeded by the loss
	}
	tempLen := 0
	for i := len(p.steps) - 1; i >= 0; i-- {
		s := p.steps[i]
		if !s.backward {
			continue
		}
		off := 0
		for j, in := range s.node.Inputs {
			v := p.Values[in]
			if in == "" || v == nil || v.Grad == nil {
				continue
			}
			if !written[in] {
				written[in] = true
				p.gradDst[gradKey{s.node, j}] = &GradDst{Buf: v.Grad}
				continue
			}
			p.gradDst[gradKey{s.node, j}] = &GradDst{target: v.Grad, offset: off}
			off += len(v.Grad)
		}
		tempLen = max(tempLen, off)
	}
	p.gradTemp = make([]float32, tempLen)
}

// kindPriority decides the kind of a constant several nodes read: a weight anywhere is a
// parameter.
var kindPriority = map[Kind]int{Const: 1, State: 2, Param: 3}

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// collectGCBytes is the size of activations above which Compile collects garbage before
// allocating a plan (collectBefore).
const collectGCBytes = 64 << 20

// collectBefore runs the garbage collector when the plan's activations are large: a
// plan's buffers, allocated at once, are most of a large model's memory, and a plan an
// earlier phase dropped is garbage the collector would otherwise leave in place until the
// heap has grown by its size again (GOGC), so the new plan would add to it instead of
// reusing its memory. The buffers hold no pointers, so a collection costs little.
func (p *Plan) collectBefore() {
	n := 0
	for _, v := range p.Values {
		if v.Kind == Activation {
			n += prod(v.Shape)
		}
	}
	if 4*n > collectGCBytes {
		runtime.GC()
	}
}

// Scratch returns n floats of the plan's shared scratch.
func (p *Plan) Scratch(n int) []float32 { return p.scratch[:n] }

// Bytes returns the memory the plan allocated for what grows with its batch: the inputs,
// activations and their gradients (each shared buffer counted once), the gradient
// temporaries and the kernels' scratch. Constants and parameters are the graph's.
func (p *Plan) Bytes() int64 {
	seen := map[*float32]bool{}
	n := len(p.scratch) + len(p.gradTemp)
	count := func(b []float32) {
		if cap(b) > 0 && !seen[&b[:1][0]] {
			seen[&b[:1][0]] = true
			n += cap(b)
		}
	}
	for _, v := range p.Values {
		if v.Kind == Activation || v.Kind == Input {
			count(v.Data)
			count(v.Grad)
		}
	}
	return 4 * int64(n)
}

// Value returns the named value or nil.
func (p *Plan) Value(name string) *Value { return p.Values[name] }

// Forward runs every node in order; train selects training behaviour (BatchNorm on batch
// statistics, updating its running statistics).
func (p *Plan) Forward(train bool) {
	if p.observers != nil {
		for _, in := range p.Graph.Inputs {
			p.notify(in)
		}
	}
	for _, s := range p.steps {
		if p.Times != nil {
			t0 := time.Now()
			s.kernel.Forward(train)
			p.Times[s.label()+" forward"] += time.Since(t0)
		} else {
			s.kernel.Forward(train)
		}
		if p.observers != nil {
			for _, o := range s.node.Outputs {
				p.notify(o)
			}
		}
	}
}

// Observe has f called with the values of the named activation or graph input in every
// Forward, as soon as they are computed. An inference plan reuses an activation's memory
// once its last reader has run, so a caller that needs activations of every batch reads
// them here rather than keeping them all (Options.Keep). f must not modify them.
func (p *Plan) Observe(name string, f func(values []float32)) error {
	v := p.Values[name]
	if v == nil || (v.Kind != Activation && v.Kind != Input) {
		return fmt.Errorf("engine: %q is no activation or input of the plan (an output only a ReLU reads is fused away unless Options.Observed names it)", name)
	}
	if p.isDeferred(name) {
		return fmt.Errorf("engine: %q is not written in training (the node reading it computes it unless Options.Observed names it)", name)
	}
	if p.observers == nil {
		p.observers = map[string][]func([]float32){}
	}
	p.observers[name] = append(p.observers[name], f)
	return nil
}

// ObserveGrad has f called with the gradient of the named activation in every Backward, as
// soon as it is complete: after the backward of its last reader, before that of the node
// producing it. A training plan shares gradient memory between activations whose gradients
// do not live at the same time, so a caller that needs gradients of every batch reads them
// here rather than keeping them in buffers of their own (Options.KeepGrads). f must not
// modify them. An observed output gradient of an op whose backward its reader would apply
// (Deferred.DeferGrad) is written, and the op runs its own backward.
func (p *Plan) ObserveGrad(name string, f func(grad []float32)) error {
	v := p.Values[name]
	switch {
	case v == nil || v.Kind != Activation:
		return fmt.Errorf("engine: %q is no activation of the plan", name)
	case p.Graph.IsOutput(name):
		return fmt.Errorf("engine: %q is a graph output: its gradient keeps a buffer of its own, read it after Backward", name)
	}
	if len(v.Grad) == 0 { // a buffer goes to every value a backward step writes the gradient of
		return fmt.Errorf("engine: the plan computes no gradient of %q", name)
	}
	for i, l := range p.convBN {
		if l.lazy && p.steps[i].node.Outputs[0] == name {
			return fmt.Errorf("engine: the gradient of %q is never stored: the Conv producing it computes it from its BatchNormalization's as it reads it (unless Options.KeepGrads names it)", name)
		}
	}
	if p.gradObs == nil {
		p.gradObs = map[string][]func([]float32){}
	}
	p.gradObs[name] = append(p.gradObs[name], f)
	return nil
}

func (p *Plan) notify(name string) {
	for _, f := range p.observers[name] {
		f(p.Values[name].Data)
	}
}

// OpTimes is wall time by op type and pass ("Conv forward", "Conv backward"), which a
// plan accumulates while its Times is set.
type OpTimes map[string]time.Duration

// SetStatsMomentum sets the weight m of the batch statistics with which training-mode
// BatchNormalizations update their running statistics (run ← (1−m)·run + m·batch): 0 leaves
// them alone, 1/(k+1) at the k-th batch makes them the average over the batches. A negative
// m restores each node's own momentum.
func (p *Plan) SetStatsMomentum(m float32) {
	for _, s := range p.steps {
		if bn, ok := s.kernel.(*batchNorm); ok {
			bn.p.Momentum = bn.momentum
			if m >= 0 {
				bn.p.Momentum = m
			}
		}
	}
}

// ZeroGrad clears every gradient buffer.
func (p *Plan) ZeroGrad() {
	for _, v := range p.Values {
		clear(v.Grad)
	}
}

// Backward propagates the gradients already placed in the outputs' Grad (see
// SoftmaxCrossEntropy) back to every parameter. Parameter gradients are overwritten, not
// accumulated across calls.
func (p *Plan) Backward() {
	for i := len(p.steps) - 1; i >= 0; i-- {
		s := p.steps[i]
		if p.gradObs != nil {
			for _, o := range s.node.Outputs {
				for _, f := range p.gradObs[o] {
					f(p.Values[o].Grad)
				}
			}
		}
		if !s.backward {
			continue
		}
		var t0 time.Time
		if p.Times != nil {
			t0 = time.Now()
		}
		s.kernel.Backward()
		for _, d := range s.flush {
			d.flush()
		}
		if p.Times != nil {
			p.Times[s.label()+" backward"] += time.Since(t0)
		}
	}
}

// SoftmaxCrossEntropy computes the mean cross-entropy of the output's logits (batch × classes)
// against labels and stores its gradient in the output's Grad. It returns the loss and the
// number of correct top-1 predictions.
func (p *Plan) SoftmaxCrossEntropy(output string, labels []int32) (loss float64, correct int) {
	v := p.Values[output]
	rows := p.Batch
	cols := len(v.Data) / rows
	for r := 0; r < rows; r++ {
		row := v.Data[r*cols : (r+1)*cols]
		best := 0
		for j, x := range row {
			if x > row[best] {
				best = j
			}
		}
		if best == int(labels[r]) {
			correct++
		}
	}
	loss = softmaxCE(rows, cols, v.Data, labels, v.Grad)
	return loss, correct
}

// softmaxCE computes the mean softmax cross-entropy and, when grad is not nil, its gradient.
func softmaxCE(rows, cols int, x []float32, labels []int32, grad []float32) float64 {
	total := 0.0
	for r := 0; r < rows; r++ {
		row := x[r*cols : (r+1)*cols]
		m := row[0]
		for _, v := range row {
			m = max(m, v)
		}
		sum := 0.0
		for _, v := range row {
			sum += math.Exp(float64(v - m))
		}
		lse := float64(m) + math.Log(sum)
		total += lse - float64(row[labels[r]])
		if grad != nil {
			g := grad[r*cols : (r+1)*cols]
			for j, v := range row {
				g[j] = float32(math.Exp(float64(v)-lse) / float64(rows))
			}
			g[labels[r]] -= float32(1 / float64(rows))
		}
	}
	return total / float64(rows)
}

// fused is a node as the engine runs it: with relu, the node's kernel also applies the ReLU
// that alone read its output, clipped above at reluMax when that is positive (a ReLU6), and
// writes that ReLU's output.
type fused struct {
	node    *graph.Node
	relu    bool
	reluMax float32
}

// fuse returns g's nodes with every node whose op absorbs a ReLU (graph.OpDef.AbsorbsReLU)
// and whose output only a ReLU reads (or a bounded ReLU such as ReLU6, when the op has
// AbsorbsBoundedReLU) merged with that ReLU (one pass over the data instead of two, and one
// buffer fewer). The graph itself is not changed. A node whose output the options name
// (Keep, KeepGrads, Observed) stays apart from its ReLU, since fused that value would not
// exist, as does one whose ReLU's output gradient is in KeepGrads (a fused kernel may mask
// that gradient in place).
func fuse(g *graph.Graph, opts Options) []fused {
	consumers := g.Consumers()
	skip := map[*graph.Node]bool{}
	var out []fused
	for _, n := range g.Nodes {
		if skip[n] {
			continue
		}
		if d, ok := graph.LookupNode(n); ok && d.AbsorbsReLU && len(n.Outputs) == 1 && !g.IsOutput(n.Outputs[0]) &&
			!opts.Keep[n.Outputs[0]] && !opts.KeepGrads[n.Outputs[0]] && !opts.Observed[n.Outputs[0]] {
			if cs := consumers[n.Outputs[0]]; len(cs) == 1 && len(cs[0].Outputs) == 1 && !opts.KeepGrads[cs[0].Outputs[0]] {
				if hi, ok := absorbedReLU(g, d, cs[0]); ok {
					f := *n
					f.Outputs = []string{cs[0].Outputs[0]}
					skip[cs[0]] = true
					out = append(out, fused{node: &f, relu: true, reluMax: hi})
					continue
				}
			}
		}
		out = append(out, fused{node: n})
	}
	return out
}

// absorbedReLU reports whether act, the only reader of the output of a node of op d (which
// absorbs a ReLU), fuses into that node: a ReLU, or with d.AbsorbsBoundedReLU a bounded one.
// hi is the bound (0: none, also for a Clip to [0, +Inf)).
func absorbedReLU(g *graph.Graph, d *graph.OpDef, act *graph.Node) (hi float32, ok bool) {
	a, known := graph.LookupNode(act)
	switch {
	case !known:
		return 0, false
	case a.ReLU:
		return 0, true
	case d.AbsorbsBoundedReLU && a.BoundedReLU != nil:
		hi, ok := a.BoundedReLU(g, act)
		if ok && math.IsInf(float64(hi), 1) {
			hi = 0
		}
		return hi, ok
	}
	return 0, false
}

// momentRole returns node n's part in sharing per-channel batch moments.
func momentRole(n *graph.Node) graph.MomentRole {
	if d, ok := graph.LookupNode(n); ok {
		return d.Moments
	}
	return graph.NoMoments
}

// DistillCrossEntropy is SoftmaxCrossEntropy with knowledge distillation from a teacher's
// logits (batch × classes, same layout): the loss is (1−alpha)·CE(labels) +
// alpha·T²·KL(softmax(teacher/T) ‖ softmax(output/T)), whose gradient it stores in the
// output's Grad. It returns the loss and the number of correct top-1 predictions.
func (p *Plan) DistillCrossEntropy(output string, labels []int32, teacher []float32, temp, alpha float64) (loss float64, correct int) {
	loss, correct = p.SoftmaxCrossEntropy(output, labels)
	v := p.Values[output]
	rows := p.Batch
	cols := len(v.Data) / rows
	loss *= 1 - alpha
	for i := range v.Grad {
		v.Grad[i] *= float32(1 - alpha)
	}
	ps, pt := make([]float64, cols), make([]float64, cols)
	for r := 0; r < rows; r++ {
		softmaxT(v.Data[r*cols:(r+1)*cols], temp, ps)
		softmaxT(teacher[r*cols:(r+1)*cols], temp, pt)
		kl := 0.0
		for j := range ps {
			if pt[j] > 0 {
				kl += pt[j] * (math.Log(pt[j]) - math.Log(max(ps[j], 1e-300)))
			}
		}
		loss += alpha * temp * temp * kl / float64(rows)
		if v.Grad != nil {
			// d/ds_j of T²·KL = T·(ps_j − pt_j).
			g := v.Grad[r*cols : (r+1)*cols]
			for j := range g {
				g[j] += float32(alpha * temp * (ps[j] - pt[j]) / float64(rows))
			}
		}
	}
	return loss, correct
}

// softmaxT writes softmax(x/t) to out.
func softmaxT(x []float32, t float64, out []float64) {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, float64(v)/t)
	}
	sum := 0.0
	for j, v := range x {
		out[j] = math.Exp(float64(v)/t - m)
		sum += out[j]
	}
	for j := range out {
		out[j] /= sum
	}
}
