package quant

import (
	"math"
	"math/rand/v2"
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
				got := make([]float32, len(x))
				FakeQuantAct(x, got, clip, bits, signed)
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("bits %d signed %v avx %v: x = %v: got %v, want %v", bits, signed, avx, x[i], got[i], want[i])
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
