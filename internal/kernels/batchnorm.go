package kernels

import (
	"fmt"
	"math"
)

// BNParams describes a 2-D batch normalization over NCHW data, with an
// optional ReLU (or ReLU6-like clip to [0, ReLUMax]) fused after it.
type BNParams struct {
	N, C, HW int // batch, channels, pixels per channel (H·W)
	Eps      float32
	// Momentum is PyTorch's: the weight of the batch statistics when the
	// running ones are updated. ONNX's momentum attribute is 1 − Momentum.
	Momentum float32
	ReLU     bool    // apply max(0, ·) to the output
	ReLUMax  float32 // with ReLU and when positive, also min(·, ReLUMax) (ReLU6: 6)
}

// hi is the upper bound of the fused activation: ReLUMax, or +Inf.
func (p BNParams) hi() float32 {
	if p.ReLUMax > 0 {
		return p.ReLUMax
	}
	return float32(math.Inf(1))
}

// reluMask returns all ones where the fused activation of t passes its
// gradient (0 < t < hi) and 0 elsewhere.
func reluMask(t, hi float32) uint32 { return posMask(t) & posMask(hi-t) }

func (p BNParams) check(x, y, gamma, beta []float32) {
	need("x", x, p.N*p.C*p.HW)
	needOpt("y", y, p.N*p.C*p.HW)
	need("gamma", gamma, p.C)
	needOpt("beta", beta, p.C)
}

// bnAffine applies y = x·a + b (then ReLU, clipped at hi) to one plane.
// The backward pass recomputes the ReLU mask through the same expression.
func bnAffine(x, y []float32, a, b, hi float32, relu bool) {
	y = y[:len(x)]
	if haveElem16 && useElem16 && len(x) > 0 {
		affinePlanes(&x[0], &y[0], len(x), 1, len(x), a, b, hi, relu)
		return
	}
	if relu && hi < float32(math.Inf(1)) {
		for i, v := range x {
			y[i] = min(relu32(v*a+b), hi)
		}
		return
	}
	if relu {
		for i, v := range x {
			y[i] = relu32(v*a + b)
		}
		return
	}
	for i, v := range x {
		y[i] = v*a + b
	}
}

// relu32 is max(v, 0) without a branch: the sign bit, smeared over the
// word, masks the value away.
func relu32(v float32) float32 {
	b := math.Float32bits(v)
	return math.Float32frombits(b &^ uint32(int32(b)>>31))
}

// BatchNormTrain normalizes x with the statistics of the batch:
// y = (x − μ)·γ/√(σ² + ε) + β per channel, with σ² the biased variance. It
// stores μ in mean and 1/√(σ² + ε) in invStd for the backward pass and, when
// runMean and runVar are not nil, updates them as PyTorch does:
// run ← (1 − m)·run + m·batch, with the unbiased variance for runVar.
// beta may be nil (zero).
func BatchNormTrain(p BNParams, x, gamma, beta, y, mean, invStd, runMean, runVar []float32) {
	batchNormTrain(p, nil, x, gamma, beta, y, mean, invStd, runMean, runVar, nil)
}

// BatchNormTrainMoments is BatchNormTrain taking the batch statistics from
// m when m.Valid (as Conv2DMoments leaves them for its output x) instead
// of a pass over x. It clears m.Valid.
func BatchNormTrainMoments(p BNParams, m *Moments, x, gamma, beta, y, mean, invStd, runMean, runVar []float32) {
	batchNormTrain(p, takeMoments(p, m), x, gamma, beta, y, mean, invStd, runMean, runVar, nil)
}

// takeMoments returns m when it holds valid statistics, clearing m.Valid,
// else nil.
func takeMoments(p BNParams, m *Moments) *Moments {
	if m == nil || !m.Valid {
		return nil
	}
	m.Valid = false
	if len(m.Mean) != p.C {
		panic("kernels: Moments for the wrong number of channels")
	}
	return m
}

// BatchNormTrainDeferred is BatchNormTrainMoments without the output: it
// computes the statistics (updating the running ones) and leaves the
// normalization, with p's ReLU, in aff (C channels) for the convolution
// that reads it (ConvShape.In), so the normalized activation is never
// stored and read back.
func BatchNormTrainDeferred(p BNParams, m *Moments, x, gamma, beta, mean, invStd, runMean, runVar []float32, aff *InputMap) {
	need("aff.A", aff.A, p.C)
	need("aff.B", aff.B, p.C)
	aff.ReLU, aff.ReLUMax = p.ReLU, p.ReLUMax
	batchNormTrain(p, takeMoments(p, m), x, gamma, beta, nil, mean, invStd, runMean, runVar, aff)
}

// batchNormTrain is BatchNormTrainMoments, also storing each channel's
// affine map in aff when not nil, and writing no output when y is nil.
func batchNormTrain(p BNParams, m *Moments, x, gamma, beta, y, mean, invStd, runMean, runVar []float32, aff *InputMap) {
	p.check(x, y, gamma, beta)
	if aff == nil {
		need("y", y, len(x))
	}
	need("mean", mean, p.C)
	need("invStd", invStd, p.C)
	needOpt("runMean", runMean, p.C)
	needOpt("runVar", runVar, p.C)
	C, HW := p.C, p.HW
	M := float64(p.N * HW)
	parFor(C, 2*p.N*HW, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			var mu, v float64
			if m != nil {
				mu, v = m.Mean[c], max(m.M2[c]/M, 0)
			} else {
				// One pass over the data, shifted by its first value so
				// the float64 sums of squares do not cancel.
				k := float64(x[c*HW])
				var s, ss float64
				for n := range p.N {
					a, b := sumSq(x[(n*C+c)*HW:][:HW], float32(k))
					s += a
					ss += b
				}
				d := s / M
				mu, v = k+d, max(ss/M-d*d, 0)
			}
			is := 1 / math.Sqrt(v+float64(p.Eps))
			mean[c], invStd[c] = float32(mu), float32(is)
			if runMean != nil {
				m := float64(p.Momentum)
				runMean[c] = float32((1-m)*float64(runMean[c]) + m*mu)
			}
			if runVar != nil {
				m, uv := float64(p.Momentum), v
				if M > 1 {
					uv = v * M / (M - 1)
				}
				runVar[c] = float32((1-m)*float64(runVar[c]) + m*uv)
			}
			a, b := bnScaleShift(gamma, beta, c, float32(mu), float32(is))
			if aff != nil {
				aff.A[c], aff.B[c] = a, b
			}
			if y == nil {
				continue
			}
			planes(p.N, HW, func() {
				affinePlanes(&x[c*HW], &y[c*HW], HW, p.N, C*HW, a, b, p.hi(), p.ReLU)
			}, func(n int) {
				o := (n*C + c) * HW
				bnAffine(x[o:o+HW], y[o:o+HW], a, b, p.hi(), p.ReLU)
			})
		}
	})
}

// bnScaleShift returns a and b with (x − mu)·is·γ + β = x·a + b.
func bnScaleShift(gamma, beta []float32, c int, mu, is float32) (a, b float32) {
	a = gamma[c] * is
	b = -mu * a
	if beta != nil {
		b += beta[c]
	}
	return a, b
}

// sumSq returns Σ(v − k) and Σ(v − k)² in float64.
func sumSq(v []float32, k float32) (s, ss float64) {
	var s0, s1, q0, q1 float64
	i := bulk16(len(v))
	if i > 0 {
		var acc [32]float32
		sumSq16(&v[0], i, k, &acc[0])
		s0, q0 = lanes(&acc)
	}
	for ; i+2 <= len(v); i += 2 {
		a, b := float64(v[i]-k), float64(v[i+1]-k)
		s0 += a
		s1 += b
		q0 += a * a
		q1 += b * b
	}
	if i < len(v) {
		a := float64(v[i] - k)
		s0 += a
		q0 += a * a
	}
	return s0 + s1, q0 + q1
}

// BatchNormInfer normalizes x with the running statistics:
// y = (x − runMean)·γ/√(runVar + ε) + β. beta may be nil.
func BatchNormInfer(p BNParams, x, gamma, beta, runMean, runVar, y []float32) {
	p.check(x, y, gamma, beta)
	need("y", y, len(x))
	need("runMean", runMean, p.C)
	need("runVar", runVar, p.C)
	C, HW := p.C, p.HW
	parFor(p.N*C, HW, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			c := t % C
			is := float32(1 / math.Sqrt(float64(runVar[c])+float64(p.Eps)))
			a, b := bnScaleShift(gamma, beta, c, runMean[c], is)
			bnAffine(x[t*HW:(t+1)*HW], y[t*HW:(t+1)*HW], a, b, p.hi(), p.ReLU)
		}
	})
}

// BatchNormBackward computes the gradients of BatchNormTrain from dy, the
// input x and the saved mean and invStd. With p.ReLU it recomputes the
// mask of the fused ReLU from x, gamma and beta (beta may be nil, as in the
// forward pass). dx, dgamma and dbeta may each be nil.
func BatchNormBackward(p BNParams, x, dy, gamma, beta, mean, invStd, dx, dgamma, dbeta []float32) {
	batchNormBackward(p, x, dy, gamma, beta, mean, invStd, nil, nil, dx, dgamma, dbeta)
}

// BatchNormBackwardLanes is BatchNormBackward (g nil) or BatchNormBackwardTo
// (g set, dx nil) taking the sums over x and dy from lanes (BNLanes.Lanes,
// recorded as dy was written) instead of a pass of its own, with the same
// bits; lanes nil: its own pass. Lanes only where BNLanesAvailable.
func BatchNormBackwardLanes(p BNParams, lanes []float32, x, dy, gamma, beta, mean, invStd []float32, g *BNInputGrad, dx, dgamma, dbeta []float32) {
	if g != nil && len(g.coef) != p.C {
		panic("kernels: BNInputGrad for the wrong number of channels")
	}
	if lanes == nil {
		batchNormBackward(p, x, dy, gamma, beta, mean, invStd, nil, g, dx, dgamma, dbeta)
		return
	}
	if !BNLanesAvailable() {
		panic("kernels: BatchNormBackwardLanes without the AVX-512 loops")
	}
	if len(lanes) < 32*p.N*p.C {
		panic(fmt.Sprintf("kernels: %d BatchNorm lanes, want %d", len(lanes), 32*p.N*p.C))
	}
	batchNormBackward(p, x, dy, gamma, beta, mean, invStd, lanes, g, dx, dgamma, dbeta)
}

// BNInputGrad is the input gradient of a training-mode BatchNorm held as
// what it is computed from (the BatchNorm's input and output gradient and
// per-channel coefficients), so that its consumer can compute it plane by
// plane where it needs it (Conv2DBackwardBN) instead of reading it back
// from memory.
type BNInputGrad struct {
	p     BNParams
	x, dy []float32
	coef  [][7]float32 // per channel: mu, a, b, k, m1, m2, hi (see plane)
}

// NewBNInputGrad returns a BNInputGrad for c channels.
func NewBNInputGrad(c int) *BNInputGrad { return &BNInputGrad{coef: make([][7]float32, c)} }

// BatchNormBackwardTo is BatchNormBackward leaving the input gradient to
// g: it computes dgamma and dbeta (either may be nil) and keeps in g what dx
// is computed from. x and dy must not change until g has been used.
func BatchNormBackwardTo(p BNParams, x, dy, gamma, beta, mean, invStd []float32, g *BNInputGrad, dgamma, dbeta []float32) {
	if len(g.coef) != p.C {
		panic("kernels: BNInputGrad for the wrong number of channels")
	}
	batchNormBackward(p, x, dy, gamma, beta, mean, invStd, nil, g, nil, dgamma, dbeta)
}

// plane writes the input gradient of sample n, channel c to dst (p.HW
// floats).
func (g *BNInputGrad) plane(n, c int, dst []float32) {
	HW := g.p.HW
	o := (n*g.p.C + c) * HW
	x, dy, dx := g.x[o:o+HW], g.dy[o:o+HW], dst[:HW]
	if haveElem16 && useElem16 {
		bnDxPlanes(&x[0], &dy[0], &dx[0], HW, 1, HW, &g.coef[c], g.p.ReLU)
		return
	}
	bnDxPlane(x, dy, dx, &g.coef[c], g.p.ReLU)
}

// bnDxPlane writes to dx the input gradient of one plane of x with output
// gradient dy: dx = k·(g − m1 − (x − μ)·m2), with g = dy masked by the
// fused ReLU (0 < x·a + b < hi) when relu, and cf = {μ, a, b, k, m1, m2,
// hi}: k = γ·is, m1 = Σg/M and m2 = Σg·(x − μ)·is²/M.
func bnDxPlane(x, dy, dx []float32, cf *[7]float32, relu bool) {
	dy, dx = dy[:len(x)], dx[:len(x)]
	mu, a, b, k, m1, m2, hi := cf[0], cf[1], cf[2], cf[3], cf[4], cf[5], cf[6]
	if !relu {
		for i, v := range x {
			dx[i] = k * (dy[i] - m1 - (v-mu)*m2)
		}
		return
	}
	for i, v := range x {
		dx[i] = k * (maskf(dy[i], reluMask(v*a+b, hi)) - m1 - (v-mu)*m2)
	}
}

// batchNormBackward computes dgamma and dbeta and fills g (when not nil);
// with dx not nil it also writes the input gradient there. With lanes
// (BNLanes.Lanes) it takes the sums from there.
func batchNormBackward(p BNParams, x, dy, gamma, beta, mean, invStd, lanes []float32, g *BNInputGrad, dx, dgamma, dbeta []float32) {
	p.check(x, dy, gamma, beta)
	need("dy", dy, len(x))
	need("mean", mean, p.C)
	need("invStd", invStd, p.C)
	needOpt("dx", dx, len(x))
	needOpt("dgamma", dgamma, p.C)
	needOpt("dbeta", dbeta, p.C)
	if g != nil {
		g.p, g.x, g.dy = p, x, dy
	}
	C, HW := p.C, p.HW
	M := float32(p.N * HW)
	parFor(C, 3*p.N*HW, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			mu, is := mean[c], invStd[c]
			a, b := bnScaleShift(gamma, beta, c, mu, is)
			// Σdy and Σdy·(x − μ), over the pixels the ReLU let through.
			var sd, sdx float64
			planes(p.N, HW, func() {
				var acc [32]float64
				if lanes != nil {
					// The loop below adds each plane's lanes, converted, in this order.
					for n := range p.N {
						l := lanes[(n*C+c)*32:][:32]
						for i := range acc {
							acc[i] += float64(l[i])
						}
					}
				} else {
					gradSumsPlanes(x[c*HW:], dy[c*HW:], HW, p.N, C*HW, &[4]float32{mu, a, b, p.hi()}, p.ReLU, &acc)
				}
				for i := range 16 {
					sd += acc[i]
					sdx += acc[16+i]
				}
			}, func(n int) {
				o := (n*C + c) * HW
				s1, s2 := bnGradSums(x[o:o+HW], dy[o:o+HW], mu, a, b, p.hi(), p.ReLU)
				sd += s1
				sdx += s2
			})
			if dbeta != nil {
				dbeta[c] = float32(sd)
			}
			if dgamma != nil {
				dgamma[c] = float32(sdx) * is
			}
			if g == nil && dx == nil {
				continue
			}
			// dx = γ·is·(dy − Σdy/M − x̂·Σ(dy·x̂)/M), x̂ = (x − μ)·is.
			cf := [7]float32{mu, a, b, a, float32(sd) / M, float32(sdx) * is * is / M, p.hi()}
			if g != nil {
				g.coef[c] = cf
			}
			if dx != nil {
				planes(p.N, HW, func() {
					bnDxPlanes(&x[c*HW], &dy[c*HW], &dx[c*HW], HW, p.N, C*HW, &cf, p.ReLU)
				}, func(n int) {
					o := (n*C + c) * HW
					bnDxPlane(x[o:o+HW], dy[o:o+HW], dx[o:o+HW], &cf, p.ReLU)
				})
			}
		}
	})
}

// bnGradSums returns Σg and Σg·(x − mu), where g is dy masked by the fused
// ReLU (clipped at hi) when relu is set.
func bnGradSums(x, dy []float32, mu, a, b, hi float32, relu bool) (sd, sdx float64) {
	dy = dy[:len(x)]
	var s0, s1 float32
	if !relu {
		for i, v := range x {
			g := dy[i]
			s0 += g
			s1 += g * (v - mu)
		}
		return float64(s0), float64(s1)
	}
	for i, v := range x {
		g := maskf(dy[i], reluMask(v*a+b, hi))
		s0 += g
		s1 += g * (v - mu)
	}
	return float64(s0), float64(s1)
}
