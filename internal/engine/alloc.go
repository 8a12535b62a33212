package engine

import "slices"

// bufPool shares buffers between values whose lifetimes do not overlap. get hands a value
// the smallest free buffer that holds it, or grows the largest free one when none does
// (a new buffer only when none is free), so values of different sizes share memory too;
// buffers are allocated once every value has its buffer (alloc), each at the largest size
// any of its values needs.
type bufPool struct {
	bufs []*poolBuf
	free []*poolBuf
}

type poolBuf struct {
	size  int
	users []poolUser
}

type poolUser struct {
	dst *[]float32
	n   int
}

// get gives *dst a buffer of n floats, set by alloc.
func (p *bufPool) get(dst *[]float32, n int) *poolBuf {
	best := -1
	for i, b := range p.free {
		if b.size >= n && (best < 0 || b.size < p.free[best].size) {
			best = i
		}
	}
	if best < 0 { // nothing free holds n: grow the largest free buffer
		for i, b := range p.free {
			if best < 0 || b.size > p.free[best].size {
				best = i
			}
		}
	}
	var b *poolBuf
	if best >= 0 {
		b = p.free[best]
		p.free = append(p.free[:best], p.free[best+1:]...)
	} else {
		b = &poolBuf{}
		p.bufs = append(p.bufs, b)
	}
	b.size = max(b.size, n)
	b.users = append(b.users, poolUser{dst, n})
	return b
}

// put makes b free for values that are written after this point.
func (p *bufPool) put(b *poolBuf) { p.free = append(p.free, b) }

// alloc allocates the buffers and points every value at the start of its own.
func (p *bufPool) alloc() {
	for _, b := range p.bufs {
		buf := make([]float32, b.size)
		for _, u := range b.users {
			*u.dst = buf[:u.n]
		}
	}
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
	bufOf := map[string]*poolBuf{}
	for i, s := range p.steps {
		for _, o := range s.node.Outputs {
			if v := p.Values[o]; v != nil {
				bufOf[o] = pl.get(&v.Data, prod(v.Shape))
			}
		}
		if !inference {
			continue
		}
		for _, in := range s.node.Inputs {
			v := p.Values[in]
			if v != nil && v.Kind == Activation && lastUse[in] == i && !p.Graph.IsOutput(in) && !keep[in] {
				pl.put(bufOf[in])
				lastUse[in] = -1 // an input listed twice is returned once
			}
		}
		for _, o := range s.node.Outputs { // outputs nobody reads
			if v := p.Values[o]; v != nil && o != "" {
				if _, read := lastUse[o]; !read && !p.Graph.IsOutput(o) && !keep[o] {
					pl.put(bufOf[o])
				}
			}
		}
	}
	pl.alloc()
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
	bufOf := map[*Value]*poolBuf{}
	var pending []*poolBuf
	// A Conv applying the backward of the op deferred into it (Deferred.DeferGrad) writes
	// that op's input gradient in its own step: the buffer must not be one of the Conv's
	// output gradients it reads.
	// When that input has no other reader, the op's output gradient shares its buffer: the
	// Conv then writes only one of the two, and the op's own backward (where the Conv does
	// not apply it) is elementwise and runs in place.
	early := map[int][]string{}
	readers := map[string]int{}
	for _, s := range p.steps {
		for _, in := range s.node.Inputs {
			readers[in]++
		}
	}
	shares := map[*Value]*Value{} // output gradient → the input gradient whose buffer it shares
	for i, j := range p.deferred {
		n := p.steps[i].node
		if n.Op == "BatchNormalization" {
			continue
		}
		early[j] = append(early[j], n.Inputs[0])
		x, y := p.Values[n.Inputs[0]], p.Values[n.Outputs[0]]
		if readers[n.Inputs[0]] == 1 && x != nil && y != nil && x.Kind == Activation && x.Grad == nil && y.Grad == nil && len(x.Data) == len(y.Data) {
			shares[y] = x
		}
	}
	for i := len(p.steps) - 1; i >= 0; i-- {
		s := p.steps[i]
		if !s.backward {
			continue
		}
		for _, in := range slices.Concat(early[i], s.node.Inputs) {
			v := p.Values[in]
			if v == nil || !needGrad[in] || v.Grad != nil || bufOf[v] != nil {
				continue
			}
			if x := shares[v]; x != nil && bufOf[x] != nil {
				b := bufOf[x]
				b.users = append(b.users, poolUser{&v.Grad, len(v.Data)})
				bufOf[v] = b
				continue
			}
			delete(shares, v)
			bufOf[v] = pl.get(&v.Grad, len(v.Data))
		}
		for _, b := range pending {
			pl.put(b)
		}
		pending = pending[:0]
		lazy := p.convBN[i-1] != nil && p.convBN[i-1].lazy
		for _, o := range s.node.Outputs {
			if v := p.Values[o]; v != nil && shares[v] != nil {
				continue // the buffer is its input gradient's, freed at that one's producer
			}
			if v := p.Values[o]; v != nil && bufOf[v] != nil && v.Kind == Activation && !p.Graph.IsOutput(o) && !keep[o] && producer[o] == i {
				if lazy {
					pending = append(pending, bufOf[v])
				} else {
					pl.put(bufOf[v])
				}
			}
		}
	}
	pl.alloc()
}
