package engine

import "slices"

// reduce runs ReduceMean and ReduceSum over any axes: every input element is added into
// the output element its kept coordinates name.
type reduce struct {
	x, y  *Value
	dx    *GradDst
	win   strided // over the input's shape: the output offset of each element
	scale float32 // 1/count for a mean, 1 for a sum
}

func buildReduce(b *Build) (Kernel, error) {
	x, y := b.In[0], b.Out[0]
	axes, err := b.Graph.ReduceAxes(b.Node)
	if err != nil {
		return nil, err
	}
	mean := b.Node.Op == "ReduceMean"
	rank := len(x.Shape)
	if mean && rank >= 3 && slices.Equal(axes, spatialAxes(rank)) {
		return buildGlobal(b) // a spatial mean: the pooling kernels
	}
	if len(axes) == 0 { // noop_with_empty_axes
		return &copyOp{x: x, y: y, dx: b.InGrad(0)}, nil
	}
	keep := slices.Clone(x.Shape)
	count := 1
	for _, a := range axes {
		count *= keep[a]
		keep[a] = 1
	}
	k := &reduce{x: x, y: y, dx: b.InGrad(0), win: broadcastStrides(keep, x.Shape), scale: 1}
	if mean && count > 0 {
		k.scale = 1 / float32(count)
	}
	return k, nil
}

func spatialAxes(rank int) []int {
	var a []int
	for i := 2; i < rank; i++ {
		a = append(a, i)
	}
	return a
}

func (k *reduce) Forward(bool) {
	x, y := k.x.Data, k.y.Data
	clear(y)
	k.win.each(func(o, i, n, step int) {
		if step == 0 { // the innermost axis is reduced: one output
			var s float64
			for _, v := range x[o : o+n] {
				s += float64(v)
			}
			y[i] += float32(s)
			return
		}
		for t, v := range x[o : o+n] {
			y[i+t*step] += v
		}
	})
	if k.scale != 1 {
		for j := range y {
			y[j] *= k.scale
		}
	}
}

func (k *reduce) Backward() {
	if k.dx == nil {
		return
	}
	dx, dy, s := k.dx.Buf, k.y.Grad, k.scale
	k.win.each(func(o, i, n, step int) {
		for t := range dx[o : o+n] {
			dx[o+t] = dy[i+t*step] * s
		}
	})
}

func init() {
	Register("ReduceMean", buildReduce)
	Register("ReduceSum", buildReduce)
}
