// Command resize writes a copy of an ONNX model whose image input is SIZE×SIZE, so that a
// fully convolutional fixture (a global pooling before its classifier) stands in for an
// ImageNet-size model where none can be exported (scripts/peak_rss.sh):
//
//	go run ./scripts/resize IN.onnx OUT.onnx SIZE
//
// It drops the intermediate value_info, whose shapes the import infers again.
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "resize:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: resize IN.onnx OUT.onnx SIZE")
	}
	size, err := strconv.Atoi(args[2])
	if err != nil || size < 1 {
		return fmt.Errorf("SIZE %q: want a positive integer", args[2])
	}
	if err := onnxio.CheckNotSameFile(args[1], args[0]); err != nil {
		return err
	}
	m, err := onnxio.Load(args[0], onnxio.DefaultLimits())
	if err != nil {
		return err
	}
	g := m.Proto.GetGraph()
	if len(g.GetInput()) == 0 {
		return fmt.Errorf("%s: the graph has no input", args[0])
	}
	dims := g.Input[0].GetType().GetTensorType().GetShape().GetDim()
	if len(dims) != 4 {
		return fmt.Errorf("%s: input %q has %d dimensions, want N×C×H×W", args[0], g.Input[0].GetName(), len(dims))
	}
	for _, d := range dims[2:] {
		d.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(size)}
	}
	g.ValueInfo = nil
	return onnxio.Save(args[1], m.Proto)
}
