package onnxio

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// newModel returns a small valid model: one Relu node and the given initializers.
func newModel(inits ...*onnxpb.TensorProto) *onnxpb.ModelProto {
	return &onnxpb.ModelProto{
		IrVersion:    proto.Int64(8),
		ProducerName: proto.String("onnxio-test"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name:        proto.String("g"),
			Node:        []*onnxpb.NodeProto{{OpType: proto.String("Relu"), Input: []string{"x"}, Output: []string{"y"}}},
			Initializer: inits,
		},
	}
}

// constNode returns a Constant node whose value attribute is t.
func constNode(out string, t *onnxpb.TensorProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{
		OpType: proto.String("Constant"),
		Output: []string{out},
		Attribute: []*onnxpb.AttributeProto{{
			Name: proto.String("value"),
			Type: onnxpb.AttributeProto_TENSOR.Enum(),
			T:    t,
		}},
	}
}

// ifNode returns an If node whose then_branch is g.
func ifNode(g *onnxpb.GraphProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{
		OpType: proto.String("If"),
		Input:  []string{"cond"},
		Output: []string{"out"},
		Attribute: []*onnxpb.AttributeProto{{
			Name: proto.String("then_branch"),
			Type: onnxpb.AttributeProto_GRAPH.Enum(),
			G:    g,
		}},
	}
}

func encodeModel(t testing.TB, m *onnxpb.ModelProto) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// wantError checks that err is an *Error whose message contains each of want.
func wantError(t testing.TB, err error, want ...string) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is a %T, want *onnxio.Error", err, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not contain %q", err.Error(), w)
		}
	}
	return e
}

// exercise decodes data as a model and, if that succeeds, uses it the way a caller
// would: reads every tensor (external data relative to dir) and encodes it again. It
// fails the test if an error is not an *Error or reports an internal panic.
func exercise(t testing.TB, data []byte, dir string) {
	t.Helper()
	lim := Limits{MaxModelBytes: 1 << 24, MaxTensorElements: 1 << 20, MaxTotalTensorBytes: 1 << 24, MaxGraphDepth: 8, MaxNodes: 1 << 12}
	m, err := DecodeBytes(data, lim)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error %v is a %T, want *onnxio.Error", err, err)
		}
		if strings.Contains(e.Msg, "internal error") {
			t.Fatalf("decoder panicked: %v", err)
		}
		if strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("error spans lines: %q", err.Error())
		}
		return
	}
	w := walker{lim: lim}
	w.tensor = func(_ *path, x *onnxpb.TensorProto) error {
		if _, err := TensorFloat32s(x, dir, lim); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("TensorFloat32s: error %v is a %T", err, err)
			}
		}
		if _, err := TensorInt64s(x, dir, lim); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("TensorInt64s: error %v is a %T", err, err)
			}
		}
		return nil
	}
	if err := w.model(m); err != nil {
		t.Fatalf("walk of a validated model failed: %v", err)
	}
	var b bytes.Buffer
	if err := Encode(&b, m); err != nil {
		t.Fatalf("encode of a decoded model: %v", err)
	}
	m2, err := DecodeBytes(b.Bytes(), lim)
	if err != nil {
		t.Fatalf("re-encoded model does not decode: %v", err)
	}
	if !proto.Equal(m, m2) {
		t.Fatalf("re-encoded model decodes differently")
	}
}
