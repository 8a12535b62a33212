package graph_test

import (
	"errors"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/testenv"
)

// TestConformanceShapes imports every ONNX conformance node test whose ops are all in the
// registry and checks the inferred output shapes against the reference outputs.
func TestConformanceShapes(t *testing.T) {
	dirs := testenv.NodeCases(t)
	var passed, unsupportedOp int
	refused := map[string]string{}
	for _, dir := range dirs {
		c, err := testenv.LoadCase(dir)
		var g *graph.Graph
		if err == nil {
			g = c.Graph
			err = g.Canonicalize(graph.CanonicalOptions{})
		}
		if err != nil {
			var ue *graph.UnsupportedError
			if errors.As(err, &ue) {
				unsupportedOp++
				continue
			}
			refused[filepath.Base(dir)] = err.Error()
			continue
		}
		if len(c.Outputs) != len(g.Outputs) {
			t.Errorf("%s: %d reference outputs, graph has %d", filepath.Base(dir), len(c.Outputs), len(g.Outputs))
			continue
		}
		ok := true
		for i, ref := range c.Outputs {
			want := ref.Shape
			got := []int(g.Shapes[g.Outputs[i]])
			if c, isConst := g.Consts[g.Outputs[i]]; isConst {
				got = c.Shape
			}
			if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("%s: output %q inferred %v, reference %v", filepath.Base(dir), g.Outputs[i], got, want)
				ok = false
			}
		}
		if ok {
			passed++
		}
	}
	names := make([]string, 0, len(refused))
	for k := range refused {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t.Logf("refused %s: %s", k, refused[k])
	}
	t.Logf("conformance shapes: %d passed, %d refused with a reason, %d use ops outside the IR", passed, len(refused), unsupportedOp)
	if passed < 175 {
		t.Errorf("only %d conformance models passed shape inference", passed)
	}
	// Refusals must say where: a node, a graph input, or a model-level reason. They are
	// cases qnas does not model (1-D/3-D convolutions, integer inputs, training-mode
	// BatchNorm, …).
	for k, msg := range refused {
		where := strings.Contains(msg, `node "`) || strings.Contains(msg, "graph.input[") ||
			strings.Contains(msg, "default ONNX operator set") || strings.Contains(msg, "no non-constant input")
		if !where {
			t.Errorf("%s: refusal does not say where: %s", k, msg)
		}
	}
}
