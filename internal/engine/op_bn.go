package engine

import (
	"math"

	"github.com/qnas/qnas/internal/kernels"
)

// batchNorm runs BatchNormalization: batch statistics in training (updating the running
// statistics), running statistics in inference.
type batchNorm struct {
	p                      kernels.BNParams
	x, gamma, beta, mu, vr *Value
	y                      *Value
	mean, invStd           []float32 // batch statistics saved for backward
	dx, dgamma, dbeta      *GradDst
	trained                bool      // the last forward used batch statistics
	momentum               float32   // the node's own weight of batch statistics (p.Momentum may be overridden)
	link                   *convBN   // shared with the Conv producing x (linkConvBN)
	out                    *Deferred // shared with the node reading y (see Deferred)
	lanesTaken             int       // backward passes that took their sums from a Conv (tests)
}

// A BatchNormalization whose only reader is a Relu, or a Clip to [0, max] (ReLU6), runs as
// one kernel that writes the activation's output (its OpDef's AbsorbsReLU and
// AbsorbsBoundedReLU, see fuse); after a Conv it shares that Conv's batch moments
// (MomentSink, see linkConvBN).
func init() {
	Register("BatchNormalization", buildBatchNorm)
}

func buildBatchNorm(b *Build) (Kernel, error) {
	{
		x := b.In[0]
		eps, err := b.Node.Float("epsilon", 1e-5)
		if err != nil {
			return nil, err
		}
		mom, err := b.Node.Float("momentum", 0.9)
		if err != nil {
			return nil, err
		}
		if mom < 0 || mom > 1 {
			return nil, b.Errorf("momentum %g is outside [0, 1]", mom)
		}
		hw := 1
		for _, d := range x.Shape[2:] {
			hw *= d
		}
		c := x.Shape[1]
		k := &batchNorm{
			p: kernels.BNParams{N: x.Shape[0], C: c, HW: hw, Eps: eps, Momentum: 1 - mom},
			x: x, gamma: b.In[1], beta: b.In[2], mu: b.In[3], vr: b.In[4], y: b.Out[0],
			mean: make([]float32, c), invStd: make([]float32, c),
			dx: b.InGrad(0), dgamma: b.InGrad(1), dbeta: b.InGrad(2),
		}
		k.p.ReLU, k.p.ReLUMax = b.ReLU, b.ReLUMax
		k.momentum = k.p.Momentum
		return k, nil
	}
}

func (k *batchNorm) Forward(train bool) {
	k.trained = train
	if k.out != nil {
		k.out.active = train
	}
	if train {
		var m *kernels.Moments
		if k.link != nil {
			m = k.link.moments
		}
		if k.out != nil {
			kernels.BatchNormTrainDeferred(k.p, m, k.x.Data, k.gamma.Data, k.beta.Data, k.mean, k.invStd, k.mu.Data, k.vr.Data, &k.out.m)
			return
		}
		kernels.BatchNormTrainMoments(k.p, m, k.x.Data, k.gamma.Data, k.beta.Data, k.y.Data, k.mean, k.invStd, k.mu.Data, k.vr.Data)
		return
	}
	kernels.BatchNormInfer(k.p, k.x.Data, k.gamma.Data, k.beta.Data, k.mu.Data, k.vr.Data, k.y.Data)
}

func (k *batchNorm) Backward() {
	var lanes []float32 // the sums, when the Conv writing y's gradient recorded them
	if k.trained && k.out.takeBNDone() {
		lanes = k.out.bn.Lanes
		k.lanesTaken++
	}
	if l := k.link; k.trained && l != nil && l.lazy && k.dx != nil && k.dx.target == nil {
		kernels.BatchNormBackwardLanes(k.p, lanes, k.x.Data, k.y.Grad, k.gamma.Data, k.beta.Data, k.mean, k.invStd,
			l.grad, nil, buf(k.dgamma), buf(k.dbeta))
		l.gradReady = true
		return
	}
	if k.trained {
		kernels.BatchNormBackwardLanes(k.p, lanes, k.x.Data, k.y.Grad, k.gamma.Data, k.beta.Data, k.mean, k.invStd,
			nil, buf(k.dx), buf(k.dgamma), buf(k.dbeta))
		return
	}
	// Inference statistics are constants: y = (x − μ)·γ/σ + β is affine in x.
	for c := 0; c < k.p.C; c++ {
		is := float32(1 / math.Sqrt(float64(k.vr.Data[c])+float64(k.p.Eps)))
		a := k.gamma.Data[c] * is
		shift := k.beta.Data[c] - k.mu.Data[c]*a
		var sd, sdx float64
		for n := 0; n < k.p.N; n++ {
			o := (n*k.p.C + c) * k.p.HW
			dy, x := k.y.Grad[o:o+k.p.HW], k.x.Data[o:o+k.p.HW]
			if k.p.ReLU { // the fused ReLU passes gradient only where its output is in (0, max)
				dy = k.reluMasked(dy, x, a, shift)
			}
			for i, g := range dy {
				sd += float64(g)
				sdx += float64(g) * float64(x[i]-k.mu.Data[c])
			}
			if k.dx != nil {
				dx := k.dx.Buf[o : o+k.p.HW]
				for i, g := range dy {
					dx[i] = g * a
				}
			}
		}
		if k.dgamma != nil {
			k.dgamma.Buf[c] = float32(sdx) * is
		}
		if k.dbeta != nil {
			k.dbeta.Buf[c] = float32(sd)
		}
	}
}

// reluMasked returns dy with zeros where the fused ReLU's input a·x + shift is not positive
// (or not below its max), in the plan's scratch-free temporary (the saved mean buffer is too
// small, so it reuses the gradient of the output in place: Backward is the last reader of
// y.Grad).
func (k *batchNorm) reluMasked(dy, x []float32, a, shift float32) []float32 {
	hi := float32(math.Inf(1))
	if k.p.ReLUMax > 0 {
		hi = k.p.ReLUMax
	}
	for i, v := range x {
		if t := v*a + shift; t <= 0 || t >= hi {
			dy[i] = 0
		}
	}
	return dy
}
