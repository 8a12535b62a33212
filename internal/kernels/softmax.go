package kernels

import "math"

// Softmax computes y = softmax(x) along the last axis of a rows×cols
// matrix.
func Softmax(rows, cols int, x, y []float32) {
	need("x", x, rows*cols)
	need("y", y, rows*cols)
	parFor(rows, 20*cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			softmaxRow(x[r*cols:(r+1)*cols], y[r*cols:(r+1)*cols])
		}
	})
}

// softmaxRow writes softmax(x) to y and returns log Σ exp(x − max x) and
// max x, whose sum is log Σ exp x.
func softmaxRow(x, y []float32) (lse, mx float64) {
	m := x[0]
	for _, v := range x {
		m = max(m, v)
	}
	var s float64
	y = y[:len(x)]
	for i, v := range x {
		e := math.Exp(float64(v - m))
		y[i] = float32(e)
		s += e
	}
	inv := float32(1 / s)
	for i := range y {
		y[i] *= inv
	}
	return math.Log(s), float64(m)
}

// SoftmaxBackward computes dx = y ⊙ (dy − Σ dy·y) per row from the forward
// output y.
func SoftmaxBackward(rows, cols int, y, dy, dx []float32) {
	need("y", y, rows*cols)
	need("dy", dy, rows*cols)
	need("dx", dx, rows*cols)
	parFor(rows, 3*cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			ys, ds, xs := y[r*cols:(r+1)*cols], dy[r*cols:(r+1)*cols], dx[r*cols:(r+1)*cols]
			var d float32
			for i, v := range ys {
				d += v * ds[i]
			}
			for i, v := range ys {
				xs[i] = v * (ds[i] - d)
			}
		}
	})
}

// SoftmaxCrossEntropy returns the mean over the rows of −log softmax(x)[label]
// for the rows×cols logits x and one class label per row. When dx is not
// nil it receives the gradient of that mean, (softmax(x) − onehot)/rows.
// It panics on a label outside [0, cols). It allocates rows float64s (the
// per-row losses, summed in order so that the result does not depend on
// the number of threads) and, when dx is nil, a row of probabilities per
// goroutine.
func SoftmaxCrossEntropy(rows, cols int, x []float32, labels []int, dx []float32) float64 {
	need("x", x, rows*cols)
	needOpt("dx", dx, rows*cols)
	if len(labels) != rows {
		panic("kernels: len(labels) != rows")
	}
	for _, l := range labels {
		if l < 0 || l >= cols {
			panic("kernels: label out of range")
		}
	}
	losses := make([]float64, rows)
	parFor(rows, 20*cols, func(lo, hi int) {
		var tmp []float32
		for r := lo; r < hi; r++ {
			xs := x[r*cols : (r+1)*cols]
			var p []float32
			if dx != nil {
				p = dx[r*cols : (r+1)*cols]
			} else {
				if tmp == nil {
					tmp = make([]float32, cols)
				}
				p = tmp
			}
			lse, mx := softmaxRow(xs, p)
			l := labels[r]
			losses[r] = lse + mx - float64(xs[l])
			if dx != nil {
				inv := 1 / float32(rows)
				for i := range p {
					p[i] *= inv
				}
				p[l] -= inv
			}
		}
	})
	var s float64
	for _, l := range losses {
		s += l
	}
	return s / float64(rows)
}
