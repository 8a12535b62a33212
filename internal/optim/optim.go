// Package optim holds the optimizers (SGD with momentum, Nesterov and weight decay; Adam)
// and learning-rate schedules (cosine, step) that update a plan's parameters in place.
package optim

import (
	"fmt"
	"math"
)

// Param is one learnable tensor and its gradient (the engine's Value fields).
type Param struct {
	Name string
	Data []float32
	Grad []float32
}

// Optimizer updates parameters from their gradients.
type Optimizer interface {
	// Step applies one update with learning rate lr.
	Step(lr float64)
}

// SGD is stochastic gradient descent with momentum (PyTorch's formulation: the velocity
// accumulates gradients, v = μ·v + g; with Nesterov the step uses g + μ·v), and L2 weight
// decay added to the gradient.
type SGD struct {
	Params      []Param
	Momentum    float64
	Nesterov    bool
	WeightDecay float64
	// NoDecay names parameters excluded from weight decay (biases, BatchNorm scales).
	NoDecay map[string]bool
	vel     [][]float32
}

// Velocity returns the momentum buffers, one per parameter in Params order, allocating
// them (zero) on first use; checkpoints save and restore them through this slice.
func (o *SGD) Velocity() [][]float32 {
	if o.vel == nil {
		o.vel = make([][]float32, len(o.Params))
		for i, p := range o.Params {
			o.vel[i] = make([]float32, len(p.Data))
		}
	}
	return o.vel
}

// Step implements Optimizer.
func (o *SGD) Step(lr float64) {
	if o.Momentum != 0 {
		o.Velocity()
	}
	mu, l := float32(o.Momentum), float32(lr)
	for i, p := range o.Params {
		wd := float32(o.WeightDecay)
		if o.NoDecay[p.Name] {
			wd = 0
		}
		if o.Momentum == 0 {
			for j, g := range p.Grad {
				p.Data[j] -= l * (g + wd*p.Data[j])
			}
			continue
		}
		v := o.vel[i]
		for j, g := range p.Grad {
			g += wd * p.Data[j]
			v[j] = mu*v[j] + g
			if o.Nesterov {
				g += mu * v[j]
			} else {
				g = v[j]
			}
			p.Data[j] -= l * g
		}
	}
}

// Adam is the Adam optimizer (Kingma & Ba) with bias correction and optional L2 weight decay
// added to the gradient.
type Adam struct {
	Params       []Param
	Beta1, Beta2 float64 // 0 means the defaults 0.9 and 0.999
	Eps          float64 // 0 means 1e-8
	WeightDecay  float64
	// SharedScale makes the second moment one estimate for all parameters (the mean square
	// of every gradient element) instead of one per element: steps are normalized as a
	// whole but keep the parameters' relative gradient magnitudes, so a parameter whose
	// gradient is small moves little.
	SharedScale bool
	m, v        [][]float32
	t           int
}

// Moments returns the first and second moment buffers, one per parameter in Params order
// (allocated zero on first use), and the step count: checkpoints save and restore them.
func (o *Adam) Moments() (m, v [][]float32, t *int) {
	if o.m == nil {
		o.m, o.v = make([][]float32, len(o.Params)), make([][]float32, len(o.Params))
		for i, p := range o.Params {
			o.m[i], o.v[i] = make([]float32, len(p.Data)), make([]float32, len(p.Data))
		}
	}
	return o.m, o.v, &o.t
}

// Step implements Optimizer.
func (o *Adam) Step(lr float64) {
	o.Moments()
	b1, b2, eps := o.Beta1, o.Beta2, o.Eps
	if b1 == 0 {
		b1 = 0.9
	}
	if b2 == 0 {
		b2 = 0.999
	}
	if eps == 0 {
		eps = 1e-8
	}
	o.t++
	c1 := 1 - math.Pow(b1, float64(o.t))
	c2 := 1 - math.Pow(b2, float64(o.t))
	step := float32(lr / c1)
	sq := float32(math.Sqrt(c2))
	fb1, fb2, feps, wd := float32(b1), float32(b2), float32(eps), float32(o.WeightDecay)
	if o.SharedScale {
		o.sharedStep(step, sq, fb1, fb2, feps, wd)
		return
	}
	for i, p := range o.Params {
		m, v := o.m[i], o.v[i]
		for j, g := range p.Grad {
			g += wd * p.Data[j]
			m[j] = fb1*m[j] + (1-fb1)*g
			v[j] = fb2*v[j] + (1-fb2)*g*g
			p.Data[j] -= step * m[j] / (float32(math.Sqrt(float64(v[j])))/sq + feps)
		}
	}
}

// sharedStep is Step with one second-moment estimate, kept in every element of v.
func (o *Adam) sharedStep(step, sq, b1, b2, eps, wd float32) {
	var sum float64
	n := 0
	for _, p := range o.Params {
		for j, g := range p.Grad {
			g += wd * p.Data[j]
			sum += float64(g) * float64(g)
		}
		n += len(p.Grad)
	}
	if n == 0 {
		return
	}
	var v float32
	if len(o.v) > 0 && len(o.v[0]) > 0 {
		v = o.v[0][0]
	}
	v = b2*v + (1-b2)*float32(sum/float64(n))
	den := float32(math.Sqrt(float64(v)))/sq + eps
	for i, p := range o.Params {
		m := o.m[i]
		for j, g := range p.Grad {
			g += wd * p.Data[j]
			m[j] = b1*m[j] + (1-b1)*g
			p.Data[j] -= step * m[j] / den
			o.v[i][j] = v
		}
	}
}

// Schedule gives the learning rate at step t of total.
type Schedule interface {
	LR(t, total int) float64
}

// Cosine anneals from Base to Min over the run, after Warmup linear steps.
type Cosine struct {
	Base, Min float64
	Warmup    int
}

// LR implements Schedule.
func (s Cosine) LR(t, total int) float64 {
	if t < s.Warmup {
		return s.Base * float64(t+1) / float64(s.Warmup)
	}
	span := max(total-s.Warmup, 1)
	f := float64(t-s.Warmup) / float64(span)
	return s.Min + 0.5*(s.Base-s.Min)*(1+math.Cos(math.Pi*min(f, 1)))
}

// Step multiplies Base by Gamma at each of Milestones (fractions of the run in (0, 1)).
type Step struct {
	Base, Gamma float64
	Milestones  []float64
}

// LR implements Schedule.
func (s Step) LR(t, total int) float64 {
	lr := s.Base
	for _, m := range s.Milestones {
		if float64(t) >= m*float64(total) {
			lr *= s.Gamma
		}
	}
	return lr
}

// ParseSchedule reads "cosine" or "step" with a base rate.
func ParseSchedule(name string, base float64) (Schedule, error) {
	switch name {
	case "cosine":
		return Cosine{Base: base}, nil
	case "step":
		return Step{Base: base, Gamma: 0.1, Milestones: []float64{0.5, 0.75}}, nil
	}
	return nil, fmt.Errorf("unknown schedule %q (cosine, step)", name)
}
