package qnas_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/qnas/qnas"
	"github.com/qnas/qnas/supernet"
)

// Optimize a model under a quarter of its 8-bit cost, on the built-in Fashion-MNIST
// subset (a short run: one search epoch, one fine-tuning epoch, part of the data).
func ExampleOptimize() {
	dir, err := os.MkdirTemp("", "qnas-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	opts := qnas.DefaultOptimizeOptions()
	opts.Data = qnas.Data{Dir: qnas.EmbeddedData, Mean: []float32{0.286}, Std: []float32{0.353}, LimitTrain: 1280, LimitTest: 200}
	opts.Training.Batch, opts.Training.Calib = 64, 2
	opts.SearchEpochs, opts.FineTuneEpochs = 1, 1
	opts.Method = qnas.MethodSearch // on so few images MethodAuto would take the fast mode
	opts.Output.Path = filepath.Join(dir, "resnet8_q.onnx")
	rep, err := qnas.Optimize(context.Background(), "testdata/models/resnet8_bn.onnx", qnas.Budget{Ratio: 0.25}, opts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d layers; cost within [0.98, 1] × budget: %v\n", len(rep.Layers), rep.CostRatio <= rep.Budget && rep.CostRatio >= 0.98*rep.Budget)
	// Output: 10 layers; cost within [0.98, 1] × budget: true
}

// Quantize with a hand-written architecture: 4-bit weights and activations everywhere, but
// 8 bits for the first and the last layer, and half the filters of a residual block's
// inner convolution.
func ExampleQuantize() {
	dir, err := os.MkdirTemp("", "qnas-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	arch, err := supernet.ParseArch([]byte(`{"format": "qnas.arch/1",
 "default": {"wbits": 4, "abits": 4},
 "layers": {
  "/conv1/Conv": {"wbits": 8, "abits": 8},
  "/layer3/layer3.0/conv1/Conv": {"wbits": 4, "abits": 4, "keep": 32},
  "/fc/Gemm": {"wbits": 8, "abits": 8}}}`))
	if err != nil {
		log.Fatal(err)
	}
	opts := qnas.DefaultQuantizeOptions()
	opts.Data = qnas.Data{Dir: qnas.EmbeddedData, Mean: []float32{0.286}, Std: []float32{0.353}, LimitTest: 200}
	opts.Training.Calib = 2
	opts.Output.Path = filepath.Join(dir, "resnet8_q.onnx")
	rep, err := qnas.Quantize(context.Background(), "testdata/models/resnet8_bn.onnx", arch, opts)
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range rep.Layers {
		if l.KeptFilters < l.Filters || l.ABits == 8 {
			fmt.Printf("%s: %d of %d filters, %d-bit weights, %d-bit input\n", l.Name, l.KeptFilters, l.Filters, l.WBits[0], l.ABits)
		}
	}
	// Output:
	// /conv1/Conv: 16 of 16 filters, 8-bit weights, 8-bit input
	// /layer3/layer3.0/conv1/Conv: 32 of 64 filters, 4-bit weights, 4-bit input
	// /fc/Gemm: 10 of 10 filters, 8-bit weights, 8-bit input
}

// Read back the architecture of a model qnas wrote: its bits and kept filters travel in
// the model file, checked against its graph.
func ExampleReadModel() {
	dir, err := os.MkdirTemp("", "qnas-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	opts := qnas.DefaultQuantizeOptions()
	opts.Data = qnas.Data{Dir: qnas.EmbeddedData, Mean: []float32{0.286}, Std: []float32{0.353}, LimitTest: 100}
	opts.Training.Calib = 1
	opts.Output.Path = filepath.Join(dir, "q.onnx")
	uniform := &supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{3}, ABits: 4}}
	if _, err := qnas.Quantize(context.Background(), "testdata/models/resnet8_bn.onnx", uniform, opts); err != nil {
		log.Fatal(err)
	}
	m, err := qnas.ReadModel(opts.Output.Path, qnas.ExportOptions{})
	if err != nil {
		log.Fatal(err)
	}
	arch, err := supernet.ParseArch(m.Arch)
	if err != nil {
		log.Fatal(err)
	}
	l := arch.Layers["/layer1/layer1.0/conv1/Conv"]
	fmt.Printf("%d layers; /layer1/layer1.0/conv1/Conv: weights %v bits, input %d bits\n", len(m.Layers), l.WBits, l.ABits)
	// Output: 10 layers; /layer1/layer1.0/conv1/Conv: weights [3] bits, input 4 bits
}
