package kernels

import (
	"math"
	"testing"
)

// The interpolated erf and e^(−x²) are within 1e-9 of math.Erf and math.Exp where the
// tables reach; beyond, erf is ±1, less than half a float32 step from the truth.
func TestSmoothTables(t *testing.T) {
	var dErf, dGauss, dTail float64
	for x := -6.0; x <= 6; x += 1e-4 {
		d := math.Abs(erf64(x) - math.Erf(x))
		if math.Abs(x) < tableEnd {
			dErf = math.Max(dErf, d)
		} else {
			dTail = math.Max(dTail, d)
		}
		dGauss = math.Max(dGauss, math.Abs(gauss64(x)-math.Exp(-x*x)))
	}
	t.Logf("max |error|: erf %.2g (beyond the table %.2g), exp(-x²) %.2g", dErf, dTail, dGauss)
	if dErf > 1e-9 || dGauss > 1e-9 || dTail > 3e-8 {
		t.Errorf("erf off by %.3g (%.3g beyond the table), exp(-x²) by %.3g", dErf, dTail, dGauss)
	}
	for _, x := range []float32{0, -0, 1e-30, -2.5, 7, float32(math.Inf(1))} {
		y := make([]float32, 1)
		Erf([]float32{x}, y)
		if want := float32(math.Erf(float64(x))); y[0] != want && math.Abs(float64(y[0]-want)) > 1e-7 {
			t.Errorf("erf(%g) = %g, want %g", x, y[0], want)
		}
	}
}
