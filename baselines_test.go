package qnas

import (
	"fmt"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/testenv"
	"github.com/qnas/qnas/supernet"
)

// The baselines of a budget: the dearest uniform w=a model within it, the dearest uniform
// model of any pair within it, and the cheapest uniform w=a model above it (w4a4 for 0.25,
// whose 8-bit network input puts it just above).
func TestUniformBaselines(t *testing.T) {
	g, err := graph.Load(testenv.Path("testdata", "models", "resnet20_bn.onnx"), graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Canonicalize(graph.CanonicalOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := supernet.NewSpace(g)
	if err != nil {
		t.Fatal(err)
	}
	cm := supernet.BOPs()
	sn, err := s.NewSupernet(supernet.DefaultSearchOptions())
	if err != nil {
		t.Fatal(err)
	}
	for budget, want := range map[float64]string{
		0.25:  "w3a3 0.1415, w2a8 0.2500, w4a4 0.2509",
		0.125: "w2a2 0.0632, w3a2 0.0948, w3a3 0.1415",
	} {
		b, err := Budget{Ratio: budget}.Resolve(sn, cm)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for i, b := range UniformBaselines(s, cm, b, supernet.DefaultSearchOptions()) {
			if i > 0 {
				got += ", "
			}
			got += fmt.Sprintf("w%da%d %.4f", b.WBits, b.ABits, b.CostRatio)
		}
		if got != want {
			t.Errorf("budget %.3f: baselines %s, want %s", budget, got, want)
		}
	}
}
