// Package quant is the arithmetic of qnas's quantizers: integer grids, scales and rounding.
// Fake quantization in training, the engine's QuantizeLinear and DequantizeLinear kernels and
// the exporter all call it, so a value quantized in training is, to the bit, the value ONNX
// Runtime computes from the exported model.
//
// The conventions (docs/method.md):
//   - weights: symmetric per output channel, integers in [−(2^(b−1)−1), 2^(b−1)−1] (the
//     narrow range, so the grid is symmetric), scale = max|W_c| / (2^(b−1)−1);
//   - activations: clipped to [0, clip] (unsigned, after ReLU-like ops) with 2^b−1 steps, or to
//     [−clip, clip] (signed) with the weights' grid; zero point 0 either way;
//   - x/scale is a float32 division and rounding is half to even, as ONNX QuantizeLinear
//     specifies and ONNX Runtime computes it.
//
// A bitwidth of Float (32) means "not quantized": the functions pass values through.
package quant

import "math"

// Float is the bitwidth that leaves a tensor in floating point.
const Float = 32

// MinBits and MaxBits bound the quantized bitwidths qnas searches and exports (8-bit
// containers hold every grid).
const (
	MinBits = 2
	MaxBits = 8
)

// ValidBits reports whether b is a bitwidth qnas can train and export: 2..8, or Float.
func ValidBits(b int) bool { return b == Float || b >= MinBits && b <= MaxBits }

// WeightMax is the largest integer of a b-bit symmetric weight grid, 2^(b−1) − 1.
func WeightMax(bits int) int { return 1<<(bits-1) - 1 }

// ActMax is the largest integer of a b-bit activation grid: 2^b − 1 unsigned, 2^(b−1) − 1
// signed (symmetric, like the weights).
func ActMax(bits int, signed bool) int {
	if signed {
		return WeightMax(bits)
	}
	return 1<<bits - 1
}

// Round rounds half to even.
func Round(x float32) float32 {
	// Adding and subtracting 1.5·2^23 rounds to an integer in float32's own (half to
	// even) rounding, exactly for |x| < 2^22; it is several times faster than the float64
	// path, which handles the rest.
	const magic, limit = 12582912, 1 << 22
	if x > -limit && x < limit {
		return (x + magic) - magic
	}
	return float32(math.RoundToEven(float64(x)))
}

// Quantize returns round(x/scale) clamped to [lo, hi], the integer QuantizeLinear computes
// (with zero point 0), as a float32. lo and hi must be integers: clamping before rounding
// then gives the same result, and keeps the value in Round's fast range.
func Quantize(x, scale, lo, hi float32) float32 {
	q := x / scale
	if q < lo {
		q = lo
	}
	if q > hi {
		q = hi
	}
	return Round(q)
}

// WeightScale is the per-channel scale of a b-bit weight grid for a channel whose largest
// magnitude is maxAbs. An all-zero channel gets scale 1 (its integers are 0 whatever it is).
func WeightScale(maxAbs float32, bits int) float32 {
	if !(maxAbs > 0) {
		return 1
	}
	return maxAbs / float32(WeightMax(bits))
}

// ActScale is the scale of a b-bit activation grid clipped at clip.
func ActScale(clip float32, bits int, signed bool) float32 {
	return clip / float32(ActMax(bits, signed))
}

// Pow2 returns the power of two nearest x on a log scale, 2^round(log₂ x), for a
// positive finite x; other values are returned as they are.
func Pow2(x float32) float32 {
	if !(x > 0) || math.IsInf(float64(x), 0) {
		return x
	}
	return float32(math.Exp2(math.Round(math.Log2(float64(x)))))
}

// Pow2Clip returns the clip of the b-bit activation grid whose scale is the power of two
// nearest clip's: Pow2(ActScale(clip))·ActMax. Its ActScale is that power of two exactly.
func Pow2Clip(clip float32, bits int, signed bool) float32 {
	if bits == Float {
		return clip
	}
	return Pow2(ActScale(clip, bits, signed)) * float32(ActMax(bits, signed))
}

// Pow2HeldBits is the largest bitwidth whose power of two Pow2WeightScales chooses with a
// held factor g rather than with the BatchNorm factor a itself. On a grid of 2^(b−1)−1 ≤ 3
// steps a filter moved to the next power of two computes a visibly different output, so
// letting the power follow a while statistics are re-estimated changes the statistics again
// (they never settle, docs/method.md); on finer grids the change is small, and a held power
// that a has moved away from costs more (saturated weights) than a flip does.
const Pow2HeldBits = 3

// Pow2WeightScales returns the scales of a b-bit filter whose largest weight magnitude is
// maxAbs when the exported scale must be a power of two, with the BatchNorm factor a that
// export folds into it (1 without one): folded = Pow2(maxAbs·|f| / (2^(b−1)−1)) is the
// scale written, and unfolded = folded/|a| the scale the filter's own weight is quantized
// with (training and export alike), so both give the same integers. The factor f that
// chooses the power of two is a itself, except at b ≤ Pow2HeldBits, where it is g, a fixed
// earlier value of a, so that re-estimating the BatchNorm statistics (which moves a) does
// not move the filter to the next power of two, which would change the statistics again (a
// g of 0 or not finite means a). ok is false when a is 0 (the filter is zeroed) or folded
// is not a positive finite number.
func Pow2WeightScales(maxAbs float32, bits int, a, g float64) (unfolded, folded float32, ok bool) {
	a, g = math.Abs(a), math.Abs(g)
	if !(a > 0) || math.IsInf(a, 0) {
		return 1, 1, false
	}
	if bits > Pow2HeldBits || !(g > 0) || math.IsInf(g, 0) {
		g = a
	}
	m := float64(maxAbs) * g
	if !(m > 0) {
		m = 1 // an all-zero filter: its integers are 0 whatever the scale
	}
	folded = Pow2(float32(m / float64(WeightMax(bits))))
	if !(folded > 0) || math.IsInf(float64(folded), 0) {
		return 1, 1, false
	}
	return float32(float64(folded) / a), folded, true
}

// MaxAbs returns the largest magnitude in v.
func MaxAbs(v []float32) float32 {
	var m float32
	for _, x := range v {
		m = max(m, x, -x)
	}
	return m
}

// FakeQuantWeights quantizes w row by row: row c (len(w)/len(bits) values, an output
// channel) onto its bits[c]-bit grid with scale WeightScale(max|row|, bits[c]), writing
// q·scale to out (which may alias w) and the scale to scales[c]. Rows at Float bits are
// copied, with scale 0.
func FakeQuantWeights(w []float32, bits []int, scales, out []float32) {
	per := len(w) / len(bits)
	for c, b := range bits {
		scales[c] = 0
		if b != Float {
			scales[c] = WeightScale(MaxAbs(w[c*per:(c+1)*per]), b)
		}
	}
	QuantizeRows(w, bits, scales, out)
}

// QuantizeRows is FakeQuantWeights with the scales given: row c onto its bits[c]-bit grid
// of scale scales[c]. Rows at Float bits are copied.
func QuantizeRows(w []float32, bits []int, scales, out []float32) {
	per := len(w) / len(bits)
	for c, b := range bits {
		row, dst := w[c*per:(c+1)*per], out[c*per:(c+1)*per]
		if b == Float {
			copy(dst, row)
			continue
		}
		hi := float32(WeightMax(b))
		g := ActGrid{s: scales[c], lo: -hi, hi: hi} // the same arithmetic as an activation's
		g.Apply(row, dst)
	}
}

// FakeQuantAct quantizes x onto the b-bit activation grid clipped at clip: values are first
// clipped to [0, clip] (or [−clip, clip] when signed), then rounded to multiples of
// ActScale(clip, bits, signed). y may alias x. At Float bits x is copied.
func FakeQuantAct(x, y []float32, clip float32, bits int, signed bool) {
	g := NewActGrid(clip, bits, signed)
	g.Apply(x, y)
}

// ActGrid is FakeQuantAct's arithmetic prepared once, for a quantizer applied to many short
// runs of values (the planes a convolution reads).
type ActGrid struct {
	s, lo, hi float32
	float     bool
}

// NewActGrid returns the grid of FakeQuantAct(·, ·, clip, bits, signed).
func NewActGrid(clip float32, bits int, signed bool) ActGrid {
	if bits == Float {
		return ActGrid{float: true}
	}
	g := ActGrid{s: ActScale(clip, bits, signed), hi: float32(ActMax(bits, signed))}
	if signed {
		g.lo = -g.hi
	}
	return g
}

// Apply writes FakeQuantAct of x to y (which may be x).
func (g *ActGrid) Apply(x, y []float32) {
	if g.float {
		copy(y, x)
		return
	}
	// Clipping x to [lo·s, clip] first, as the exported Clip does, changes nothing: x/s is
	// monotonic in x and clip/s rounds to hi, so clamping x/s to [lo, hi] is the same.
	y = y[:len(x)]
	if haveAVX512 && useAVX512 && len(x) > 0 {
		fakeQuant16(&x[0], &y[0], len(x), g.s, g.lo, g.hi) // the same operations, 16 lanes at a time
		return
	}
	for i, v := range x {
		y[i] = Quantize(v, g.s, g.lo, g.hi) * g.s
	}
}

// haveAVX512 is set where the AVX-512 loops run; useAVX512 lets tests compare them with
// the portable loops.
var haveAVX512, useAVX512 = false, true

// ActGrad is the straight-through gradient of FakeQuantAct: it writes dx = dy where the
// input lies strictly inside the clipping range and 0 elsewhere (dx may be nil), and returns
// PACT's gradient of the clip, the sum of dy over the inputs at or above it (minus the sum
// over those at or below −clip, when signed).
func ActGrad(x, dy, dx []float32, clip float32, signed bool) float64 {
	lo := float32(0)
	if signed {
		lo = -clip
	}
	dy = dy[:len(x)]
	if dx != nil {
		dx = dx[:len(x)]
	}
	n := 0
	var dc float32
	if haveAVX512 && useAVX512 {
		if n = len(x) &^ 15; n > 0 {
			var acc [16]float32
			flags := 0
			var dxp *float32
			if signed {
				flags |= 1
			}
			if dx != nil {
				flags |= 2
				dxp = &dx[0]
			}
			actGrad16(&x[0], &dy[0], dxp, n, lo, clip, flags, &acc)
			for _, v := range acc {
				dc += v
			}
		}
	}
	// Bit masks, each set by its own comparison, rather than branches: after a ReLU about
	// half the inputs are 0, in no order a branch predictor could learn.
	var keepUnder uint32
	if signed {
		keepUnder = ^uint32(0)
	}
	for i := n; i < len(x); i++ {
		v, g := x[i], math.Float32bits(dy[i])
		var in, over, under uint32
		if v > lo {
			in = ^uint32(0)
		}
		if v <= lo {
			under = keepUnder
		}
		if v >= clip {
			over = ^uint32(0)
		}
		dc += math.Float32frombits(g&over) - math.Float32frombits(g&under)
		if dx != nil {
			dx[i] = math.Float32frombits(g & (in &^ over))
		}
	}
	return float64(dc)
}

// MixParam is one option of a mixed activation quantizer, the search's composite input
// Σ_j w_j·Q_j(x) (NewMixParam fills it). Its layout is read by the AVX-512 loops.
type MixParam struct {
	Scale, Lo, Hi float32 // the grid: integers Lo..Hi times Scale
	Weight        float32 // the option's weight (its sampled probability)
	Clip, Low     float32 // gradient passes for Low < x < Clip
	_             [2]float32
}

// NewMixParam returns the option that quantizes onto the bits-bit grid clipped at clip,
// weighted w.
func NewMixParam(clip float32, bits int, signed bool, w float32) MixParam {
	p := MixParam{Scale: ActScale(clip, bits, signed), Hi: float32(ActMax(bits, signed)), Weight: w, Clip: clip}
	if signed {
		p.Lo, p.Low = -p.Hi, -clip
	}
	return p
}

// MixAct writes y = Σ_j p[j].Weight·FakeQuantAct(x) at option j's grid; y may not alias x.
func MixAct(x, y []float32, p []MixParam) {
	y = y[:len(x)]
	n := 0
	if haveAVX512 && useAVX512 && len(p) > 0 {
		if n = len(x) &^ 15; n > 0 {
			mixQuant16(&x[0], &y[0], n, len(p), &p[0])
		}
	}
	for i := n; i < len(x); i++ {
		var s float32
		for _, o := range p {
			s += o.Weight * (Quantize(x[i], o.Scale, o.Lo, o.Hi) * o.Scale)
		}
		y[i] = s
	}
}

// MixGrad is MixAct's straight-through gradient: it writes dx = Σ_j w_j·dy over
// Low_j < x < Clip_j (when dx is not nil), adds to clipSum[j] the sum of dy over x ≥ Clip_j
// (minus that over x ≤ Low_j when signed; when clipSum is not nil), and adds to wSum[j] the
// sum of dy times option j's quantized x, the gradient of its weight (when wSum is not nil).
func MixGrad(x, dy, dx []float32, p []MixParam, signed bool, clipSum, wSum []float64) {
	dy = dy[:len(x)]
	if dx != nil {
		dx = dx[:len(x)]
	}
	n := 0
	if haveAVX512 && useAVX512 && len(p) > 0 {
		if n = len(x) &^ 15; n > 0 {
			flags := 0
			if clipSum != nil {
				flags |= 1
			}
			if wSum != nil {
				flags |= 2
			}
			var dxp *float32
			if dx != nil {
				flags |= 4
				dxp = &dx[0]
			}
			if signed {
				flags |= 8
			}
			acc := make([]float32, 32*len(p))
			mixGrad16(&x[0], &dy[0], dxp, n, len(p), &p[0], flags, &acc[0])
			for j := range p {
				for l := 0; l < 16; l++ {
					if clipSum != nil {
						clipSum[j] += float64(acc[32*j+l])
					}
					if wSum != nil {
						wSum[j] += float64(acc[32*j+16+l])
					}
				}
			}
		}
	}
	for i := n; i < len(x); i++ {
		v, g := x[i], dy[i]
		var d float32
		for j, o := range p {
			switch {
			case v >= o.Clip:
				if clipSum != nil {
					clipSum[j] += float64(g)
				}
			case v <= o.Low:
				if clipSum != nil && signed {
					clipSum[j] -= float64(g)
				}
			default:
				d += o.Weight * g
			}
			if wSum != nil {
				wSum[j] += float64(g * (Quantize(v, o.Scale, o.Lo, o.Hi) * o.Scale))
			}
		}
		if dx != nil {
			dx[i] = d
		}
	}
}

// BiasScale is the grid of a layer's bias: the product of its input's scale and one
// filter's weight scale (the unit of the integer accumulator the bias is added to).
func BiasScale(inputScale, weightScale float32) float32 { return inputScale * weightScale }

// QuantizeBias returns the int32 integer of bias b on the grid scale: round(b/scale)
// clamped to the int32 range.
func QuantizeBias(b, scale float32) int64 {
	q, _ := QuantizeBiasSaturated(b, scale)
	return q
}

// QuantizeBiasSaturated is QuantizeBias, also reporting whether the integer was clamped
// (the bias does not fit in int32 on that grid).
func QuantizeBiasSaturated(b, scale float32) (q int64, saturated bool) {
	r := float64(Round(b / scale))
	c := min(max(r, math.MinInt32), math.MaxInt32)
	return int64(c), c != r
}

// FoldBN returns what folding a BatchNormalization (γ, β, running mean μ and variance σ²,
// epsilon eps) into the layer before it makes of that layer's bias b: the per-channel
// factor a = γ/√(σ²+ε), in float64, and the folded bias (b − μ)·a + β.
func FoldBN(gamma, beta, mean, variance, b, eps float32) (a float64, bias float32) {
	a = float64(gamma) / math.Sqrt(float64(variance)+float64(eps))
	return a, float32((float64(b)-float64(mean))*a + float64(beta))
}

// FoldedScale is a weight scale s after folding a BatchNormalization factor a into it,
// s·|a|; ok is false when that is no positive finite scale (a = 0: the channel is zero).
func FoldedScale(s float32, a float64) (scale float32, ok bool) {
	scale = float32(float64(s) * math.Abs(a))
	return scale, scale > 0 && !math.IsInf(float64(scale), 0)
}
