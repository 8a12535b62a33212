package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// Round is math.RoundToEven on float32, ties and large values included.
func TestRound(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := []float32{0, -0.5, 0.5, 1.5, 2.5, -1.5, -2.5, 4194303.5, 4194304.5, -4194304.5, 8388609, 1e20, -1e-30}
	for range 100000 {
		vals = append(vals, float32(r.NormFloat64()*1000), float32(r.IntN(2000)-1000)+0.5)
	}
	for _, v := range vals {
		if got, want := Round(v), float32(math.RoundToEven(float64(v))); got != want {
			t.Fatalf("Round(%v) = %v, want %v", v, got, want)
		}
	}
}

// FakeQuantAct is, value for value, what ONNX Runtime's Clip → QuantizeLinear →
// DequantizeLinear computes: clip to the range, divide by the scale in float32, round half
// to even, saturate, multiply back; the AVX-512 loop and the portable one agree to the bit.
func TestFakeQuantActIsClipQuantizeDequantize(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, signed := range []bool{false, true} {
		for bits := MinBits; bits <= MaxBits; bits++ {
			clip := float32(0.3 + 3*r.Float64())
			s := ActScale(clip, bits, signed)
			x := make([]float32, 1000+bits)
			for i := range x {
				switch i % 4 {
				case 0: // exact ties of the grid
					x[i] = (float32(r.IntN(2*ActMax(bits, signed)+1)-ActMax(bits, signed)) + 0.5) * s
				default:
					x[i] = float32(r.NormFloat64()) * clip
				}
			}
			lo, qlo, hi := float32(0), float32(0), float32(ActMax(bits, signed))
			if signed {
				lo, qlo = -clip, -hi
			}
			want := make([]float32, len(x))
			for i, v := range x {
				v = min(max(v, lo), clip)                      // Clip
				q := float32(math.RoundToEven(float64(v / s))) // QuantizeLinear …
				want[i] = min(max(q, qlo), hi) * s             // … saturate, DequantizeLinear
			}
			for _, avx := range []bool{true, false} {
				useAVX512 = avx
				// Whole runs and short ones, whose tails the AVX-512 loop masks, in place too.
				for _, n := range []int{len(x), 1, 7, 16, 17, 31, 49} {
					got := make([]float32, n)
					FakeQuantAct(x[:n], got, clip, bits, signed)
					g := NewActGrid(clip, bits, signed)
					in := slices.Clone(x[:n])
					g.Apply(in, in)
					for i := range got {
						if got[i] != want[i] || in[i] != want[i] {
							t.Fatalf("bits %d signed %v avx %v n %d: x = %v: got %v (in place %v), want %v", bits, signed, avx, n, x[i], got[i], in[i], want[i])
						}
					}
				}
			}
			useAVX512 = true
		}
	}
}

// ActGrad's two loops agree: the same input gradient, the same clip gradient up to the
// order of the sum.
func TestActGradLoopsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, signed := range []bool{false, true} {
		n := 4099
		x, dy := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64() * 2)
			if !signed && x[i] < 0 {
				x[i] = 0
			}
			dy[i] = float32(r.NormFloat64())
		}
		var dxs [2][]float32
		var dcs [2]float64
		for k, avx := range []bool{true, false} {
			useAVX512 = avx
			dxs[k] = make([]float32, n)
			dcs[k] = ActGrad(x, dy, dxs[k], 1.1, signed)
			if d := ActGrad(x, dy, nil, 1.1, signed); d != dcs[k] {
				t.Errorf("signed %v avx %v: clip gradient %v without dx, %v with", signed, avx, d, dcs[k])
			}
		}
		useAVX512 = true
		for i := range x {
			if dxs[0][i] != dxs[1][i] {
				t.Fatalf("signed %v: dx[%d] = %v (AVX-512) vs %v", signed, i, dxs[0][i], dxs[1][i])
			}
		}
		if math.Abs(dcs[0]-dcs[1]) > 1e-4*math.Max(1, math.Abs(dcs[1])) {
			t.Errorf("signed %v: clip gradient %v (AVX-512) vs %v", signed, dcs[0], dcs[1])
		}
	}
}

// MixAct and MixGrad: the AVX-512 loops equal the portable ones, a one-hot mix equals
// FakeQuantAct and ActGrad, and the weight gradient is Σ dy·Q_j(x).
func TestMixAgreesWithSingle(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, signed := range []bool{false, true} {
		n := 1000 + 37
		x, dy := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64() * 1.5)
			if !signed && x[i] < 0 {
				x[i] = 0
			}
			dy[i] = float32(r.NormFloat64())
		}
		bits := []int{2, 3, 4, 6, 8}
		ps := make([]MixParam, len(bits))
		for j, b := range bits {
			ps[j] = NewMixParam(float32(0.5+0.4*float64(j)), b, signed, float32(r.Float64()))
		}
		type result struct {
			y, dx     []float32
			clips, ws []float64
		}
		var res [2]result
		for k, avx := range []bool{true, false} {
			useAVX512 = avx
			rr := result{y: make([]float32, n), dx: make([]float32, n), clips: make([]float64, len(ps)), ws: make([]float64, len(ps))}
			MixAct(x, rr.y, ps)
			MixGrad(x, dy, rr.dx, ps, signed, rr.clips, rr.ws)
			res[k] = rr
		}
		useAVX512 = true
		for i := range x {
			if d := math.Abs(float64(res[0].y[i] - res[1].y[i])); d > 1e-5 {
				t.Fatalf("signed %v: y[%d] %v vs %v", signed, i, res[0].y[i], res[1].y[i])
			}
			if d := math.Abs(float64(res[0].dx[i] - res[1].dx[i])); d > 1e-5 {
				t.Fatalf("signed %v: dx[%d] %v vs %v", signed, i, res[0].dx[i], res[1].dx[i])
			}
		}
		for j := range ps {
			want := 0.0
			q := make([]float32, n)
			FakeQuantAct(x, q, ps[j].Clip, bits[j], signed)
			for i := range x {
				want += float64(dy[i] * q[i])
			}
			for k := range res {
				if math.Abs(res[k].ws[j]-want) > 1e-3 || math.Abs(res[k].clips[j]-res[1-k].clips[j]) > 1e-3 {
					t.Errorf("signed %v option %d: weight grad %v (want %v), clip grad %v vs %v", signed, j, res[k].ws[j], want, res[k].clips[j], res[1-k].clips[j])
				}
			}
			// One-hot: the mix is the single quantizer, to the bit.
			one := make([]MixParam, len(ps))
			copy(one, ps)
			for i := range one {
				one[i].Weight = 0
			}
			one[j].Weight = 1
			y := make([]float32, n)
			MixAct(x, y, one)
			for i := range x {
				if y[i] != q[i] {
					t.Fatalf("signed %v option %d: one-hot mix %v, FakeQuantAct %v", signed, j, y[i], q[i])
				}
			}
			dx1, dx2 := make([]float32, n), make([]float32, n)
			cs := make([]float64, len(ps))
			MixGrad(x, dy, dx1, one, signed, cs, nil)
			c2 := ActGrad(x, dy, dx2, ps[j].Clip, signed)
			for i := range x {
				if dx1[i] != dx2[i] {
					t.Fatalf("signed %v option %d: one-hot dx %v, ActGrad %v", signed, j, dx1[i], dx2[i])
				}
			}
			if math.Abs(cs[j]-c2) > 1e-3 {
				t.Errorf("signed %v option %d: one-hot clip grad %v, ActGrad %v", signed, j, cs[j], c2)
			}
		}
	}
}

func TestQuantizeBiasSaturated(t *testing.T) {
	for _, c := range []struct {
		b, scale float32
		q        int64
		sat      bool
	}{{1.5, 0.5, 3, false}, {-2, 1, -2, false}, {1e12, 1e-3, math.MaxInt32, true}, {-1e12, 1e-3, math.MinInt32, true}} {
		q, sat := QuantizeBiasSaturated(c.b, c.scale)
		if q != c.q || sat != c.sat || QuantizeBias(c.b, c.scale) != c.q {
			t.Errorf("QuantizeBiasSaturated(%g, %g) = %d, %v; want %d, %v", c.b, c.scale, q, sat, c.q, c.sat)
		}
	}
}

// Power-of-two scales: Pow2 picks the nearer power on a log scale; a Pow2Clip grid's scale
// is exactly a power of two; Pow2WeightScales' folded scale is one, its unfolded scale
// times |a| gives it back to within a float rounding, and the filter's largest weight
// lies within a factor √2 of the grid's end (the nearest power is up to √2 from the free
// scale either way; past the end, weights saturate).
func TestPow2Scales(t *testing.T) {
	for _, c := range []struct{ x, want float32 }{{1, 1}, {0.75, 1}, {0.7, 0.5}, {1.5, 2}, {1.4, 1}, {3e-5, 1.0 / 32768}, {96, 128}} {
		if got := Pow2(c.x); got != c.want {
			t.Errorf("Pow2(%g) = %g, want %g", c.x, got, c.want)
		}
	}
	isPow2 := func(v float32) bool { e := math.Log2(float64(v)); return e == math.Round(e) }
	r := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		bits := MinBits + r.IntN(MaxBits-MinBits+1)
		signed := r.IntN(2) == 1
		clip := float32(math.Exp(r.NormFloat64() * 3))
		pc := Pow2Clip(clip, bits, signed)
		if s := ActScale(pc, bits, signed); !isPow2(s) || pc/clip > math.Sqrt2*1.0001 || clip/pc > math.Sqrt2*1.0001 {
			t.Fatalf("Pow2Clip(%g, %d, %v) = %g: scale %g", clip, bits, signed, pc, s)
		}
		maxAbs := float32(math.Exp(r.NormFloat64() * 2))
		a := math.Exp(r.NormFloat64()) * float64(1-2*r.IntN(2))
		u, f, ok := Pow2WeightScales(maxAbs, bits, a, a)
		if !ok || !isPow2(f) {
			t.Fatalf("Pow2WeightScales(%g, %d, %g) = %g, %g, %v", maxAbs, bits, a, u, f, ok)
		}
		// Up to Pow2HeldBits the power of two chosen with an earlier factor g stays while a
		// moves; above, it is a's. Either way the unfolded scale follows a.
		g := a * math.Exp(r.NormFloat64()*0.2)
		u2, f2, ok := Pow2WeightScales(maxAbs, bits, a, g)
		chooser := g
		if bits > Pow2HeldBits {
			chooser = a
		}
		if _, fc, _ := Pow2WeightScales(maxAbs, bits, chooser, chooser); !ok || f2 != fc {
			t.Fatalf("Pow2WeightScales(%g, %d, %g, %g) = %g, %g, %v; the grid of factor %g is %g", maxAbs, bits, a, g, u2, f2, ok, chooser, fc)
		}
		if d := math.Abs(float64(u2)*math.Abs(a)/float64(f2) - 1); d > 1e-6 {
			t.Fatalf("with g: unfolded %g × |a| = %g, folded %g", u2, float64(u2)*math.Abs(a), f2)
		}
		if d := math.Abs(float64(u)*math.Abs(a)/float64(f) - 1); d > 1e-6 {
			t.Fatalf("unfolded %g × |a| = %g, folded %g", u, float64(u)*math.Abs(a), f)
		}
		if q := maxAbs / u; q > float32(WeightMax(bits))*math.Sqrt2*1.0001 || q < float32(WeightMax(bits))/math.Sqrt2/1.0001 {
			t.Fatalf("largest weight at %g steps of a %d-bit grid", q, bits)
		}
	}
	if _, _, ok := Pow2WeightScales(1, 4, 0, 1); ok {
		t.Error("a zero BatchNorm factor gives a scale")
	}
}

// QuantizeRows (and so FakeQuantWeights) rounds each row onto its own symmetric grid, exact
// ties to even, copying Float rows: its AVX-512 loop and its portable one give what
// Quantize gives value by value, on rows of any length.
func TestQuantizeRowsIsQuantize(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, per := range []int{1, 9, 16, 27, 49, 147} {
		bits := []int{2, 3, 4, 8, Float, 5, 6}
		w := make([]float32, per*len(bits))
		scales := make([]float32, len(bits))
		for c, b := range bits {
			row := w[c*per : (c+1)*per]
			for i := range row {
				row[i] = float32(r.NormFloat64())
			}
			if b == Float {
				continue
			}
			scales[c] = WeightScale(MaxAbs(row), b)
			row[0] = (float32(r.IntN(2*WeightMax(b)+1)-WeightMax(b)) + 0.5) * scales[c] // an exact tie
		}
		want := make([]float32, len(w))
		for c, b := range bits {
			for i := c * per; i < (c+1)*per; i++ {
				if b == Float {
					want[i] = w[i]
					continue
				}
				hi := float32(WeightMax(b))
				want[i] = Quantize(w[i], scales[c], -hi, hi) * scales[c]
			}
		}
		for _, avx := range []bool{true, false} {
			useAVX512 = avx
			got := make([]float32, len(w))
			QuantizeRows(w, bits, scales, got)
			if !slices.Equal(got, want) {
				t.Errorf("rows of %d, avx %v: differ from Quantize", per, avx)
			}
		}
		useAVX512 = true
	}
}
