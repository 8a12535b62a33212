package engine

import "math/rand/v2"

// StepState is what stateful kernels (the search's mixed ops) read before a forward pass: the
// temperature of their Gumbel-softmax relaxations and the source of their noise.
type StepState struct {
	// Step identifies the sample: kernels that share one sample (several masks of one
	// channel group) draw it once per Step.
	Step        uint64
	Temperature float64
	// Noise draws the Gumbel noise; nil means none (the probabilities are the softmax of
	// the logits at the temperature).
	Noise *rand.Rand
	// Hard makes the samples one-hot in the forward pass, with the soft sample's gradient
	// (straight through).
	Hard bool
	// Argmax makes every choice its most probable option, one-hot (derived-architecture
	// evaluation of a supernet).
	Argmax bool
	// Pin, when its Logits are set, fixes the sample of that one choice: every unit of the
	// logits constant Pin.Logits takes option Pin.Option, one-hot, while every other choice
	// draws as it would without the pin (a probe of one choice's options on one sample).
	Pin Pin
	// FullWidth keeps every channel of every width choice, whatever its sample (a weight
	// step that trains the whole network).
	FullWidth bool
}

// Pin names one choice and the option its sample takes (StepState.Pin).
type Pin struct {
	Logits string
	Option int
}

// Stateful is implemented by kernels whose forward pass depends on the step's StepState.
type Stateful interface {
	// SetState takes the state of the coming forward passes; kernels that sample draw
	// their noise here.
	SetState(*StepState)
}

// SetState hands s to every stateful kernel in graph order, so kernels that draw noise draw
// it in an order that does not depend on anything but the graph.
func (p *Plan) SetState(s *StepState) {
	for _, st := range p.steps {
		if k, ok := st.kernel.(Stateful); ok {
			k.SetState(s)
		}
	}
}

// SetTrainable selects the parameters whose gradients Backward computes: kernels skip the
// work for the others (a Conv its weight gradient, a mixed op the gradient of its logits)
// and their Grad keeps whatever it held. After Compile every parameter is trainable; nil
// makes them all trainable again. Gradients of activations always flow.
func (p *Plan) SetTrainable(train func(name string) bool) {
	for key, d := range p.gradDst {
		v := p.Values[key.node.Inputs[key.input]]
		if v == nil || v.Kind != Param {
			continue
		}
		d.setOff(train != nil && !train(v.Name))
	}
}

// Active reports whether the kernel should write this gradient (it exists and its
// parameter is trainable; see Plan.SetTrainable).
func (d *GradDst) Active() bool { return d != nil && !d.off }

// setOff turns the destination off (its writes go to a discard buffer, so kernels that do
// not check Active stay correct) or back on.
func (d *GradDst) setOff(off bool) {
	if off == d.off {
		return
	}
	if off {
		d.live = d.Buf
		d.Buf = make([]float32, len(d.Buf))
	} else {
		d.Buf = d.live
	}
	d.off = off
}

// SharedValue returns the plan-wide value stored under key by Build.Shared, if any: how the
// package that stored it reads that state between steps.
func (p *Plan) SharedValue(key any) (any, bool) {
	v, ok := p.shared[key]
	return v, ok
}

// Shared returns the plan-wide value stored under key, made by mk on first use: state that
// several kernels of one plan share (the search's masks of one channel group share one
// sample of their choice). Keys are comparable values of a type of the caller's own, so
// two packages never collide.
func (b *Build) Shared(key any, mk func() any) any {
	if b.Plan.shared == nil {
		b.Plan.shared = map[any]any{}
	}
	v, ok := b.Plan.shared[key]
	if !ok {
		v = mk()
		b.Plan.shared[key] = v
	}
	return v
}
