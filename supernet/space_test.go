package supernet

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
)

// In the ConvNeXt-style fixture every pointwise layer (a MatMul over N×H×W×C) is a layer of
// the space, priced as the graph counts it, with its bias as a channel parameter; the
// layer scales are folded into the layer before them; the MLP's hidden channels are
// prunable, and the residual stream, which LayerNormalization reads, is not.
func TestMatMulLayers(t *testing.T) {
	s := loadSpace(t, "cnx.onnx")
	var macs int64
	var matmuls []*Layer
	for _, l := range s.Layers {
		macs += l.MACs(l.InC, l.Filters)
		if l.Op == "MatMul" {
			matmuls = append(matmuls, l)
		}
	}
	if sum := graph.Summarize(s.Graph); macs != sum.MACs {
		t.Errorf("the layers hold %d MACs of the model's %d", macs, sum.MACs)
	}
	if len(matmuls) != 6 {
		t.Fatalf("%d MatMul layers, want 6 (two per block)", len(matmuls))
	}
	for _, n := range s.Graph.Nodes {
		if n.Op == "Mul" {
			t.Errorf("Mul %q left: the layer scales should fold into the MatMul before them", n.Name)
		}
	}
	prunable := 0
	for i, l := range matmuls {
		hidden := i%2 == 0 // fc1: C → 4C
		if l.WAxis != 1 || l.Spatial != 196 && l.Spatial != 49 || hidden != (l.Filters == 4*l.InC) {
			t.Errorf("%s: axis %d, spatial %d, %d→%d", l.Name, l.WAxis, l.Spatial, l.InC, l.Filters)
		}
		if hidden {
			next := matmuls[i+1]
			if !l.Out.Prunable || !slices.Equal(next.In, []*Group{l.Out}) {
				t.Errorf("%s: hidden group prunable %v (%s), read by %s: %v", l.Name, l.Out.Prunable, l.Out.Reason, next.Name, next.In)
			}
			prunable++
		} else if l.Out.Prunable {
			t.Errorf("%s: the residual stream is prunable", l.Name)
		}
	}
	if len(s.ChannelParams) != 6 {
		t.Errorf("channel parameters %v, want the 6 MatMul biases", s.ChannelParams)
	}
}

// In the Inception-style fixture the branches of each block are concatenated: each branch
// is its own prunable group, the conv after the first block reads the four groups in order,
// and the classifier reads the second block's four through the pooling.
func TestConcatGroups(t *testing.T) {
	for _, name := range []string{"inception_bn.onnx", "inception.onnx"} {
		s := loadSpace(t, name)
		for _, l := range s.Layers {
			if len(l.In) < 2 {
				continue
			}
			total := 0
			for _, g := range l.In {
				total += g.Channels
				if !g.Prunable || !slices.Contains(g.Readers, l) {
					t.Errorf("%s: %s reads group %s (prunable %v: %s)", name, l.Name, g.Name(), g.Prunable, g.Reason)
				}
			}
			if total*l.InFactor != l.InC || total != 32 && total != 48 {
				t.Errorf("%s: %s reads %d channels of %d groups, %d inputs", name, l.Name, total, len(l.In), l.InC)
			}
		}
		readers := 0
		for _, l := range s.Layers {
			if len(l.In) == 4 {
				readers++
			}
		}
		if readers != 2 {
			t.Errorf("%s: %d layers read a concatenation, want 2", name, readers)
		}
	}
}

// The search's supernet builds and trains on channels-last layers and on concatenations
// with every group's width searched: a weight step runs, and the expected cost's gradient
// matches finite differences.
func TestSupernetOfMatMulAndConcat(t *testing.T) {
	for _, name := range []string{"cnx.onnx", "inception_bn.onnx"} {
		s := loadSpace(t, name)
		opts := DefaultSearchOptions()
		opts.Prune = true
		sn, err := s.NewSupernet(opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(sn.Groups) == 0 {
			t.Fatalf("%s: no group searched", name)
		}
		p, err := engine.Compile(sn.Graph, 2, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range s.ChannelParams {
			if v := p.Value(c); v == nil || v.Kind != engine.Param {
				t.Errorf("%s: channel parameter %s does not train", name, c)
			}
		}
		p.SetState(&engine.StepState{Temperature: 1, Noise: rand.New(rand.NewPCG(1, 1))})
		p.Forward(true)
		p.SoftmaxCrossEntropy(sn.Graph.Outputs[0], []int32{1, 2})
		p.Backward()
		checkCostGradient(t, sn, BOPs(), rand.New(rand.NewPCG(2, 2)))
	}
}
