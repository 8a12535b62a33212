package onnxio

import "github.com/qnas/qnas/onnxio/onnxpb"

// walker visits every tensor of a model: initializers, sparse initializers, tensors in
// node attributes (Constant values and the like) and in function attribute defaults,
// in subgraphs at any depth, in function bodies and in training graphs. It enforces
// the graph depth and node count limits on the way.
type walker struct {
	lim   Limits
	nodes int
	// tensor is called for every dense tensor, including a sparse tensor's values and
	// indices (before sparse is called for the sparse tensor).
	tensor func(p *path, t *onnxpb.TensorProto) error
	// sparse, if set, is called for every sparse tensor.
	sparse func(p *path, s *onnxpb.SparseTensorProto) error
}

func (w *walker) model(m *onnxpb.ModelProto) error {
	if m.Graph != nil {
		if err := w.graph(&path{fname: "graph", index: -1}, m.Graph, 1); err != nil {
			return err
		}
	}
	for i, ti := range m.TrainingInfo {
		p := (*path)(nil).at("training_info", i)
		if ti.Initialization != nil {
			if err := w.graph(p.field("initialization"), ti.Initialization, 1); err != nil {
				return err
			}
		}
		if ti.Algorithm != nil {
			if err := w.graph(p.field("algorithm"), ti.Algorithm, 1); err != nil {
				return err
			}
		}
	}
	for i, f := range m.Functions {
		p := (*path)(nil).named("functions", f.GetName(), i)
		for j, a := range f.AttributeProto {
			if err := w.attr(p.named("attribute_proto", a.GetName(), j), a, 1); err != nil {
				return err
			}
		}
		if err := w.nodeList(p, f.Node, 1); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) graph(p *path, g *onnxpb.GraphProto, depth int) error {
	if depth > w.lim.MaxGraphDepth {
		return errAt(p, "graphs are nested more than %d deep", w.lim.MaxGraphDepth)
	}
	for i, t := range g.Initializer {
		if err := w.tensorAt(p.named("initializer", t.GetName(), i), t); err != nil {
			return err
		}
	}
	for i, s := range g.SparseInitializer {
		if err := w.sparseAt(p.named("sparse_initializer", s.GetValues().GetName(), i), s); err != nil {
			return err
		}
	}
	return w.nodeList(p, g.Node, depth)
}

func (w *walker) nodeList(p *path, nodes []*onnxpb.NodeProto, depth int) error {
	if len(nodes) > w.lim.MaxNodes-w.nodes {
		return errAt(p, "more than %d nodes in the model", w.lim.MaxNodes)
	}
	w.nodes += len(nodes)
	for i, n := range nodes {
		np := p.at("node", i)
		for j, a := range n.Attribute {
			if err := w.attr(np.named("attribute", a.GetName(), j), a, depth); err != nil {
				return err
			}
		}
	}
	return nil
}

// attr visits the tensors and subgraphs of an attribute of a node in a graph at depth.
func (w *walker) attr(p *path, a *onnxpb.AttributeProto, depth int) error {
	if a.T != nil {
		if err := w.tensorAt(p.field("t"), a.T); err != nil {
			return err
		}
	}
	for i, t := range a.Tensors {
		if err := w.tensorAt(p.at("tensors", i), t); err != nil {
			return err
		}
	}
	if a.SparseTensor != nil {
		if err := w.sparseAt(p.field("sparse_tensor"), a.SparseTensor); err != nil {
			return err
		}
	}
	for i, s := range a.SparseTensors {
		if err := w.sparseAt(p.at("sparse_tensors", i), s); err != nil {
			return err
		}
	}
	if a.G != nil {
		if err := w.graph(p.field("g"), a.G, depth+1); err != nil {
			return err
		}
	}
	for i, g := range a.Graphs {
		if err := w.graph(p.at("graphs", i), g, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) tensorAt(p *path, t *onnxpb.TensorProto) error {
	if w.tensor == nil {
		return nil
	}
	return w.tensor(p, t)
}

func (w *walker) sparseAt(p *path, s *onnxpb.SparseTensorProto) error {
	if s.Values != nil {
		if err := w.tensorAt(p.field("values"), s.Values); err != nil {
			return err
		}
	}
	if s.Indices != nil {
		if err := w.tensorAt(p.field("indices"), s.Indices); err != nil {
			return err
		}
	}
	if w.sparse != nil {
		return w.sparse(p, s)
	}
	return nil
}
