package graph

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// OpDef declares one operator kind. Every part of qnas that needs to know about an op —
// the importer, shape inference, constant folding, the cost model, the error for an
// unsupported op — reads this table; later stages register their own ops (the supernet's
// mixed ops, the engine's kernels) through Register.
type OpDef struct {
	Op     string // ONNX op_type
	Domain string // operator set domain ("" : the default ONNX domain)
	Doc    string // one line, for `qnas ops` and error messages
	// Internal marks an op of qnas's own training graphs (the supernet's fake quantizers
	// and mixed ops), which no model a user brings holds: the error for an unsupported op
	// leaves it out of the ops it lists.
	Internal bool

	// MinInputs and MaxInputs bound the input count (MaxInputs < 0: no bound); likewise
	// for outputs. Omitted optional inputs count as present ("" names).
	MinInputs, MaxInputs   int
	MinOutputs, MaxOutputs int

	// Infer returns the output shapes from c.In (and c.Const for shape-like inputs).
	Infer func(c *Ctx) ([]Shape, error)

	// Eval computes the outputs when every input is constant (or, with FoldsOnShape, when
	// only the input shapes are needed). Nil: the op is never folded.
	Eval         func(c *Ctx) ([]*Tensor, error)
	FoldsOnShape bool

	// Cost returns the per-sample cost of one node, nil for ops that cost nothing in
	// qnas's models (elementwise ops, pools, reshapes).
	Cost func(c *Ctx, out []Shape) LayerCost

	// Weights lists the inputs that are learnable parameters when constant (Conv: 1, 2).
	Weights []int
	// State lists the inputs that are neither learned nor fixed: statistics the op keeps
	// (BatchNormalization's running mean and variance), which checkpoints carry.
	State []int

	// Kernel runs the op: the engine's builder (an engine.Builder), attached by the engine
	// to the ops the IR defines, or registered with a new op (engine.RegisterOp). Nil for
	// ops nothing runs.
	Kernel any

	// Fusion roles, which the engine reads instead of op names: ReLU marks max(x, 0), which
	// a producer with AbsorbsReLU applies itself when the ReLU alone reads its output;
	// BoundedReLU, when set, reports whether node n of graph g computes min(max(x, 0), hi)
	// with hi > 0 (ReLU6 is a Clip to [0, 6]) and returns hi (+Inf: a plain ReLU), which a
	// producer that also has AbsorbsBoundedReLU applies the same way; Moments marks a
	// producer that can gather its output's per-channel batch moments (MomentSource) and a
	// consumer that normalizes with them (MomentSink).
	ReLU, AbsorbsReLU  bool
	BoundedReLU        func(g *Graph, n *Node) (hi float32, ok bool)
	AbsorbsBoundedReLU bool
	Moments            MomentRole
	// MapsInput marks an op whose kernel can read its input 0 through the per-channel
	// affine map (and ReLU) of a BatchNormalization whose output it alone reads, so that
	// the engine need not store that output (engine.InputMapper).
	MapsInput bool
	// DefersOutput marks an elementwise op whose kernel can leave its output unwritten in
	// training when the one node reading it, a Conv on a direct path, computes it as it
	// reads the op's input (engine.OutputDeferrer). Its backward must be elementwise too and
	// correct in place: when the op alone reads its input, the engine gives its output and
	// input gradients one buffer.
	DefersOutput bool
}

// MomentRole is an op's part in sharing per-channel batch moments (see OpDef.Moments).
type MomentRole uint8

// Moment roles.
const (
	NoMoments MomentRole = iota
	MomentSource
	MomentSink
)

// Ctx is what an op's rules see of one node: its attributes, the shapes of its inputs, and
// the values of the inputs that are constant.
type Ctx struct {
	Node  *Node
	In    []Shape   // nil for an absent optional input
	Const []*Tensor // nil unless the input is constant
	Opset int
	// Limits are the graph's resource limits, defaults filled in.
	Limits Limits
}

// Errorf returns an error naming the node and its op.
func (c *Ctx) Errorf(format string, args ...any) error {
	return &NodeError{Node: c.Node.Name, Op: c.Node.Op, Msg: fmt.Sprintf(format, args...)}
}

// NodeError is a problem with one node of a model.
type NodeError struct {
	Node, Op, Msg string
}

func (e *NodeError) Error() string { return fmt.Sprintf("node %q (%s): %s", e.Node, e.Op, e.Msg) }

// Has reports whether input i is present.
func (c *Ctx) Has(i int) bool { return i < len(c.Node.Inputs) && c.Node.Inputs[i] != "" }

// ConstInts returns input i as a constant integer vector, or an error naming the input.
func (c *Ctx) ConstInts(i int, what string) ([]int64, error) {
	if i >= len(c.Const) || c.Const[i] == nil {
		return nil, c.Errorf("%s (input %d, %q) must be a constant", what, i, c.Node.Input(i))
	}
	return c.Const[i].Ints(), nil
}

// IntsAttrOrInput reads a list given as attribute name in older opsets and as input i in
// newer ones; ok is false when neither is present.
func (c *Ctx) IntsAttrOrInput(name string, i int) (v []int64, ok bool, err error) {
	if c.Node.Has(name) {
		v, err = c.Node.Ints(name, nil)
		return v, true, err
	}
	if c.Has(i) {
		v, err = c.ConstInts(i, name)
		return v, true, err
	}
	return nil, false, nil
}

// opKey identifies an op kind: its domain ("" for ONNX's default) and type.
type opKey struct{ domain, op string }

var registry = map[opKey]*OpDef{}

// canonicalDomain maps ONNX's two names of the default domain to "".
func canonicalDomain(d string) string {
	if d == "ai.onnx" {
		return ""
	}
	return d
}

// Register adds an op kind, keyed by its domain and type; it panics on a duplicate, which
// is a programming error.
func Register(d *OpDef) {
	k := opKey{canonicalDomain(d.Domain), d.Op}
	if _, dup := registry[k]; dup {
		panic("graph: op registered twice: " + qualified(k))
	}
	if d.Infer == nil {
		panic("graph: op without shape rule: " + qualified(k))
	}
	registry[k] = d
}

// LookupOp returns the definition of the op kind op of domain.
func LookupOp(domain, op string) (*OpDef, bool) {
	d, ok := registry[opKey{canonicalDomain(domain), op}]
	return d, ok
}

// LookupNode returns the definition of node n's op.
func LookupNode(n *Node) (*OpDef, bool) { return LookupOp(n.Domain, n.Op) }

// Ops returns the names of all registered op kinds (domain::type outside the default
// domain), sorted.
func Ops() []string { return ops(true) }

func ops(internal bool) []string {
	names := make([]string, 0, len(registry))
	for k, d := range registry {
		if internal || !d.Internal {
			names = append(names, qualified(k))
		}
	}
	sort.Strings(names)
	return names
}

func qualified(k opKey) string {
	if k.domain == "" {
		return k.op
	}
	return k.domain + "::" + k.op
}

// UnsupportedError is an op the IR does not know.
type UnsupportedError struct {
	Node, Op, Domain string
}

func (e *UnsupportedError) Error() string {
	op := e.Op
	if e.Domain != "" && e.Domain != "ai.onnx" {
		op = e.Domain + "::" + e.Op
	}
	if q := strconv.Quote(op); q[1:len(q)-1] != op || op == "" {
		op = q // a name with control characters or quotes, or none: show it quoted, on one line
	}
	return fmt.Sprintf("node %q: unsupported op %s (supported: %s)", e.Node, op, strings.Join(ops(false), ", "))
}

// ctx builds the rule context of node n from the graph's shapes and constants.
func (g *Graph) ctx(n *Node) *Ctx {
	c := &Ctx{Node: n, In: make([]Shape, len(n.Inputs)), Const: make([]*Tensor, len(n.Inputs)), Opset: g.Opset,
		Limits: g.limits()}
	for i, in := range n.Inputs {
		if in == "" {
			continue
		}
		if t, ok := g.Consts[in]; ok {
			c.Const[i] = t
			c.In[i] = append(Shape{}, t.Shape...)
			continue
		}
		c.In[i] = g.Shapes[in]
	}
	return c
}

func checkArity(d *OpDef, n *Node) error {
	ni, no := len(n.Inputs), len(n.Outputs)
	if ni < d.MinInputs || (d.MaxInputs >= 0 && ni > d.MaxInputs) {
		return &NodeError{n.Name, n.Op, fmt.Sprintf("has %d inputs, want %s", ni, bounds(d.MinInputs, d.MaxInputs))}
	}
	if no < d.MinOutputs || (d.MaxOutputs >= 0 && no > d.MaxOutputs) {
		return &NodeError{n.Name, n.Op, fmt.Sprintf("has %d outputs, want %s", no, bounds(d.MinOutputs, d.MaxOutputs))}
	}
	for i := 0; i < d.MinInputs && i < ni; i++ {
		if n.Inputs[i] == "" {
			return &NodeError{n.Name, n.Op, fmt.Sprintf("required input %d is empty", i)}
		}
	}
	return nil
}

func bounds(lo, hi int) string {
	switch {
	case hi < 0:
		return fmt.Sprintf("at least %d", lo)
	case lo == hi:
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d to %d", lo, hi)
}
