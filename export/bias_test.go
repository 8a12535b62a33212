package export_test

import (
	"slices"
	"testing"

	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/supernet"
)

// A bias that does not fit in int32 on its grid (input scale × weight scale) is clamped and
// the frozen model names its layer, so that the report can say so; an ordinary model has
// none.
func TestSaturatedBiasesAreNamed(t *testing.T) {
	for _, huge := range []bool{false, true} {
		g := load(t, "resnet8_bn.onnx")
		if huge {
			for _, n := range g.Nodes {
				if n.Name == "/fc/Gemm" {
					g.Consts[n.Inputs[2]].F[3] = 1e30
				}
			}
		}
		s, err := supernet.NewSpace(g)
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.Resolve(&supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{4}, ABits: 4}})
		if err != nil {
			t.Fatal(err)
		}
		qat, err := r.Apply()
		if err != nil {
			t.Fatal(err)
		}
		m, err := export.Freeze(qat, r)
		if err != nil {
			t.Fatal(err)
		}
		want := []string(nil)
		if huge {
			want = []string{"/fc/Gemm"}
		}
		if !slices.Equal(m.SaturatedBiases, want) {
			t.Errorf("huge bias %v: saturated %v, want %v", huge, m.SaturatedBiases, want)
		}
	}
}
