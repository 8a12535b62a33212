package data

import (
	"fmt"
	"github.com/qnas/qnas/internal/field"
	"math"
	"math/rand/v2"
	"slices"
)

// LoaderOptions configures a Loader.
type LoaderOptions struct {
	BatchSize int       // samples per batch (> 0)
	Shuffle   bool      // visit samples in a seeded random order, new each epoch
	DropLast  bool      // skip the final batch of an epoch when it is short
	Seed      uint64    // seeds the order and the augmentation
	Norm      Normalize // applied to every batch
	Aug       *Augment  // nil: no augmentation
}

// Loader iterates a Dataset in batches, epoch after epoch.
//
// The order of epoch e depends only on (Seed, e), and the augmentation of batch b of
// epoch e only on (Seed, e, b), so a run resumed with Seek repeats the original exactly.
type Loader struct {
	d     *Dataset
	opt   LoaderOptions
	order []int
	epoch int
	batch int // next batch of the epoch
	ready bool
	last  []int

	orderSrc, augSrc rand.PCG
	orderRng, augRng *rand.Rand
}

// NewLoader returns a loader positioned at the start of epoch 0.
func NewLoader(d *Dataset, opt LoaderOptions) (*Loader, error) {
	if opt.BatchSize <= 0 {
		return nil, field.Errorf("LoaderOptions.BatchSize", " %d: must be positive", opt.BatchSize)
	}
	if err := opt.Norm.Check(d.C); err != nil {
		return nil, err
	}
	if opt.Aug != nil && opt.Aug.PadCrop < 0 {
		return nil, fmt.Errorf("augmentation padding must not be negative, got %d", opt.Aug.PadCrop)
	}
	if d.N == 0 || opt.DropLast && d.N < opt.BatchSize {
		return nil, fmt.Errorf("%s: %d samples make no full batch of %d", d.Source, d.N, opt.BatchSize)
	}
	if d.photos != nil { // room for the batch being used and the next one being decoded
		per := float64(d.SampleSize()) / (d.photos.store.crop * d.photos.store.crop) * 1.5
		d.photos.store.cache.reserve(int64(3 * float64(opt.BatchSize) * per))
	}
	l := &Loader{d: d, opt: opt, order: make([]int, d.N)}
	l.orderRng = rand.New(&l.orderSrc)
	l.augRng = rand.New(&l.augSrc)
	return l, nil
}

// Len returns the number of batches per epoch.
func (l *Loader) Len() int {
	if l.opt.DropLast {
		return l.d.N / l.opt.BatchSize
	}
	return (l.d.N + l.opt.BatchSize - 1) / l.opt.BatchSize
}

// Epoch returns the epoch the next batch belongs to, counting from 0.
func (l *Loader) Epoch() int { return l.epoch }

// Seek positions the loader at batch b of epoch e.
func (l *Loader) Seek(e, b int) {
	l.epoch, l.batch, l.ready = e, b, false
}

// Next writes the next batch of the current epoch into x and y (see Dataset.Batch for
// their layout) and returns its size. At the end of an epoch it returns 0 and moves to
// the next epoch, which the following call starts.
func (l *Loader) Next(x []float32, y []int32) int {
	if !l.ready {
		l.prepare()
	}
	if l.batch >= l.Len() {
		l.epoch, l.batch, l.ready = l.epoch+1, 0, false
		l.last = nil
		return 0
	}
	bs := l.opt.BatchSize
	idx := l.order[l.batch*bs : min((l.batch+1)*bs, l.d.N)]
	var rng *rand.Rand
	if l.opt.Aug.active() {
		l.augSrc.Seed(mix(l.opt.Seed^0x6a09e667f3bcc909), mix(uint64(l.epoch)<<32|uint64(uint32(l.batch))))
		rng = l.augRng
	}
	l.d.Batch(idx, l.opt.Norm, l.opt.Aug, rng, x, y)
	l.batch++
	l.last = idx
	if l.d.photos != nil && l.batch < l.Len() { // decode the next batch while this one trains
		l.d.photos.prefetch(l.d, l.order[l.batch*bs:min((l.batch+1)*bs, l.d.N)])
	}
	return len(idx)
}

// Err returns the first error met decoding the data set's images (see Dataset.Err);
// training loops check it after each batch.
func (l *Loader) Err() error { return l.d.Err() }

// Indices returns the sample indices of the batch Next wrote last (nil after an
// epoch's end). The slice is valid until the next call to Next or Seek.
func (l *Loader) Indices() []int { return l.last }

// prepare computes the order of the current epoch.
func (l *Loader) prepare() {
	for i := range l.order {
		l.order[i] = i
	}
	if l.opt.Shuffle {
		l.orderSrc.Seed(mix(l.opt.Seed), mix(uint64(l.epoch)^0xbb67ae8584caa73b))
		shuffle(l.orderRng, l.order)
	}
	l.ready = true
}

// shuffle permutes v uniformly (Fisher–Yates) with draws from r.
func shuffle(r *rand.Rand, v []int) {
	for i := len(v) - 1; i > 0; i-- {
		j := intN(r, i+1)
		v[i], v[j] = v[j], v[i]
	}
}

// mix is the SplitMix64 finalizer; it spreads nearby seeds apart.
func mix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Holdout splits d at random into a training part and a held-out part of
// round(fraction·N) samples (e.g. 0.1 for the search's 90/10 split). The split depends
// only on seed; both parts keep d's order.
func Holdout(d *Dataset, fraction float64, seed uint64) (train, held *Dataset, err error) {
	if !(fraction > 0 && fraction < 1) {
		return nil, nil, fmt.Errorf("hold-out fraction %v must be between 0 and 1", fraction)
	}
	nh := int(math.Round(fraction * float64(d.N)))
	if nh == 0 || nh == d.N {
		return nil, nil, fmt.Errorf("%s: holding out %v of %d samples leaves an empty part", d.Source, fraction, d.N)
	}
	perm := make([]int, d.N)
	for i := range perm {
		perm[i] = i
	}
	var src rand.PCG
	src.Seed(mix(seed), mix(0x3c6ef372fe94f82b))
	shuffle(rand.New(&src), perm)
	h, t := perm[:nh], perm[nh:]
	slices.Sort(h)
	slices.Sort(t)
	return d.take(t), d.take(h), nil
}

// Subset returns n samples of d spread evenly over it (sample ⌊i·N/n⌋ for i < n), or d
// itself when n ≤ 0 or n ≥ N. Spreading, rather than taking the first n, keeps all
// classes of layouts stored class by class (image folders).
func Subset(d *Dataset, n int) *Dataset {
	if n <= 0 || n >= d.N {
		return d
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = int(int64(i) * int64(d.N) / int64(n))
	}
	return d.take(idx)
}

// take returns a new Dataset of the samples idx of d (copied; an image folder's new
// view shares the files and the cache).
func (d *Dataset) take(idx []int) *Dataset {
	out := *d
	out.N = len(idx)
	if d.photos != nil {
		out.photos = d.photos.subset(idx)
		out.Labels = make([]int32, len(idx))
		for i, s := range idx {
			out.Labels[i] = d.Labels[s]
		}
		return &out
	}
	size := d.SampleSize()
	out.Labels = make([]int32, len(idx))
	out.Pixels, out.Floats = nil, nil
	if d.Pixels != nil {
		out.Pixels = make([]uint8, len(idx)*size)
	} else {
		out.Floats = make([]float32, len(idx)*size)
	}
	for i, s := range idx {
		out.Labels[i] = d.Labels[s]
		if d.Pixels != nil {
			copy(out.Pixels[i*size:(i+1)*size], d.Pixels[s*size:(s+1)*size])
		} else {
			copy(out.Floats[i*size:(i+1)*size], d.Floats[s*size:(s+1)*size])
		}
	}
	return &out
}
