package export_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/ortrun"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// TestTraceDisputes is a measurement, not a check, run by hand when ONNX Runtime and qnas
// part on some images of a model qnas wrote:
//
//	QNAS_TRACE_MODEL=OUT.onnx QNAS_EXTRA_DATA=PHOTOS [QNAS_TRACE_LEVEL=disable|basic|extended|all] \
//	  go test ./export -run TestTraceDisputes -v
//
// It lists the test images where the two predict different classes, with qnas's margin (the
// gap between its two largest logits as a fraction of their spread), and, for the first
// QNAS_TRACE_IMAGES of them (default 1), every activation quantizer's integer output as both
// compute it: how many elements are one step apart and how many more. ONNX Runtime returns
// the quantizers' outputs through Cast nodes added to a copy of the model, which leave its
// QDQ fusions (extended and all) in place.
func TestTraceDisputes(t *testing.T) {
	path := os.Getenv("QNAS_TRACE_MODEL")
	if path == "" {
		t.Skip("QNAS_TRACE_MODEL is not set")
	}
	ortrun.RequireORT(t)
	m, err := export.Read(path, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	test, err := data.Open(os.Getenv("QNAS_EXTRA_DATA"), data.Test)
	if err != nil {
		t.Fatal(err)
	}
	in := g.Shapes[g.Inputs[0]]
	if err := test.Fit(int(in[1]), int(in[2]), int(in[3])); err != nil {
		t.Fatal(err)
	}
	norm, err := data.ModelNormalization(nil, nil, g.Meta, path, test.C)
	if err != nil {
		t.Fatal(err)
	}
	level := ortrun.OptExtended
	if name := os.Getenv("QNAS_TRACE_LEVEL"); name != "" {
		found := false
		for _, l := range levels {
			if l.String() == name {
				level, found = l, true
			}
		}
		if !found {
			t.Fatalf("QNAS_TRACE_LEVEL=%s: not one of disable, basic, extended, all", name)
		}
	}
	images := 1
	if v := os.Getenv("QNAS_TRACE_IMAGES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("QNAS_TRACE_IMAGES=%s: not a count of images", v)
		}
		images = n
	}

	want, margins := predictMargins(t, g, test, norm)
	got := ortPredictNorm(t, path, test, level, norm)
	var disputed []int
	for i := range want {
		if want[i] != got[i] {
			disputed = append(disputed, i)
			t.Logf("image %d: qnas %d (margin %.2f%%), ONNX Runtime at %s %d, label %d", i, want[i], 100*margins[i], level, got[i], test.Labels[i])
		}
	}

	// The activation quantizers in graph order, and a copy of the model that also returns
	// each one's output as float.
	var qs, outs []string
	mp, err := onnxio.Load(path, onnxio.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range g.Nodes {
		if nd.Op != "QuantizeLinear" || g.Consts[nd.Inputs[0]] != nil {
			continue
		}
		q, o := nd.Outputs[0], nd.Outputs[0]+"_as_float"
		qs, outs = append(qs, q), append(outs, o)
		mp.Proto.Graph.Node = append(mp.Proto.Graph.Node, &onnxpb.NodeProto{OpType: proto.String("Cast"), Name: proto.String(o),
			Input: []string{q}, Output: []string{o},
			Attribute: []*onnxpb.AttributeProto{{Name: proto.String("to"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(int64(onnxpb.TensorProto_FLOAT))}}})
		addFloatOutput(mp.Proto.Graph, o)
	}
	probe := filepath.Join(t.TempDir(), "probe.onnx")
	if err := onnxio.Save(probe, mp.Proto); err != nil {
		t.Fatal(err)
	}
	keep := map[string]bool{}
	for _, q := range qs {
		keep[q] = true
	}
	p, err := engine.Compile(g, 1, engine.Options{Inference: true, Keep: keep})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range disputed[:min(images, len(disputed))] {
		x := p.Value(g.Inputs[0]).Data
		test.Batch([]int{i}, norm, nil, nil, x, nil)
		p.Forward(false)
		res, err := ortrun.Run(probe, map[string]ortrun.Tensor{g.Inputs[0]: {Shape: []int64{1, int64(test.C), int64(test.H), int64(test.W)}, Data: x}},
			outs, ortrun.Options{GraphOptimization: level, Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		for k, q := range qs {
			// The quantizers' outputs are integers: a step is 1.
			one, more, largest := stepsApart(p.Value(q).Data, res[outs[k]].Data, 1)
			if one+more > 0 {
				t.Logf("image %d, quantizer %d (%s): %d of %d elements one step apart, %d more (largest %.0f steps)", i, k, q, one, p.Value(q).Len(), more, largest)
			}
		}
	}
}
