package stats

import (
	"math"
	"testing"
)

func TestMeanStd(t *testing.T) {
	m, s := MeanStd([]float64{0.90, 0.92, 0.94})
	if math.Abs(m-0.92) > 1e-12 || math.Abs(s-0.02) > 1e-12 {
		t.Errorf("MeanStd = %v, %v; want 0.92, 0.02 (sample std)", m, s)
	}
	if m, s := MeanStd([]float64{0.5}); m != 0.5 || s != 0 {
		t.Errorf("one value: %v, %v", m, s)
	}
	if m, _ := MeanStd(nil); !math.IsNaN(m) {
		t.Errorf("no values: mean %v, want NaN", m)
	}
}
