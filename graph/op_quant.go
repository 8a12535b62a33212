package graph

// QDQ ops: what quantized ONNX models (qnas's exports among them) are made of. They are
// never constant-folded, so a quantized weight keeps its integers, scales and zero points in
// the graph, where export and inspect read them.

func init() {
	for _, op := range []string{"QuantizeLinear", "DequantizeLinear"} {
		Register(&OpDef{
			Op: op, Doc: map[string]string{
				"QuantizeLinear":   "y = saturate(round(x / scale) + zero_point), per tensor or per axis",
				"DequantizeLinear": "y = (x − zero_point) · scale, per tensor or per axis",
			}[op],
			MinInputs: 2, MaxInputs: 3, MinOutputs: 1, MaxOutputs: 1,
			Infer: inferQDQ,
		})
	}
}

// QDQParams is the resolved quantization of one QuantizeLinear or DequantizeLinear node.
type QDQParams struct {
	Axis  int // the quantized axis of a per-axis node; -1 for per tensor
	Scale []float32
	Zero  []int64 // zero points, one per scale (zeros when the input is absent)
	Type  DType   // the integer type: of the zero point, else uint8 (QuantizeLinear) or of x
}

// inferQDQ checks the scale and zero point against x and returns x's shape.
func inferQDQ(c *Ctx) ([]Shape, error) {
	if _, err := qdqParams(c); err != nil {
		return nil, err
	}
	return []Shape{c.In[0]}, nil
}

// QDQ resolves the parameters of a QuantizeLinear or DequantizeLinear node of g; the scale
// and zero point must be constants.
func (g *Graph) QDQ(n *Node) (QDQParams, error) { return qdqParams(g.ctx(n)) }

func qdqParams(c *Ctx) (QDQParams, error) {
	var p QDQParams
	x, s := c.In[0], c.In[1]
	if bs, err := c.Node.Int("block_size", 0); err != nil {
		return p, err
	} else if bs != 0 {
		return p, c.Errorf("blocked quantization (block_size %d) is not supported", bs)
	}
	if c.Const[1] == nil || c.Const[1].DType != Float32 {
		return p, c.Errorf("scale %q must be a float constant", c.Node.Input(1))
	}
	p.Scale = c.Const[1].F
	p.Axis = -1
	switch {
	case len(s) == 0 || len(s) == 1 && s[0] == 1:
	case len(s) == 1:
		axis, err := c.Node.Int("axis", 1)
		if err != nil {
			return p, err
		}
		a, err := normAxis(c, axis, len(x))
		if err != nil {
			return p, err
		}
		if x[a] != s[0] {
			return p, c.Errorf("scale %q has %d values for axis %d of size %d", c.Node.Input(1), s[0], a, x[a])
		}
		p.Axis = a
	default:
		return p, c.Errorf("scale %q has shape %v; want a scalar or a vector", c.Node.Input(1), s)
	}
	for _, v := range p.Scale {
		if !(v > 0) && c.Node.Op == "QuantizeLinear" {
			return p, c.Errorf("scale %q holds %g; a QuantizeLinear scale must be positive", c.Node.Input(1), v)
		}
	}
	p.Type = Uint8
	if c.Node.Op == "DequantizeLinear" {
		if t := c.Const[0]; t != nil && t.DType.IsInt() {
			p.Type = t.DType
		}
	}
	p.Zero = make([]int64, len(p.Scale))
	if c.Has(2) {
		z := c.Const[2]
		if z == nil || !z.DType.IsInt() {
			return p, c.Errorf("zero point %q must be an integer constant", c.Node.Input(2))
		}
		if z.Len() != len(p.Scale) {
			return p, c.Errorf("zero point %q has %d values, scale %d", c.Node.Input(2), z.Len(), len(p.Scale))
		}
		if z.DType == Int64 {
			return p, c.Errorf("zero point %q is int64; QDQ takes 8- or 4-bit integer types", c.Node.Input(2))
		}
		copy(p.Zero, z.I)
		p.Type = z.DType
	}
	if t := c.Const[0]; c.Node.Op == "DequantizeLinear" && t != nil && t.DType != p.Type {
		return p, c.Errorf("input %q is %s, its zero point %s", c.Node.Input(0), t.DType, p.Type)
	}
	return p, nil
}
