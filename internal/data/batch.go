package data

import (
	"fmt"
	"github.com/qnas/qnas/internal/field"
	"math"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Normalize maps a sample value v to (v − Mean[c])/Std[c] for channel c, after raw
// pixels have been scaled to [0, 1] (v = pixel/255; float data is used as stored).
// Mean and Std hold one value for all channels or one per channel; an empty Mean means
// 0 and an empty Std means 1.
type Normalize struct {
	Mean, Std []float32
}

// ParseNormalize parses the comma-separated values of --mean and --std (as given on
// the command line or in a model's "qnas.mean"/"qnas.std" metadata). An empty string
// leaves that field unset.
func ParseNormalize(mean, std string) (Normalize, error) {
	var n Normalize
	var err error
	if n.Mean, err = parseFloats("--mean", mean); err != nil {
		return Normalize{}, err
	}
	if n.Std, err = parseFloats("--std", std); err != nil {
		return Normalize{}, err
	}
	return n, nil
}

func parseFloats(flag, s string) ([]float32, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []float32
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 32)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number", flag, strings.TrimSpace(f))
		}
		out = append(out, float32(v))
	}
	return out, nil
}

// Check returns an error, naming the field Data.Mean or Data.Std, when the lengths do not
// fit c channels or a standard deviation is not a positive finite number.
func (n Normalize) Check(c int) error {
	for _, f := range []struct {
		flag string
		v    []float32
	}{{"Data.Mean", n.Mean}, {"Data.Std", n.Std}} {
		if len(f.v) > 1 && len(f.v) != c {
			if c == 1 {
				return field.Errorf(f.flag, " has %d values but the data has 1 channel; give 1", len(f.v))
			}
			return field.Errorf(f.flag, " has %d values but the data has %d channels; give 1 or %d", len(f.v), c, c)
		}
		for _, v := range f.v {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return field.Errorf(f.flag, " value %v is not a finite number", v)
			}
		}
	}
	for _, s := range n.Std {
		if !(s > 0) {
			return field.Errorf("Data.Std", " value %v must be positive", s)
		}
	}
	return nil
}

// at returns the mean and standard deviation of channel c.
func (n Normalize) at(c int) (mean, std float32) {
	mean, std = 0, 1
	switch len(n.Mean) {
	case 0:
	case 1:
		mean = n.Mean[0]
	default:
		mean = n.Mean[c]
	}
	switch len(n.Std) {
	case 0:
	case 1:
		std = n.Std[0]
	default:
		std = n.Std[c]
	}
	return mean, std
}

// Augment describes random training-time augmentation.
//
// PadCrop > 0 pads each image by PadCrop on every side and crops the original size at a
// uniformly random offset, i.e. shifts the image by dy, dx ∈ [−PadCrop, PadCrop]. The
// padding is a pixel value of 0, which after normalization is (0 − mean)/std per
// channel, not 0. HFlip mirrors the image left-right with probability 1/2.
//
// Per sample, in order: dy, dx (when PadCrop > 0), then the flip (when HFlip). The
// draws use only the generator's Uint64 stream, so a seeded PCG gives the same result
// on every run and Go release.
//
// On an image folder whose photos are not all of the model's size (Dataset.Fit), an active
// augmentation is instead a random-resized crop — a region of MinScale to 100 % of the
// resized photo's area with aspect ratio 3/4 to 4/3, resized to the model's size — and the
// flip (per sample: the crop's draws, then the flip).
type Augment struct {
	PadCrop  int
	HFlip    bool
	MinScale float64 // 0: 0.08, torchvision's default
}

func (a *Augment) active() bool { return a != nil && (a.PadCrop > 0 || a.HFlip) }

func (a *Augment) minScale() float64 {
	if a.MinScale <= 0 || a.MinScale > 1 {
		return 0.08
	}
	return a.MinScale
}

// Batch writes the samples idx into x (len(idx)*C*H*W values, sample after sample,
// each CHW) and their labels into y (len(idx) values; y may be nil). Raw pixels are
// scaled by 1/255, then normalized by norm; aug, when non-nil, is applied with draws
// from rng. Batch does not allocate, except on image folders, whose photos it decodes
// (in parallel, through a bounded cache): an image that fails to decode there becomes
// zero pixels and its error is kept for Err, which callers check after their batches.
//
// Batch panics when norm does not fit the channel count (see Normalize.Check), when x
// or y is too short, or when aug is active and rng is nil.
func (d *Dataset) Batch(idx []int, norm Normalize, aug *Augment, rng *rand.Rand, x []float32, y []int32) {
	if err := norm.Check(d.C); err != nil {
		panic("data: Batch: " + err.Error())
	}
	size := d.SampleSize()
	if len(x) < len(idx)*size {
		panic(fmt.Sprintf("data: Batch: x has %d values; %d samples of %d×%d×%d need %d", len(x), len(idx), d.C, d.H, d.W, len(idx)*size))
	}
	if y != nil && len(y) < len(idx) {
		panic(fmt.Sprintf("data: Batch: y has %d values for %d samples", len(y), len(idx)))
	}
	if aug.active() && rng == nil {
		panic("data: Batch: augmentation needs a random generator")
	}
	if d.photos != nil {
		d.photos.batch(d, idx, norm, aug, rng, x, y)
		return
	}
	var sample func(i int) []uint8
	if d.Pixels != nil {
		sample = func(i int) []uint8 { s := idx[i]; return d.Pixels[s*size : (s+1)*size] }
	}
	d.batchFrom(idx, norm, aug, rng, x, y, sample)
}

// batchFrom is Batch over samples whose bytes sample(i) returns (nil: a sample that
// could not be read, written as zero pixels), or over d.Floats when sample is nil.
func (d *Dataset) batchFrom(idx []int, norm Normalize, aug *Augment, rng *rand.Rand, x []float32, y []int32, sample func(i int) []uint8) {
	size := d.SampleSize()
	augment := aug.active()

	// Per-channel lookup tables from pixel byte to normalized value, computed exactly as
	// (p/255 − mean)/std. Up to 4 channels are tabulated once per call; beyond that the
	// table of a channel is rebuilt per sample.
	var lut [4][256]float32
	tabulated := sample != nil && d.C <= len(lut)
	if tabulated {
		for c := range d.C {
			buildLUT(&lut[c], norm, c)
		}
	}
	plane := d.H * d.W
	for i, s := range idx {
		dy, dx, flip := 0, 0, false
		if augment {
			if p := aug.PadCrop; p > 0 {
				dy = intN(rng, 2*p+1) - p
				dx = intN(rng, 2*p+1) - p
			}
			if aug.HFlip {
				flip = rng.Uint64()&1 == 1
			}
		}
		out := x[i*size : (i+1)*size]
		var src []uint8
		if sample != nil {
			src = sample(i)
		}
		for c := range d.C {
			dst := out[c*plane : (c+1)*plane]
			off := s*size + c*plane
			if sample != nil {
				t := &lut[0]
				if tabulated {
					t = &lut[c]
				} else {
					buildLUT(t, norm, c)
				}
				// Bytes go through the table; t[0] is the padding value.
				if src == nil {
					fill(dst, t[0])
					continue
				}
				shiftPlane(dst, src[c*plane:(c+1)*plane], d.H, d.W, dy, dx, flip, t[0], func(p uint8) float32 { return t[p] })
			} else {
				m, sd := norm.at(c)
				// Floats map v ↦ (v − m)/s, padding (0 − m)/s.
				shiftPlane(dst, d.Floats[off:off+plane], d.H, d.W, dy, dx, flip, (0-m)/sd, func(v float32) float32 { return (v - m) / sd })
			}
		}
		if y != nil {
			y[i] = d.Labels[s]
		}
	}
}

func buildLUT(t *[256]float32, norm Normalize, c int) {
	m, s := norm.at(c)
	for p := range t {
		t[p] = (float32(p)/255 - m) / s
	}
}

// span returns the output columns [lo, hi) of a row that read a source pixel when the
// image is shifted by dx (and mirrored when flip); the others are padding.
func span(w, dx int, flip bool) (lo, hi int) {
	if flip {
		return max(0, dx), min(w, w+dx)
	}
	return max(0, -dx), min(w, w-dx)
}

// shiftPlane writes one h×w channel of src to dst, shifted by (dy, dx) and optionally
// mirrored, mapping each value through conv; pad fills what no source pixel reaches.
func shiftPlane[T uint8 | float32](dst []float32, src []T, h, w, dy, dx int, flip bool, pad float32, conv func(T) float32) {
	if dy == 0 && dx == 0 && !flip {
		dst = dst[:len(src)]
		for i, v := range src {
			dst[i] = conv(v)
		}
		return
	}
	lo, hi := span(w, dx, flip)
	for r := range h {
		row := dst[r*w : (r+1)*w]
		sr := r + dy
		if sr < 0 || sr >= h || lo >= hi {
			fill(row, pad)
			continue
		}
		srow := src[sr*w : (sr+1)*w]
		fill(row[:lo], pad)
		fill(row[hi:], pad)
		out := row[lo:hi]
		if flip { // out[j] reads srow[w-1-(lo+j)+dx]
			in := srow[w-hi+dx : w-lo+dx]
			in = in[:len(out)]
			for j := range out {
				out[j] = conv(in[len(in)-1-j])
			}
		} else {
			in := srow[lo+dx : hi+dx]
			in = in[:len(out)]
			for j, v := range in {
				out[j] = conv(v)
			}
		}
	}
}

func fill(s []float32, v float32) {
	for i := range s {
		s[i] = v
	}
}

// intN returns a uniform integer in [0, n) from one or more r.Uint64 draws (Lemire's
// multiply-and-reject), so results depend only on the generator's stream.
func intN(r *rand.Rand, n int) int {
	bound := uint64(n)
	hi, lo := bits.Mul64(r.Uint64(), bound)
	if lo < bound {
		thresh := -bound % bound
		for lo < thresh {
			hi, lo = bits.Mul64(r.Uint64(), bound)
		}
	}
	return int(hi)
}
