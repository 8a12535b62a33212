package ortrun

import "math"

// RelDiff returns the largest |got − want| relative to the scale of want, its largest
// magnitude: how qnas's outputs are compared with ONNX Runtime's, since logits range from
// near 1e-6 (a tiny-logit model, where any absolute tolerance passes everything) to near
// 1e13 (a random-init Inception v3, where float32 rounding alone exceeds it). An all-zero
// want compares absolutely; a NaN on one side only, or a length mismatch, is +Inf.
func RelDiff(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	d, scale := 0.0, 0.0
	for i := range want {
		x, y := float64(got[i]), float64(want[i])
		if math.IsNaN(x) || math.IsNaN(y) {
			if math.IsNaN(x) != math.IsNaN(y) {
				return math.Inf(1)
			}
			continue
		}
		d = math.Max(d, math.Abs(x-y))
		scale = math.Max(scale, math.Abs(y))
	}
	if scale == 0 {
		return d
	}
	return d / scale
}
