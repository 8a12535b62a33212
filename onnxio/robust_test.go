package onnxio

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// seedModels returns a few serialized models: hand-built ones (with subgraphs,
// functions, sparse and external tensors) and, when libonnx-testdata is installed,
// some conformance models with initializers, subgraphs and many node kinds.
func seedModels(t testing.TB) [][]byte {
	m := newModel(
		NewFloat32Tensor("w", []int64{2, 3}, []float32{1, 2, 3, 4, 5, 6}),
		NewInt8Tensor("q", []int64{4}, []int8{-1, 2, -3, 4}),
		&onnxpb.TensorProto{Name: proto.String("h"), DataType: proto.Int32(TypeFloat16), Dims: []int64{2}, Int32Data: []int32{0x3c00, 0x4000}},
		&onnxpb.TensorProto{Name: proto.String("s"), DataType: proto.Int32(TypeString), Dims: []int64{1}, StringData: [][]byte{[]byte("hi")}},
		extTensor("e", "weights.bin", 0, 2),
	)
	m.Graph.SparseInitializer = []*onnxpb.SparseTensorProto{{
		Dims:    []int64{3, 4},
		Values:  NewFloat32Tensor("sv", []int64{2}, []float32{1, 2}),
		Indices: NewInt64Tensor("si", []int64{2}, []int64{0, 11}),
	}}
	sub := &onnxpb.GraphProto{Node: []*onnxpb.NodeProto{constNode("c", NewInt64Tensor("k", []int64{2}, []int64{7, 8}))}}
	m.Graph.Node = append(m.Graph.Node, ifNode(sub))
	m.Functions = []*onnxpb.FunctionProto{{Name: proto.String("f"), Node: []*onnxpb.NodeProto{constNode("c", NewFloat32Tensor("", nil, []float32{1}))}}}
	seeds := [][]byte{encodeModel(t, m), encodeModel(t, nested(4))}
	for _, name := range []string{
		"node/test_conv_with_strides_padding", "node/test_if_seq", "node/test_loop11",
		"node/test_constant", "node/test_cast_FLOAT_to_FLOAT16", "simple/test_single_relu_model",
		"pytorch-converted/test_Conv2d_groups",
	} {
		b, err := os.ReadFile(filepath.Join(conformanceDir, name, "model.onnx"))
		if err == nil {
			seeds = append(seeds, b)
		}
	}
	return seeds
}

// weightsDir returns a folder holding the weights.bin the seed model refers to.
func weightsDir(t testing.TB) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), floatBytes(1, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCorruptInputs(t *testing.T) {
	seeds := seedModels(t)
	dir := weightsDir(t)
	rng := rand.New(rand.NewPCG(1, 2))
	cases := 0
	for _, seed := range seeds {
		exercise(t, seed, dir)
		// Truncations at up to 60 points, all of them for small models.
		step := max(1, len(seed)/60)
		for n := 0; n < len(seed); n += step {
			exercise(t, seed[:n], dir)
			cases++
		}
		// Bit flips and byte overwrites.
		for range 60 {
			b := bytes.Clone(seed)
			i := rng.IntN(len(b))
			if rng.IntN(2) == 0 {
				b[i] ^= 1 << rng.IntN(8)
			} else {
				b[i] = byte(rng.UintN(256))
			}
			exercise(t, b, dir)
			cases++
		}
	}
	// Random bytes, and random bytes behind a valid-looking start.
	for range 300 {
		b := make([]byte, rng.IntN(2000))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		exercise(t, b, dir)
		if len(b) > 0 {
			exercise(t, append(bytes.Clone(seeds[0][:rng.IntN(len(seeds[0]))]), b...), dir)
		}
		cases += 2
	}
	// Random bytes must not decode into a tensor without an *Error either.
	for range 100 {
		b := make([]byte, rng.IntN(200))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		if _, err := DecodeTensor(bytes.NewReader(b), DefaultLimits()); err != nil {
			wantError(t, err)
		}
		cases++
	}
	t.Logf("%d corrupt inputs from %d seeds", cases, len(seeds))
}

func FuzzDecode(f *testing.F) {
	for _, s := range seedModels(f) {
		f.Add(s)
	}
	dir := weightsDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		exercise(t, data, dir)
	})
}
