package engine_test

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/testenv"
)

// TestConformanceNodes runs every ONNX conformance node test whose ops the engine runs and
// compares the outputs with the reference within 1e-4 (relative to the output's scale).
func TestConformanceNodes(t *testing.T) {
	passed := map[string]int{} // op → passing cases
	var skipped []string
	for _, dir := range testenv.NodeCases(t) {
		c, err := testenv.LoadCase(dir)
		if err == nil {
			err = c.Graph.Canonicalize(graph.CanonicalOptions{})
		}
		if err != nil {
			continue // refused at import: graph's conformance test checks those
		}
		if len(c.Graph.Nodes) == 0 {
			continue // folded away entirely (constant subgraphs)
		}
		p, err := engine.Compile(c.Graph, 1, engine.Options{Inference: true})
		if err != nil {
			var ne *graph.NodeError
			if !errors.As(err, &ne) {
				t.Errorf("%s: %v", c.Name, err)
			}
			skipped = append(skipped, fmt.Sprintf("%s (%v)", c.Name, err))
			continue
		}
		for name, v := range c.Inputs {
			in := p.Value(name)
			if in == nil || len(in.Data) != len(v.F) {
				t.Fatalf("%s: input %s: plan has %v", c.Name, name, in)
			}
			copy(in.Data, v.F)
		}
		p.Forward(false)
		ok := true
		for i, ref := range c.Outputs {
			name := c.Graph.Outputs[i]
			var got []float32
			if v := p.Value(name); v != nil {
				got = v.Data
			}
			if d := maxRelDiff(got, ref.Floats()); d > 1e-4 {
				t.Errorf("%s: output %s differs from the reference by %.3g", c.Name, name, d)
				ok = false
			}
		}
		if ok {
			var ops []string
			for _, n := range c.Graph.Nodes {
				ops = append(ops, n.Op)
			}
			passed[strings.Join(ops, "+")]++
		}
	}
	total := 0
	var keys []string
	for k, n := range passed {
		total += n
		keys = append(keys, fmt.Sprintf("%s:%d", k, n))
	}
	sort.Strings(keys)
	t.Logf("conformance numerics: %d passed (%s)", total, strings.Join(keys, " "))
	for _, s := range skipped {
		t.Logf("not run: %s", s)
	}
	if total < 145 {
		t.Errorf("only %d conformance cases passed", total)
	}
}

// maxRelDiff is max |a−b| / max(1, max|b|); a length mismatch is +Inf.
func maxRelDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	scale := 1.0
	for _, v := range b {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	d := 0.0
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		if math.IsNaN(x) != math.IsNaN(y) {
			return math.Inf(1)
		}
		if !math.IsNaN(x) {
			d = math.Max(d, math.Abs(x-y))
		}
	}
	return d / scale
}
