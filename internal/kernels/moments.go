package kernels

// Moments are the per-channel batch statistics of an N×C×H×W tensor as
// BatchNorm needs them: the mean and the sum of squared deviations from it
// (M2), over N·H·W values per channel. Conv2DMoments gathers them while
// its output is still in cache, sparing BatchNormTrainMoments a pass over
// the data. Each plane's statistics are taken with a shift (its first
// value) and kept; the planes of a channel are then merged in sample order
// with Chan et al.'s pairwise formula in float64, so large means do not
// cancel the variance and the result does not depend on which worker saw
// which plane.
type Moments struct {
	Mean, M2 []float64
	// Valid is set by Conv2DMoments and cleared by BatchNormTrainMoments:
	// statistics are used once, for the output they were taken of.
	Valid bool
	n, c  int
	plane []float64 // per (sample, channel): count, mean, M2
}

// NewMoments returns Moments for n samples of c channels.
func NewMoments(n, c int) *Moments {
	return &Moments{Mean: make([]float64, c), M2: make([]float64, c), n: n, c: c, plane: make([]float64, 3*n*c)}
}

// addPlane records the statistics of plane (sample n, channel c).
func (m *Moments) addPlane(n, c int, plane []float32) {
	r := m.plane[3*(n*m.c+c):][:3]
	if len(plane) == 0 {
		r[0], r[1], r[2] = 0, 0, 0
		return
	}
	k := plane[0]
	s, ss := sumSq(plane, k)
	nb := float64(len(plane))
	r[0], r[1], r[2] = nb, float64(k)+s/nb, max(ss-s*s/nb, 0)
}

// finish merges the planes of each channel in sample order into Mean and
// M2 and marks them valid.
func (m *Moments) finish() {
	for c := range m.c {
		var n, mean, m2 float64
		for i := range m.n {
			r := m.plane[3*(i*m.c+c):][:3]
			nb, mb, m2b := r[0], r[1], r[2]
			t := n + nb
			if t == 0 {
				continue
			}
			d := mb - mean
			mean += d * nb / t
			m2 += m2b + d*d*n*nb/t
			n = t
		}
		m.Mean[c], m.M2[c] = mean, m2
	}
	m.Valid = true
}

// momentsOf sets m to the moments of y (n samples of c channels of hw
// values) by a separate pass, for the convolution paths that do not gather
// them on the way.
func momentsOf(m *Moments, y []float32, n, c, hw int) {
	parFor(n*c, hw, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			m.addPlane(t/c, t%c, y[t*hw:(t+1)*hw])
		}
	})
	m.finish()
}

// Conv2DMoments is Conv2D that also sets m to the moments of y (m must
// have been made by NewMoments for N samples of OC channels).
func Conv2DMoments(s ConvShape, x, w, b, y, scratch []float32, m *Moments) {
	pl := s.plan()
	if m.c != pl.OC || m.n != pl.N {
		panic("kernels: Moments of the wrong shape")
	}
	if pl.path() == viaBLAS {
		conv2D(pl, x, w, b, y, scratch, nil)
		momentsOf(m, y, pl.N, pl.OC, pl.oh*pl.ow)
		return
	}
	conv2D(pl, x, w, b, y, scratch, m)
}
