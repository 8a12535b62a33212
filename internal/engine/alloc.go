package engine

// bufPool hands out float32 buffers by exact length and takes them back for reuse.
type bufPool struct{ free map[int][][]float32 }

func (p *bufPool) get(n int) []float32 {
	if l := p.free[n]; len(l) > 0 {
		b := l[len(l)-1]
		p.free[n] = l[:len(l)-1]
		return b
	}
	return make([]float32, n)
}

func (p *bufPool) put(b []float32) {
	if p.free == nil {
		p.free = map[int][][]float32{}
	}
	p.free[len(b)] = append(p.free[len(b)], b)
}

// allocActivations gives every node output its buffer. A training plan keeps every
// activation (backward reads them); an inference plan reuses a buffer once the last reader
// of its value has run, so memory follows the widest point of the graph, not its depth.
func (p *Plan) allocActivations(inference bool, keep map[string]bool) {
	var pl bufPool
	lastUse := map[string]int{}
	for i, s := range p.steps {
		for _, in := range s.node.Inputs {
			lastUse[in] = i
		}
	}
	for i, s := range p.steps {
		for _, o := range s.node.Outputs {
			if v := p.Values[o]; v != nil {
				v.Data = pl.get(prod(v.Shape))
			}
		}
		if !inference {
			continue
		}
		for _, in := range s.node.Inputs {
			v := p.Values[in]
			if v != nil && v.Kind == Activation && lastUse[in] == i && !p.Graph.IsOutput(in) && !keep[in] {
				pl.put(v.Data)
				lastUse[in] = -1 // an input listed twice is returned once
			}
		}
		for _, o := range s.node.Outputs { // outputs nobody reads
			if v := p.Values[o]; v != nil && o != "" {
				if _, read := lastUse[o]; !read && !p.Graph.IsOutput(o) && !keep[o] {
					pl.put(v.Data)
				}
			}
		}
	}
}

// allocGradients gives every value that needs a gradient its buffer. Parameters and graph
// inputs keep their own (the optimizer and the caller read them after Backward), as do the
// activations in keep; any other activation's gradient lives from its first contribution (its
// last reader's backward) to its producer's backward, and buffers are reused across values
// whose lifetimes do not overlap.
func (p *Plan) allocGradients(needGrad, keep map[string]bool) {
	var pl bufPool
	producer := map[string]int{}
	for i, s := range p.steps {
		for _, o := range s.node.Outputs {
			producer[o] = i
		}
	}
	for name := range needGrad {
		v := p.Values[name]
		if v.Kind != Activation || p.Graph.IsOutput(name) || keep[name] {
			v.Grad = make([]float32, len(v.Data))
		}
	}
	// A BatchNormalization whose input gradient its Conv computes lazily (linkConvBN)
	// still has its output gradient read by the Conv's backward, one step later: free it
	// only after that step's gradients are placed.
	var pending [][]float32
	for i := len(p.steps) - 1; i >= 0; i-- {
		s := p.steps[i]
		if !s.backward {
			continue
		}
		for _, in := range s.node.Inputs {
			if v := p.Values[in]; v != nil && needGrad[in] && v.Grad == nil {
				v.Grad = pl.get(len(v.Data))
			}
		}
		for _, g := range pending {
			pl.put(g)
		}
		pending = pending[:0]
		lazy := p.convBN[i-1] != nil && p.convBN[i-1].lazy
		for _, o := range s.node.Outputs {
			if v := p.Values[o]; v != nil && v.Grad != nil && v.Kind == Activation && !p.Graph.IsOutput(o) && !keep[o] && producer[o] == i {
				if lazy {
					pending = append(pending, v.Grad)
				} else {
					pl.put(v.Grad)
				}
			}
		}
	}
}
