package engine

import "slices"

// copyOp runs ops that only reinterpret the shape (Flatten, Reshape, Squeeze, Unsqueeze,
// Identity, Dropout at inference): a copy forward and backward.
type copyOp struct {
	x, y *Value
	dx   *GradDst
}

func (k *copyOp) Forward(bool) { copy(k.y.Data, k.x.Data) }
func (k *copyOp) Backward() {
	if k.dx != nil {
		copy(k.dx.Buf, k.y.Grad)
	}
}

func buildCopy(b *Build) (Kernel, error) {
	if b.Node.Op == "Dropout" && len(b.Out) > 1 && b.Out[1] != nil {
		return nil, b.Errorf("the mask output is not supported")
	}
	return &copyOp{x: b.In[0], y: b.Out[0], dx: b.InGrad(0)}, nil
}

// strided copies between a tensor and a window of another: out[i] = in[offset(i)] where
// offset walks the output's coordinates with per-axis input strides. It serves Transpose,
// Slice, Concat, Split and Pad.
type strided struct {
	shape   []int // output (window) shape
	strides []int // input stride per output axis
	base    int   // input offset of the window's origin
}

// each calls f(outIndex, inIndex) for every element, innermost axis in a tight loop.
func (s *strided) each(f func(o, i, n, step int)) {
	r := len(s.shape)
	if r == 0 {
		f(0, s.base, 1, 1)
		return
	}
	inner, step := s.shape[r-1], s.strides[r-1]
	outer := 1
	for _, d := range s.shape[:r-1] {
		outer *= d
	}
	coord := make([]int, r-1)
	for o := 0; o < outer; o++ {
		in := s.base
		for d, c := range coord {
			in += c * s.strides[d]
		}
		f(o*inner, in, inner, step)
		for d := r - 2; d >= 0; d-- {
			coord[d]++
			if coord[d] < s.shape[d] {
				break
			}
			coord[d] = 0
		}
	}
}

// gather copies the window of src into dst (dense).
func (s *strided) gather(src, dst []float32) {
	s.each(func(o, i, n, step int) {
		if step == 1 {
			copy(dst[o:o+n], src[i:i+n])
			return
		}
		for j := 0; j < n; j++ {
			dst[o+j] = src[i+j*step]
		}
	})
}

// scatter writes dense src into the window of dst.
func (s *strided) scatter(src, dst []float32) {
	s.each(func(o, i, n, step int) {
		if step == 1 {
			copy(dst[i:i+n], src[o:o+n])
			return
		}
		for j := 0; j < n; j++ {
			dst[i+j*step] = src[o+j]
		}
	})
}

func rowMajorStrides(shape []int) []int {
	st := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = acc
		acc *= shape[i]
	}
	return st
}

// windowOp gathers one window of its input (Transpose, Slice, Split outputs).
type windowOp struct {
	x    *Value
	ys   []*Value
	wins []strided
	dx   *GradDst
}

func (k *windowOp) Forward(bool) {
	for i, y := range k.ys {
		if y != nil {
			k.wins[i].gather(k.x.Data, y.Data)
		}
	}
}

func (k *windowOp) Backward() {
	if k.dx == nil {
		return
	}
	clear(k.dx.Buf)
	for i, y := range k.ys {
		if y != nil && y.Grad != nil {
			k.wins[i].scatter(y.Grad, k.dx.Buf)
		}
	}
}

// concat stacks its inputs along an axis: each input is a window of the output.
type concat struct {
	xs   []*Value
	y    *Value
	wins []strided
	dxs  []*GradDst
}

func (k *concat) Forward(bool) {
	for i, x := range k.xs {
		k.wins[i].scatter(x.Data, k.y.Data)
	}
}

func (k *concat) Backward() {
	for i, d := range k.dxs {
		if d != nil {
			k.wins[i].gather(k.y.Grad, d.Buf)
		}
	}
}

// pad runs Pad in constant mode: the input is a window of the output.
type pad struct {
	x, y  *Value
	win   strided
	value float32
	dx    *GradDst
}

func (k *pad) Forward(bool) {
	for i := range k.y.Data {
		k.y.Data[i] = k.value
	}
	k.win.scatter(k.x.Data, k.y.Data)
}

func (k *pad) Backward() {
	if k.dx != nil {
		k.win.gather(k.y.Grad, k.dx.Buf)
	}
}

func normAxis(axis int64, rank int) int {
	if axis < 0 {
		axis += int64(rank)
	}
	return int(axis)
}

func init() {
	for _, op := range []string{"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout"} {
		Register(op, buildCopy)
	}
	Register("Transpose", func(b *Build) (Kernel, error) {
		x, y := b.In[0], b.Out[0]
		perm, err := b.Node.Ints("perm", nil)
		if err != nil {
			return nil, err
		}
		xs := rowMajorStrides(x.Shape)
		w := strided{shape: y.Shape, strides: make([]int, len(y.Shape))}
		for i := range y.Shape {
			p := len(x.Shape) - 1 - i
			if perm != nil {
				p = int(perm[i])
			}
			w.strides[i] = xs[p]
		}
		return &windowOp{x: x, ys: []*Value{y}, wins: []strided{w}, dx: b.InGrad(0)}, nil
	})
	Register("Concat", func(b *Build) (Kernel, error) {
		y := b.Out[0]
		axis, err := b.Node.Int("axis", 0)
		if err != nil {
			return nil, err
		}
		a := normAxis(axis, len(y.Shape))
		ys := rowMajorStrides(y.Shape)
		k := &concat{y: y}
		off := 0
		for i, x := range b.In {
			k.xs = append(k.xs, x)
			k.wins = append(k.wins, strided{shape: x.Shape, strides: ys, base: off * ys[a]})
			k.dxs = append(k.dxs, b.InGrad(i))
			off += x.Shape[a]
		}
		return k, nil
	})
	Register("Split", func(b *Build) (Kernel, error) {
		x := b.In[0]
		axis, err := b.Node.Int("axis", 0)
		if err != nil {
			return nil, err
		}
		a := normAxis(axis, len(x.Shape))
		xs := rowMajorStrides(x.Shape)
		k := &windowOp{x: x, ys: b.Out, dx: b.InGrad(0)}
		off := 0
		for _, y := range b.Out {
			shape := y.Shape
			k.wins = append(k.wins, strided{shape: shape, strides: xs, base: off * xs[a]})
			off += shape[a]
		}
		return k, nil
	})
	Register("Slice", func(b *Build) (Kernel, error) {
		x, y := b.In[0], b.Out[0]
		starts, steps, err := b.Graph.SliceWindow(b.Node, x.Shape)
		if err != nil {
			return nil, err
		}
		xs := rowMajorStrides(x.Shape)
		w := strided{shape: y.Shape, strides: make([]int, len(y.Shape))}
		for i := range y.Shape {
			w.base += starts[i] * xs[i]
			w.strides[i] = steps[i] * xs[i]
		}
		return &windowOp{x: x, ys: []*Value{y}, wins: []strided{w}, dx: b.InGrad(0)}, nil
	})
	Register("Pad", func(b *Build) (Kernel, error) {
		x, y := b.In[0], b.Out[0]
		mode, err := b.Node.String("mode", "constant")
		if err != nil {
			return nil, err
		}
		pads, err := b.Graph.PadAmountsOf(b.Node)
		if err != nil {
			return nil, err
		}
		var value float32
		if v, err := b.Node.Float("value", 0); err == nil {
			value = v
		}
		if len(b.In) > 2 && b.In[2] != nil && b.In[2].Len() > 0 {
			value = b.In[2].Data[0]
		}
		if mode != "constant" || slices.ContainsFunc(pads, func(p int64) bool { return p < 0 }) {
			return buildPadIndexed(b, mode, pads, value)
		}
		k := &pad{x: x, y: y, dx: b.InGrad(0), value: value}
		ys := rowMajorStrides(y.Shape)
		k.win = strided{shape: x.Shape, strides: ys}
		for i := range x.Shape {
			k.win.base += int(pads[i]) * ys[i]
		}
		return k, nil
	})
}

// padIndexed runs Pad in the reflect, edge and wrap modes, and with negative pads (which
// crop): per axis, a map from output to input position (−1: the constant value).
type padIndexed struct {
	x, y  *Value
	dx    *GradDst
	src   [][]int // per axis, the input index of each output index
	value float32
}

func buildPadIndexed(b *Build, mode string, pads []int64, value float32) (Kernel, error) {
	x, y := b.In[0], b.Out[0]
	r := len(x.Shape)
	k := &padIndexed{x: x, y: y, dx: b.InGrad(0), value: value, src: make([][]int, r)}
	for a := range r {
		n, begin := x.Shape[a], int(pads[a])
		m := make([]int, y.Shape[a])
		for c := range m {
			j := c - begin
			switch {
			case j >= 0 && j < n:
			case mode == "constant":
				j = -1
			case mode == "edge":
				j = min(max(j, 0), n-1)
			case mode == "wrap":
				j = ((j % n) + n) % n
			case mode == "reflect":
				if n == 1 {
					j = 0
					break
				}
				period := 2 * (n - 1)
				j = ((j % period) + period) % period
				if j >= n {
					j = period - j
				}
			default:
				return nil, b.Errorf("pad mode %q is not supported", mode)
			}
			m[c] = j
		}
		k.src[a] = m
	}
	return k, nil
}

// each calls f(out, in) for every output element, in = −1 where the constant applies.
func (k *padIndexed) each(f func(o, i int)) {
	r := len(k.src)
	xs := rowMajorStrides(k.x.Shape)
	coord := make([]int, r)
	for o := range k.y.Data {
		in := 0
		for a, c := range coord {
			j := k.src[a][c]
			if j < 0 {
				in = -1
				break
			}
			in += j * xs[a]
		}
		f(o, in)
		for a := r - 1; a >= 0; a-- {
			coord[a]++
			if coord[a] < len(k.src[a]) {
				break
			}
			coord[a] = 0
		}
	}
}

func (k *padIndexed) Forward(bool) {
	x, y := k.x.Data, k.y.Data
	k.each(func(o, i int) {
		if i < 0 {
			y[o] = k.value
		} else {
			y[o] = x[i]
		}
	})
}

func (k *padIndexed) Backward() {
	if k.dx == nil {
		return
	}
	dx, dy := k.dx.Buf, k.y.Grad
	clear(dx)
	k.each(func(o, i int) {
		if i >= 0 {
			dx[i] += dy[o]
		}
	})
}
