package graph

import (
	"fmt"
	"sort"

	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// WriteOptions controls ToONNX.
type WriteOptions struct {
	ProducerVersion string
	IRVersion       int64 // 0: 8 (what onnx 1.12's checker accepts)
}

// ToONNX converts g to an ONNX model: nodes in order with their attributes and doc strings,
// constants as initializers (float32 or int64, sorted by name), inputs and outputs with the
// batch as the symbolic dimension "N", the source opset, and g.Meta as metadata_props.
// LayerNormalization and Gelu nodes in a graph of an opset that predates them are written
// as their decompositions (see lowerForOpset).
func (g *Graph) ToONNX(opts WriteOptions) (*onnxpb.ModelProto, error) {
	ir := opts.IRVersion
	if ir == 0 {
		ir = 8
	}
	gp := &onnxpb.GraphProto{Name: proto.String(g.Name)}
	for _, in := range g.Inputs {
		gp.Input = append(gp.Input, valueInfo(in, g.Shapes[in]))
	}
	for _, o := range g.Outputs {
		s, ok := g.Shapes[o]
		if !ok {
			return nil, fmt.Errorf("graph output %q has no shape", o)
		}
		gp.Output = append(gp.Output, valueInfo(o, s))
	}
	nodes, extra, err := g.lowerForOpset()
	if err != nil {
		return nil, err
	}
	// A constant that only nodes rewritten for the opset read (a ReduceMean's axes input
	// written as an attribute) is not written.
	read := map[string]bool{}
	for _, n := range nodes {
		for _, in := range n.Inputs {
			read[in] = true
		}
	}
	dropped := map[string]bool{}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if _, ok := g.Consts[in]; ok && !read[in] && !g.IsOutput(in) {
				dropped[in] = true
			}
		}
	}
	names := make([]string, 0, len(g.Consts)+len(extra))
	for k := range g.Consts {
		if !dropped[k] {
			names = append(names, k)
		}
	}
	for k := range extra {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t := g.Consts[k]
		if t == nil {
			t = extra[k]
		}
		gp.Initializer = append(gp.Initializer, tensorToONNX(k, t))
	}
	for _, n := range nodes {
		np := &onnxpb.NodeProto{Name: proto.String(n.Name), OpType: proto.String(n.Op),
			Input: append([]string{}, n.Inputs...), Output: append([]string{}, n.Outputs...)}
		if n.Doc != "" {
			np.DocString = proto.String(n.Doc)
		}
		if n.Domain != "" {
			np.Domain = proto.String(n.Domain)
		}
		keys := make([]string, 0, len(n.Attrs))
		for k := range n.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			np.Attribute = append(np.Attribute, attrToONNX(k, n.Attrs[k]))
		}
		gp.Node = append(gp.Node, np)
	}
	m := &onnxpb.ModelProto{
		IrVersion:       proto.Int64(ir),
		ProducerName:    proto.String("qnas"),
		ProducerVersion: proto.String(opts.ProducerVersion),
		OpsetImport:     []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(int64(g.Opset))}},
		Graph:           gp,
	}
	domains := map[string]bool{}
	for _, n := range g.Nodes {
		if n.Domain != "" && !domains[n.Domain] {
			domains[n.Domain] = true
			m.OpsetImport = append(m.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String(n.Domain), Version: proto.Int64(1)})
		}
	}
	keys := make([]string, 0, len(g.Meta))
	for k := range g.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m.MetadataProps = append(m.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(k), Value: proto.String(g.Meta[k])})
	}
	return m, nil
}

func valueInfo(name string, s Shape) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range s {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d == Batch {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Shape: shape}}}}
}

func tensorToONNX(name string, t *Tensor) *onnxpb.TensorProto {
	dims := make([]int64, len(t.Shape))
	for i, d := range t.Shape {
		dims[i] = int64(d)
	}
	switch t.DType {
	case Int64:
		return onnxio.NewInt64Tensor(name, dims, t.I)
	case Int32:
		v := make([]int32, len(t.I))
		for i, x := range t.I {
			v[i] = int32(x)
		}
		return onnxio.NewInt32Tensor(name, dims, v)
	case Int8, Int4:
		v := make([]int8, len(t.I))
		for i, x := range t.I {
			v[i] = int8(x)
		}
		if t.DType == Int4 {
			return onnxio.NewInt4Tensor(name, dims, v)
		}
		return onnxio.NewInt8Tensor(name, dims, v)
	case Uint8, Uint4:
		v := make([]uint8, len(t.I))
		for i, x := range t.I {
			v[i] = uint8(x)
		}
		if t.DType == Uint4 {
			return onnxio.NewUint4Tensor(name, dims, v)
		}
		return onnxio.NewUint8Tensor(name, dims, v)
	}
	return onnxio.NewFloat32Tensor(name, dims, t.F)
}

func attrToONNX(name string, a *Attr) *onnxpb.AttributeProto {
	p := &onnxpb.AttributeProto{Name: proto.String(name)}
	switch a.Kind {
	case AttrInt:
		p.Type, p.I = onnxpb.AttributeProto_INT.Enum(), proto.Int64(a.I)
	case AttrFloat:
		p.Type, p.F = onnxpb.AttributeProto_FLOAT.Enum(), proto.Float32(a.F)
	case AttrString:
		p.Type, p.S = onnxpb.AttributeProto_STRING.Enum(), []byte(a.S)
	case AttrInts:
		p.Type, p.Ints = onnxpb.AttributeProto_INTS.Enum(), append([]int64{}, a.Ints...)
	case AttrFloats:
		p.Type, p.Floats = onnxpb.AttributeProto_FLOATS.Enum(), append([]float32{}, a.Floats...)
	case AttrStrings:
		p.Type = onnxpb.AttributeProto_STRINGS.Enum()
		for _, s := range a.Strings {
			p.Strings = append(p.Strings, []byte(s))
		}
	case AttrTensor:
		p.Type, p.T = onnxpb.AttributeProto_TENSOR.Enum(), tensorToONNX("", a.T)
	}
	return p
}
