package ortrun

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of onnx.proto read by IONames.
const (
	modelGraph             = 7  // ModelProto.graph
	graphInitializer       = 5  // GraphProto.initializer
	graphInput             = 11 // GraphProto.input
	graphOutput            = 12 // GraphProto.output
	graphSparseInitializer = 15 // GraphProto.sparse_initializer
	valueInfoName          = 1  // ValueInfoProto.name
	tensorName             = 8  // TensorProto.name
	sparseValues           = 1  // SparseTensorProto.values
)

// IONames returns the names of a serialized model's inputs (graph inputs that are not
// initializers) and outputs, in graph order — the names an ONNX Runtime session
// exposes. It reads only the protobuf wire format, without ONNX Runtime and without
// decoding tensor data.
func IONames(model []byte) (inputs, outputs []string, err error) {
	var ins []string
	init := map[string]bool{}
	found := false
	err = scan(model, func(num protowire.Number, g []byte) error {
		if num != modelGraph {
			return nil
		}
		found = true
		return scan(g, func(num protowire.Number, v []byte) error {
			switch num {
			case graphInput, graphOutput:
				name, err := stringField(v, valueInfoName)
				if err != nil {
					return err
				}
				if num == graphInput {
					ins = append(ins, name)
				} else {
					outputs = append(outputs, name)
				}
			case graphInitializer:
				name, err := stringField(v, tensorName)
				if err != nil {
					return err
				}
				init[name] = true
			case graphSparseInitializer:
				return scan(v, func(num protowire.Number, t []byte) error {
					if num != sparseValues {
						return nil
					}
					name, err := stringField(t, tensorName)
					init[name] = true
					return err
				})
			}
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("ortrun: not an ONNX model: %w", err)
	}
	if !found {
		return nil, nil, errors.New("ortrun: not an ONNX model: no graph")
	}
	for _, n := range ins {
		if !init[n] {
			inputs = append(inputs, n)
		}
	}
	if len(outputs) == 0 {
		return nil, nil, errors.New("ortrun: model graph has no outputs")
	}
	return inputs, outputs, nil
}

// scan calls f with the number and payload of each length-delimited field of the
// protobuf message b, in order; other fields are skipped.
func scan(b []byte, f func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, v); err != nil {
			return err
		}
	}
	return nil
}

// stringField returns the last value of string field num of message b ("" if absent).
func stringField(b []byte, num protowire.Number) (string, error) {
	var s string
	err := scan(b, func(n protowire.Number, v []byte) error {
		if n == num {
			s = string(v)
		}
		return nil
	})
	return s, err
}
