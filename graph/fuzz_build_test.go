package graph_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// byteSource hands out the fuzzer's bytes as choices; past the end it returns zeros.
type byteSource struct {
	b []byte
	i int
}

func (s *byteSource) next() int {
	if s.i >= len(s.b) {
		return 0
	}
	s.i++
	return int(s.b[s.i-1])
}

func (s *byteSource) pick(n int) int { return s.next() % n }

// Values that break shape arithmetic: signs, zero, the batch sentinel, overflow edges.
var fuzzInts = []int64{0, 1, 2, 3, -1, -2, 4, 8, 1 << 20, -(1 << 20), 1<<31 - 1, 1 << 31, 1 << 40, 1 << 62,
	graph.SymBatch, math.MaxInt64, math.MinInt64, 5, 7, 16}

var fuzzFloats = []float32{0, 1, -1, 0.5, 2, 6, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e30, -1e-30}

var fuzzAttrs = []string{"axis", "axes", "perm", "pads", "strides", "dilations", "kernel_shape", "group",
	"transA", "transB", "allowzero", "starts", "ends", "split", "keepdims", "epsilon", "min", "max", "to",
	"value", "auto_pad", "ceil_mode", "start", "end", "alpha", "beta", "mode", "value_ints", "value_float",
	"value_floats", "value_int", "count_include_pad", "noop_with_empty_axes", "num_outputs", "approximate", "stash_type"}

var fuzzStrings = []string{"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "constant", "reflect", "edge", "wrap",
	"none", "tanh", "", "x\ny"}

// int64v returns a small value most of the time and a hostile one otherwise.
func (s *byteSource) int64v() int64 {
	if k := s.next(); k < 64 {
		return fuzzInts[k%len(fuzzInts)]
	}
	return int64(s.pick(11)) - 2
}

// tensor returns a constant: mostly a short int64 vector (shapes, axes, pads), otherwise
// a small float or int64 tensor of rank 0 to 4.
func (s *byteSource) tensor(name string) *onnxpb.TensorProto {
	var dims []int64
	if s.pick(2) == 0 {
		dims = []int64{int64(s.pick(9))}
	} else {
		for range s.pick(5) {
			dims = append(dims, int64(s.pick(5)))
		}
	}
	if len(dims) > 1 && s.pick(16) == 0 {
		dims[0], dims[len(dims)-1] = 1<<40, 0 // empty, but claiming a huge dimension
	}
	n := 1
	for _, d := range dims {
		n *= int(d)
	}
	if s.pick(2) == 0 {
		v := make([]int64, n)
		for i := range v {
			v[i] = s.int64v()
		}
		return onnxio.NewInt64Tensor(name, dims, v)
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = fuzzFloats[s.pick(len(fuzzFloats))]
	}
	return onnxio.NewFloat32Tensor(name, dims, v)
}

// attrKinds gives the kind ONNX defines for an attribute name (as the choice of
// byteSource.attr); names not listed are ints.
var attrKinds = map[string]int{
	"axes": 2, "perm": 2, "pads": 2, "strides": 2, "dilations": 2, "kernel_shape": 2, "starts": 2, "ends": 2,
	"split": 2, "value_ints": 2, "epsilon": 3, "min": 3, "max": 3, "alpha": 3, "beta": 3, "value_float": 3,
	"value_floats": 6, "auto_pad": 4, "mode": 4, "value": 5, "approximate": 4,
}

func (s *byteSource) attr(name string) *onnxpb.AttributeProto {
	a := &onnxpb.AttributeProto{Name: proto.String(name)}
	kind := attrKinds[name]
	if s.pick(8) == 0 {
		kind = s.pick(7) // the wrong kind, now and then
	}
	switch kind {
	case 6:
		a.Type = onnxpb.AttributeProto_FLOATS.Enum()
		for range s.pick(5) {
			a.Floats = append(a.Floats, fuzzFloats[s.pick(len(fuzzFloats))])
		}
	case 0, 1:
		a.Type, a.I = onnxpb.AttributeProto_INT.Enum(), proto.Int64(s.int64v())
	case 2:
		a.Type = onnxpb.AttributeProto_INTS.Enum()
		for range s.pick(9) {
			a.Ints = append(a.Ints, s.int64v())
		}
	case 3:
		a.Type, a.F = onnxpb.AttributeProto_FLOAT.Enum(), proto.Float32(fuzzFloats[s.pick(len(fuzzFloats))])
	case 4:
		a.Type, a.S = onnxpb.AttributeProto_STRING.Enum(), []byte(fuzzStrings[s.pick(len(fuzzStrings))])
	case 5:
		a.Type, a.T = onnxpb.AttributeProto_TENSOR.Enum(), s.tensor("")
	}
	return a
}

// opAttrs lists the attributes each op reads, so the fuzzer sets them more often than
// random ones.
var opAttrs = map[string][]string{
	"Conv":               {"strides", "dilations", "pads", "group", "kernel_shape", "auto_pad"},
	"MaxPool":            {"kernel_shape", "strides", "pads", "dilations", "ceil_mode", "auto_pad"},
	"AveragePool":        {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad", "auto_pad"},
	"BatchNormalization": {"epsilon"},
	"Gemm":               {"transA", "transB", "alpha", "beta"},
	"Flatten":            {"axis"},
	"Concat":             {"axis"},
	"Gather":             {"axis"},
	"Softmax":            {"axis"},
	"Split":              {"axis", "split", "num_outputs"},
	"Squeeze":            {"axes"},
	"Unsqueeze":          {"axes"},
	"ReduceMean":         {"axes", "keepdims", "noop_with_empty_axes"},
	"ReduceSum":          {"axes", "keepdims", "noop_with_empty_axes"},
	"LayerNormalization": {"axis", "epsilon", "stash_type"},
	"Gelu":               {"approximate"},
	"Transpose":          {"perm"},
	"Slice":              {"starts", "ends", "axes"},
	"Reshape":            {"allowzero"},
	"Pad":                {"pads", "mode"},
	"Clip":               {"min", "max"},
	"Cast":               {"to"},
	"Shape":              {"start", "end"},
	"Constant":           {"value", "value_ints", "value_float", "value_floats", "value_int"},
	"ConstantOfShape":    {"value"},
	"LeakyRelu":          {"alpha"},
	"HardSigmoid":        {"alpha", "beta"},
}

// buildFuzzModel turns bytes into a small model over the registered ops: an input of a
// chosen shape, then up to 12 nodes with the input and output counts their op allows,
// reading earlier values (mostly the previous one first), fresh constants or omitted
// inputs, with the attributes their op reads (and others) at small or hostile values.
func buildFuzzModel(data []byte) *onnxpb.ModelProto {
	s := &byteSource{b: data}
	ops := graph.Ops()
	opsets := []int64{13, 11, 9, 7, 10, 18}
	b := newModel(opsets[s.pick(len(opsets))])
	rank := 1 + s.pick(4)
	dims := []int64{-1}
	if s.pick(4) == 0 {
		dims[0] = int64(1 + s.pick(3))
	}
	for range rank {
		dims = append(dims, []int64{1, 2, 3, 4, 5, 8, 16}[s.pick(7)])
	}
	b.input("x", dims...)
	values := []string{"x"}
	nConst := 0
	newConst := func() string {
		name := fmt.Sprintf("c%d", nConst)
		nConst++
		b.g.Initializer = append(b.g.Initializer, s.tensor(name))
		return name
	}
	// weight returns a float constant shaped for op's input slot, guessing that the
	// node reads an activation with x's channel count.
	weight := func(op string, slot int) string {
		ch := dims[1]
		var wd []int64
		switch {
		case op == "Conv" && slot == 1 && len(dims) == 4:
			oc := ch // so a BatchNormalization after it fits
			if s.pick(2) == 0 {
				oc = int64(s.pick(5))
			}
			wd = []int64{oc, ch, int64(1 + s.pick(3)), int64(1 + s.pick(3))}
		case op == "Conv" && slot == 2, op == "BatchNormalization" && slot > 0:
			wd = []int64{ch}
		case (op == "Gemm" || op == "MatMul") && slot == 1:
			wd = []int64{dims[len(dims)-1], int64(1 + s.pick(4))}
		default:
			return newConst()
		}
		n := 1
		for _, d := range wd {
			n *= int(d)
		}
		name := fmt.Sprintf("c%d", nConst)
		nConst++
		if s.pick(8) == 0 { // the wrong type
			b.g.Initializer = append(b.g.Initializer, onnxio.NewInt64Tensor(name, wd, make([]int64, n)))
			return name
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = fuzzFloats[s.pick(6)] // finite values
		}
		b.floats(name, wd, v)
		return name
	}
	for k := range 1 + s.pick(12) {
		op := ops[s.pick(len(ops))]
		d, _ := graph.LookupOp("", op)
		maxIn, maxOut := d.MaxInputs, d.MaxOutputs
		if maxIn < 0 {
			maxIn = d.MinInputs + 3
		}
		if maxOut < 0 {
			maxOut = d.MinOutputs + 3
		}
		var in []string
		for i := range d.MinInputs + s.pick(maxIn-d.MinInputs+1) {
			c := s.pick(8)
			switch {
			case i == 0 && c < 6:
				in = append(in, values[len(values)-1])
			case c < 2:
				in = append(in, values[s.pick(len(values))])
			case c < 7 || i < d.MinInputs:
				in = append(in, weight(op, i))
			default:
				in = append(in, "")
			}
		}
		var attrs []*onnxpb.AttributeProto
		seen := map[string]bool{}
		for range s.pick(4) {
			name := fuzzAttrs[s.pick(len(fuzzAttrs))]
			if own := opAttrs[op]; len(own) > 0 && s.pick(4) != 0 {
				name = own[s.pick(len(own))]
			}
			if !seen[name] {
				seen[name] = true
				attrs = append(attrs, s.attr(name))
			}
		}
		var out []string
		for j := range d.MinOutputs + s.pick(maxOut-d.MinOutputs+1) {
			name := fmt.Sprintf("v%d_%d", k, j)
			if (j > 0 && s.pick(3) == 0) || s.pick(16) == 0 {
				name = ""
			}
			out = append(out, name)
			if name != "" {
				values = append(values, name)
			}
		}
		b.node(op, fmt.Sprintf("n%d", k), in, out, attrs...)
	}
	b.output(values[len(values)-1])
	if len(values) > 2 && s.pick(3) == 0 {
		b.output(values[1+s.pick(len(values)-2)])
	}
	return b.build()
}

// FuzzBuild is a structure-aware companion of FuzzImport: the bytes choose ops, inputs,
// constants and attributes, so every input reaches shape inference, constant folding,
// BatchNorm folding and the cost model rather than the protobuf decoder.
func FuzzBuild(f *testing.F) {
	for _, s := range []string{
		"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09",
		"conv-bn-relu-pool-gemm",
		"\x05\x02\x03\x07\x01\x00\x09\x11\x21\x31\x41\x51\x61\x71\x81\x91",
		strings.Repeat("\xff\x10\x20\x03", 16),
		strings.Repeat("\x07\x02\x01\x05\x00\x03", 20),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := buildFuzzModel(data)
		start, alloc := time.Now(), allocatedBytes()
		for _, fold := range []bool{false, true} {
			for _, fixed := range []bool{false, true} {
				opts := graph.ImportOptions{FixedShapes: fixed, GraphLimits: hostileGraphLimits}
				g, err := importCanonical(m, opts, fold)
				if err != nil {
					if msg := err.Error(); strings.HasPrefix(msg, "panic") || strings.ContainsAny(msg, "\r\n") {
						t.Fatal(msg)
					}
					continue
				}
				if _, err := g.ToONNX(graph.WriteOptions{}); err != nil && strings.ContainsAny(err.Error(), "\r\n") {
					t.Fatalf("error spans lines: %q", err)
				}
			}
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v", d)
		}
		if a, n := allocatedBytes()-alloc, proto.Size(m); a > allocBudget(n) {
			t.Fatalf("a %d-byte model allocated %d MiB", n, a>>20)
		}
	})
}
