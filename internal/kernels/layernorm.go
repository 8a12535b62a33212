package kernels

import "math"

// LayerNormShape describes a layer normalization over Rows rows of D values each (the
// trailing axes of the input from the normalized axis on). Gamma and Beta hold D values,
// or one value for every column.
type LayerNormShape struct {
	Rows, D int
	Eps     float32
}

// lnChunks is how many row ranges the backward pass sums the gradients of gamma and beta
// over separately: fixed, so the result does not depend on the thread count.
const lnChunks = 8

// ScratchLen returns the scratch LayerNormBackward needs.
func (s LayerNormShape) ScratchLen() int { return 2 * lnChunks * s.D }

func (s LayerNormShape) param(p []float32, j int) float32 {
	if len(p) == 1 {
		return p[0]
	}
	return p[j]
}

// LayerNorm computes y = (x − μ)·r·γ + β per row, with μ the row's mean and
// r = 1/√(σ² + eps) (σ² the biased variance), and stores μ and r per row in mean and
// invStd. beta may be nil (no shift).
func LayerNorm(s LayerNormShape, x, gamma, beta, y, mean, invStd []float32) {
	need("x", x, s.Rows*s.D)
	need("y", y, s.Rows*s.D)
	need("mean", mean, s.Rows)
	need("invStd", invStd, s.Rows)
	d := s.D
	parFor(s.Rows, 4*d, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := x[r*d : (r+1)*d]
			var sum float64
			for _, v := range row {
				sum += float64(v)
			}
			mu := sum / float64(d)
			var ss float64
			for _, v := range row {
				e := float64(v) - mu
				ss += e * e
			}
			is := 1 / math.Sqrt(ss/float64(d)+float64(s.Eps))
			mean[r], invStd[r] = float32(mu), float32(is)
			out := y[r*d : (r+1)*d]
			m, k := float32(mu), float32(is)
			switch {
			case len(gamma) == d && len(beta) == d:
				for j, v := range row {
					out[j] = (v-m)*k*gamma[j] + beta[j]
				}
			default:
				for j, v := range row {
					o := (v - m) * k * s.param(gamma, j)
					if beta != nil {
						o += s.param(beta, j)
					}
					out[j] = o
				}
			}
		}
	})
}

// LayerNormBackward computes dx, dgamma and dbeta (each may be nil) from dy and the
// forward's x, mean and invStd: with x̂ = (x − μ)·r and g = dy·γ,
// dx = r·(g − mean(g) − x̂·mean(g·x̂)), dγ = Σ_rows dy·x̂, dβ = Σ_rows dy (summed to
// one value when gamma or beta has one).
func LayerNormBackward(s LayerNormShape, x, gamma, mean, invStd, dy, dx, dgamma, dbeta, scratch []float32) {
	d := s.D
	need("x", x, s.Rows*d)
	need("dy", dy, s.Rows*d)
	needOpt("dx", dx, s.Rows*d)
	if dx != nil {
		parFor(s.Rows, 6*d, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				xs, gs, out := x[r*d:(r+1)*d], dy[r*d:(r+1)*d], dx[r*d:(r+1)*d]
				m, k := mean[r], invStd[r]
				var sg, sgx float64
				for j, v := range xs {
					g := gs[j] * s.param(gamma, j)
					sg += float64(g)
					sgx += float64(g * (v - m) * k)
				}
				a, b := float32(sg/float64(d)), float32(sgx/float64(d))
				for j, v := range xs {
					xh := (v - m) * k
					out[j] = k * (gs[j]*s.param(gamma, j) - a - xh*b)
				}
			}
		})
	}
	if dgamma == nil && dbeta == nil {
		return
	}
	if len(scratch) < s.ScratchLen() {
		panic("kernels: LayerNormBackward: scratch too short")
	}
	part := scratch[:s.ScratchLen()]
	clear(part)
	per := (s.Rows + lnChunks - 1) / lnChunks
	parFor(lnChunks, 2*per*d, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			pg, pb := part[2*c*d:(2*c+1)*d], part[(2*c+1)*d:(2*c+2)*d]
			for r := c * per; r < min((c+1)*per, s.Rows); r++ {
				xs, gs := x[r*d:(r+1)*d], dy[r*d:(r+1)*d]
				m, k := mean[r], invStd[r]
				for j, v := range xs {
					pg[j] += gs[j] * (v - m) * k
					pb[j] += gs[j]
				}
			}
		}
	})
	for i, dst := range [][]float32{dgamma, dbeta} {
		if dst == nil {
			continue
		}
		clear(dst)
		for c := range lnChunks {
			p := part[(2*c+i)*d : (2*c+i+1)*d]
			if len(dst) == 1 {
				dst[0] += sum32(p)
				continue
			}
			AddTo(dst, p)
		}
	}
}
