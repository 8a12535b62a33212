package supernet

import (
	"math"
	"strings"
	"testing"
)

// The frontier averages each bit pair over its seeds, keeps the models no cheaper-or-equal
// one beats, and is linear in cost between them; outside its range it answers with its
// nearest end and says so.
func TestFrontierIsTheUpperEnvelopeLinearInCost(t *testing.T) {
	f := NewFrontier([]Vertex{
		{WBits: 2, ABits: 2, CostRatio: 0.07, Accuracy: 0.80},
		{WBits: 2, ABits: 2, CostRatio: 0.07, Accuracy: 0.82}, // second seed
		{WBits: 2, ABits: 4, CostRatio: 0.13, Accuracy: 0.78}, // dominated by w2a2
		{WBits: 3, ABits: 3, CostRatio: 0.15, Accuracy: 0.89},
		{WBits: 4, ABits: 2, CostRatio: 0.15, Accuracy: 0.85}, // same cost, worse
		{WBits: 4, ABits: 4, CostRatio: 0.27, Accuracy: 0.92},
	})
	if len(f) != 3 || f[0].WBits != 2 || math.Abs(f[0].Accuracy-0.81) > 1e-12 || f[1].WBits != 3 || f[2].ABits != 4 {
		t.Fatalf("frontier %+v", f)
	}
	acc, note, ok := f.At(0.21)
	if want := 0.89 + (0.21-0.15)/(0.27-0.15)*(0.92-0.89); !ok || note != "" || math.Abs(acc-want) > 1e-12 {
		t.Errorf("At(0.21) = %v %q, want %v", acc, note, want)
	}
	if acc, note, _ := f.At(0.15); acc != 0.89 || note != "" {
		t.Errorf("At a vertex's cost = %v %q, want its accuracy", acc, note)
	}
	if acc, note, _ := f.At(0.0625); acc != f[0].Accuracy || !strings.Contains(note, "below the cheapest uniform model (w2a2 at 0.07)") {
		t.Errorf("At(0.0625) = %v %q", acc, note)
	}
	if acc, note, _ := f.At(0.5); acc != 0.92 || !strings.Contains(note, "w4a4") {
		t.Errorf("At(0.5) = %v %q", acc, note)
	}
	if _, _, ok := (Frontier{}).At(0.1); ok {
		t.Error("an empty frontier answered")
	}
}
