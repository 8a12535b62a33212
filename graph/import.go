package graph

import (
	"container/heap"
	"fmt"
	"slices"

	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
)

// ImportOptions controls FromONNX.
type ImportOptions struct {
	Dir    string        // folder external data is relative to
	Limits onnxio.Limits // zero value: onnxio.DefaultLimits()
	// FixedShapes keeps every input dimension as written (all must be fixed) instead of
	// taking the first as the symbolic batch; for conformance tests of single ops.
	FixedShapes bool
	// GraphLimits bounds shape inference and constant folding; it is kept in the
	// imported Graph's Limits (zero value: DefaultLimits()).
	GraphLimits Limits
}

// Load reads an ONNX model file and imports it (see FromONNX). Errors name the file.
func Load(path string, opts ImportOptions) (*Graph, error) {
	if opts.Limits == (onnxio.Limits{}) {
		opts.Limits = onnxio.DefaultLimits()
	}
	m, err := onnxio.Load(path, opts.Limits)
	if err != nil {
		return nil, err
	}
	opts.Dir = m.Dir
	g, err := FromONNX(m.Proto, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	g.Source.Path = path
	return g, nil
}

// FromONNX imports a model: constants from initializers (external data read relative to
// dir), graph inputs with the first dimension taken as the batch, nodes in topological
// order, constant subgraphs folded, and the shapes of all values. It refuses ops outside the registry, other op domains,
// and subgraph attributes, naming the node at fault.
func FromONNX(m *onnxpb.ModelProto, opts ImportOptions) (*Graph, error) {
	dir, lim := opts.Dir, opts.Limits
	if lim == (onnxio.Limits{}) {
		lim = onnxio.DefaultLimits()
	}
	gp := m.GetGraph()
	if gp == nil {
		return nil, fmt.Errorf("model has no graph")
	}
	g := New(gp.GetName())
	g.Limits = opts.GraphLimits
	g.Source = SourceInfo{IRVersion: m.GetIrVersion(), ProducerName: m.GetProducerName(), ProducerVersion: m.GetProducerVersion()}
	for _, os := range m.GetOpsetImport() {
		if d := os.GetDomain(); d == "" || d == "ai.onnx" {
			g.Opset = int(os.GetVersion())
		}
	}
	if g.Opset == 0 {
		return nil, fmt.Errorf("model imports no version of the default ONNX operator set")
	}
	for _, p := range m.GetMetadataProps() {
		g.Meta[p.GetKey()] = p.GetValue()
	}
	for i, t := range gp.GetInitializer() {
		name := t.GetName()
		if name == "" {
			return nil, fmt.Errorf("graph.initializer[%d] has no name", i)
		}
		if _, dup := g.Consts[name]; dup {
			return nil, fmt.Errorf("graph.initializer[%q] is defined twice", name)
		}
		ct, err := tensorFromONNX(t, dir, lim)
		if err != nil {
			return nil, fmt.Errorf("graph.initializer[%q]: %w", name, err)
		}
		g.Consts[name] = ct
	}
	if len(gp.GetSparseInitializer()) > 0 {
		return nil, fmt.Errorf("graph.sparse_initializer: sparse tensors are not supported")
	}
	names := map[string]bool{}
	next := map[string]int{} // per base name, the suffix to try first (keeps renaming linear)
	for i, np := range gp.GetNode() {
		n, err := nodeFromONNX(np, i, dir, lim)
		if err != nil {
			return nil, err
		}
		base := n.Name
		if names[base] {
			k := max(next[base], 2)
			for ; names[fmt.Sprintf("%s_%d", base, k)]; k++ {
			}
			n.Name = fmt.Sprintf("%s_%d", base, k)
			next[base] = k + 1
		}
		names[n.Name] = true
		g.Nodes = append(g.Nodes, n)
	}
	for _, vi := range gp.GetInput() {
		name := vi.GetName()
		if _, isConst := g.Consts[name]; isConst {
			continue // an initializer listed as input (IR < 4 style): a constant here
		}
		s, err := inputShape(vi, opts.FixedShapes)
		if err == nil {
			_, err = checkedElems(s.PerSample(), g.limits().MaxActivationElems)
		}
		if err != nil {
			return nil, fmt.Errorf("graph.input[%q]: %w", name, err)
		}
		g.Inputs = append(g.Inputs, name)
		g.Shapes[name] = s
	}
	if len(g.Inputs) == 0 {
		return nil, fmt.Errorf("graph has no non-constant input")
	}
	for _, vi := range gp.GetOutput() {
		g.Outputs = append(g.Outputs, vi.GetName())
	}
	if len(g.Outputs) == 0 {
		return nil, fmt.Errorf("graph has no output")
	}
	if err := g.SortTopological(); err != nil {
		return nil, err
	}
	// Shapes are inferred while folding constants: a Reshape's target is often computed
	// by a Shape→Gather→Concat chain that must be folded before the Reshape is inferred.
	if err := g.FoldConstants(); err != nil {
		return nil, err
	}
	return g, nil
}

func tensorFromONNX(t *onnxpb.TensorProto, dir string, lim onnxio.Limits) (*Tensor, error) {
	shape := make([]int, len(t.GetDims()))
	for i, d := range t.GetDims() {
		if d < 0 || d > 1<<40 {
			return nil, fmt.Errorf("dims %v are invalid", t.GetDims())
		}
		shape[i] = int(d)
	}
	dt := t.GetDataType()
	switch {
	case onnxio.IsFloatType(dt):
		v, err := onnxio.TensorFloat32s(t, dir, lim)
		if err != nil {
			return nil, err
		}
		return NewFloat(shape, v), nil
	case onnxio.IsIntegerType(dt):
		v, err := onnxio.TensorInt64s(t, dir, lim)
		if err != nil {
			return nil, err
		}
		it, ok := narrowTypes[dt]
		if !ok {
			it = Int64
		}
		return NewInts(it, shape, v), nil
	}
	return nil, fmt.Errorf("element type %s is not supported", onnxio.DataTypeName(dt))
}

// narrowTypes maps the ONNX integer types whose width quantized models rely on to theirs;
// every other integer type is read as Int64.
var narrowTypes = map[int32]DType{onnxio.TypeInt8: Int8, onnxio.TypeUint8: Uint8, onnxio.TypeInt4: Int4,
	onnxio.TypeUint4: Uint4, onnxio.TypeInt32: Int32}

func inputShape(vi *onnxpb.ValueInfoProto, fixed bool) (Shape, error) {
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return nil, fmt.Errorf("is not a tensor")
	}
	if et := tt.GetElemType(); et != int32(onnxpb.TensorProto_FLOAT) {
		return nil, fmt.Errorf("has element type %s; qnas models take float inputs", onnxio.DataTypeName(et))
	}
	if tt.GetShape() == nil {
		return nil, fmt.Errorf("has no shape; qnas needs the input's C, H and W")
	}
	dims := tt.GetShape().GetDim()
	s := make(Shape, len(dims))
	for i, d := range dims {
		if i == 0 && !fixed {
			s[i] = Batch // the batch, whether named, unknown or fixed at export
			continue
		}
		v, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue)
		if !ok || v.DimValue <= 0 || v.DimValue > 1<<24 {
			return nil, fmt.Errorf("dimension %d is not a fixed positive size; qnas needs the input's C, H and W", i)
		}
		s[i] = int(v.DimValue)
	}
	return s, nil
}

func nodeFromONNX(np *onnxpb.NodeProto, index int, dir string, lim onnxio.Limits) (*Node, error) {
	n := &Node{Name: np.GetName(), Op: np.GetOpType(), Inputs: slices.Clone(np.GetInput()),
		Outputs: slices.Clone(np.GetOutput()), Doc: np.GetDocString(), Attrs: map[string]*Attr{}}
	if n.Name == "" {
		n.Name = fmt.Sprintf("%s_%d", n.Op, index)
	}
	if d := np.GetDomain(); d != "ai.onnx" {
		n.Domain = d
	}
	if _, ok := LookupNode(n); !ok {
		return nil, &UnsupportedError{Node: n.Name, Op: n.Op, Domain: n.Domain}
	}
	for _, ap := range np.GetAttribute() {
		a, err := attrFromONNX(ap, dir, lim)
		if err != nil {
			return nil, &NodeError{Node: n.Name, Op: n.Op, Msg: fmt.Sprintf("attribute %q: %v", ap.GetName(), err)}
		}
		n.Attrs[ap.GetName()] = a
	}
	return n, nil
}

func attrFromONNX(ap *onnxpb.AttributeProto, dir string, lim onnxio.Limits) (*Attr, error) {
	typ := ap.GetType()
	if typ == onnxpb.AttributeProto_UNDEFINED { // old models leave type unset: infer it
		switch {
		case len(ap.GetInts()) > 0:
			typ = onnxpb.AttributeProto_INTS
		case len(ap.GetFloats()) > 0:
			typ = onnxpb.AttributeProto_FLOATS
		case len(ap.GetStrings()) > 0:
			typ = onnxpb.AttributeProto_STRINGS
		case ap.T != nil:
			typ = onnxpb.AttributeProto_TENSOR
		case ap.G != nil:
			typ = onnxpb.AttributeProto_GRAPH
		case ap.S != nil:
			typ = onnxpb.AttributeProto_STRING
		case ap.F != nil:
			typ = onnxpb.AttributeProto_FLOAT
		case ap.I != nil:
			typ = onnxpb.AttributeProto_INT
		}
	}
	switch typ {
	case onnxpb.AttributeProto_INT:
		return &Attr{Kind: AttrInt, I: ap.GetI()}, nil
	case onnxpb.AttributeProto_FLOAT:
		return &Attr{Kind: AttrFloat, F: ap.GetF()}, nil
	case onnxpb.AttributeProto_STRING:
		return &Attr{Kind: AttrString, S: string(ap.GetS())}, nil
	case onnxpb.AttributeProto_INTS:
		return &Attr{Kind: AttrInts, Ints: slices.Clone(ap.GetInts())}, nil
	case onnxpb.AttributeProto_FLOATS:
		return &Attr{Kind: AttrFloats, Floats: slices.Clone(ap.GetFloats())}, nil
	case onnxpb.AttributeProto_STRINGS:
		var ss []string
		for _, s := range ap.GetStrings() {
			ss = append(ss, string(s))
		}
		return &Attr{Kind: AttrStrings, Strings: ss}, nil
	case onnxpb.AttributeProto_TENSOR:
		t, err := tensorFromONNX(ap.GetT(), dir, lim)
		if err != nil {
			return nil, err
		}
		return &Attr{Kind: AttrTensor, T: t}, nil
	}
	return nil, fmt.Errorf("attributes of type %s are not supported", typ)
}

// SortTopological orders the nodes so every value is produced before it is read, keeping the
// input order among independent nodes. It reports undefined values, values produced twice,
// and cycles.
func (g *Graph) SortTopological() error {
	avail := map[string]bool{}
	for _, in := range g.Inputs {
		avail[in] = true
	}
	for name := range g.Consts {
		avail[name] = true
	}
	producer := map[string]*Node{}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o == "" {
				continue
			}
			if avail[o] {
				return &NodeError{n.Name, n.Op, fmt.Sprintf("output %q redefines a graph input or initializer", o)}
			}
			if p, dup := producer[o]; dup {
				return &NodeError{n.Name, n.Op, fmt.Sprintf("output %q is also produced by node %q", o, p.Name)}
			}
			producer[o] = n
		}
	}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in != "" && !avail[in] && producer[in] == nil {
				return &NodeError{n.Name, n.Op, fmt.Sprintf("reads %q, which no node, input or initializer defines", in)}
			}
		}
	}
	// Kahn's algorithm; among ready nodes the earliest in the file goes first, so a graph
	// that is already sorted keeps its order.
	waiting := make([]int, len(g.Nodes))
	readers := map[string][]int{}
	for i, n := range g.Nodes {
		seen := map[string]bool{}
		for _, in := range n.Inputs {
			if in != "" && !avail[in] && !seen[in] {
				seen[in] = true
				waiting[i]++
				readers[in] = append(readers[in], i)
			}
		}
	}
	ready := &intHeap{}
	for i := range g.Nodes {
		if waiting[i] == 0 {
			heap.Push(ready, i)
		}
	}
	order := make([]*Node, 0, len(g.Nodes))
	for ready.Len() > 0 {
		i := heap.Pop(ready).(int)
		n := g.Nodes[i]
		order = append(order, n)
		for _, o := range n.Outputs {
			if o == "" {
				continue
			}
			avail[o] = true
			for _, r := range readers[o] {
				if waiting[r]--; waiting[r] == 0 {
					heap.Push(ready, r)
				}
			}
		}
	}
	if len(order) < len(g.Nodes) {
		for i, n := range g.Nodes {
			if waiting[i] > 0 {
				return &NodeError{n.Name, n.Op, "is part of a cycle"}
			}
		}
	}
	g.Nodes = order
	for _, o := range g.Outputs {
		if !avail[o] {
			return fmt.Errorf("graph output %q is not produced by any node", o)
		}
	}
	return nil
}

type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
