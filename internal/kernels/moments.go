package kernels

import "runtime"

// Moments are the per-channel batch statistics of an N×C×H×W tensor as
// BatchNorm needs them: the mean and the sum of squared deviations from it
// (M2), over N·H·W values per channel. Conv2DMoments gathers them while
// its output is still in cache, sparing BatchNormTrainMoments a pass over
// the data. Each plane's statistics are taken with a shift (its first
// value) and planes are merged with Chan et al.'s pairwise formula in
// float64, so large means do not cancel the variance.
type Moments struct {
	Mean, M2 []float64
	// Valid is set by Conv2DMoments and cleared by BatchNormTrainMoments:
	// statistics are used once, for the output they were taken of.
	Valid bool
	part  []momAcc // one per batch worker
}

// momAcc accumulates the moments of one batch worker's planes.
type momAcc struct{ n, mean, m2 []float64 }

// NewMoments returns Moments for c channels with room for the batch
// workers of the current GOMAXPROCS.
func NewMoments(c int) *Moments {
	m := &Moments{Mean: make([]float64, c), M2: make([]float64, c)}
	m.part = make([]momAcc, max(1, runtime.GOMAXPROCS(0)))
	for i := range m.part {
		m.part[i] = momAcc{n: make([]float64, c), mean: make([]float64, c), m2: make([]float64, c)}
	}
	return m
}

func (a *momAcc) reset() {
	clear(a.n)
	clear(a.mean)
	clear(a.m2)
}

// add merges the values of one plane into channel c.
func (a *momAcc) add(c int, plane []float32) {
	if len(plane) == 0 {
		return
	}
	k := plane[0]
	s, ss := sumSq(plane, k)
	nb := float64(len(plane))
	mb := float64(k) + s/nb
	a.merge(c, nb, mb, max(ss-s*s/nb, 0))
}

// merge adds nb values of mean mb and sum of squared deviations m2b to
// channel c.
func (a *momAcc) merge(c int, nb, mb, m2b float64) {
	na := a.n[c]
	n := na + nb
	if n == 0 {
		return
	}
	d := mb - a.mean[c]
	a.mean[c] += d * nb / n
	a.m2[c] += m2b + d*d*na*nb/n
	a.n[c] = n
}

// finish merges the first w partials into Mean and M2 and marks them valid.
func (m *Moments) finish(w int) {
	for c := range m.Mean {
		t := momAcc{n: []float64{0}, mean: []float64{0}, m2: []float64{0}}
		for i := range w {
			p := &m.part[i]
			t.merge(0, p.n[c], p.mean[c], p.m2[c])
		}
		m.Mean[c], m.M2[c] = t.mean[0], t.m2[0]
	}
	m.Valid = true
}

// momentsOf sets m to the moments of y (n samples of c channels of hw
// values) by a separate pass, for the convolution paths that do not gather
// them on the way.
func momentsOf(m *Moments, y []float32, n, c, hw int) {
	a := &m.part[0]
	a.reset()
	parFor(c, n*hw, func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			for i := range n {
				a.add(ch, y[(i*c+ch)*hw:(i*c+ch+1)*hw])
			}
		}
	})
	m.finish(1)
}

// Conv2DMoments is Conv2D that also sets m to the moments of y (m must
// have been made by NewMoments for OC channels).
func Conv2DMoments(s ConvShape, x, w, b, y, scratch []float32, m *Moments) {
	pl := s.plan()
	if len(m.Mean) != pl.OC {
		panic("kernels: Moments for the wrong number of channels")
	}
	if pl.path() == viaBLAS {
		Conv2D(s, x, w, b, y, scratch)
		momentsOf(m, y, pl.N, pl.OC, pl.oh*pl.ow)
		return
	}
	conv2D(s, x, w, b, y, scratch, m)
}
