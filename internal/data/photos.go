package data

import (
	"bufio"
	"container/list"
	"fmt"
	"image"
	"image/color"
	"io/fs"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// Photo folders are decoded on demand: opening one reads only the image headers (sizes,
// color models); Batch decodes the images a batch needs, resized and cropped to the size
// the data set was fitted to (Dataset.Fit), keeps them in a cache bounded in bytes, and
// the Loader decodes the next batch in the background while the current one trains.

// DefaultCacheBytes bounds the decoded images a photo folder keeps (Options.CacheBytes).
const DefaultCacheBytes int64 = 128 << 20

// DefaultMaxImagePixels bounds the pixels of one image (Options.MaxImagePixels): larger
// headers are refused before anything is decoded.
const DefaultMaxImagePixels int64 = 1 << 26

// maxUpscale is how much an image may be enlarged to fill the model's input: a shorter
// side below 1/maxUpscale of the crop it must fill is refused at Fit.
const maxUpscale = 8

// readers are the buffered readers images are decoded through, reused.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// photoFile is one image of a folder: its path, class and header facts.
type photoFile struct {
	path  string
	label int32
	w, h  int32
	gray  bool
}

// photoStore is what the data sets taken from one opened split share: the files, the
// decoded-image cache and the decoding limits.
type photoStore struct {
	fsys    fs.FS
	src     source
	files   []photoFile
	crop    float64 // Options.CropFraction
	workers int
	sem     chan struct{} // one token per concurrent decode
	cache   *imageCache
}

// photoSet is one Dataset's view of a store: which files, and the first decoding error
// its batches met.
type photoSet struct {
	store *photoStore
	idx   []int32 // into store.files, in sample order
	exact bool    // every image already has the fitted size

	mu  sync.Mutex
	err error
}

func (p *photoSet) file(s int) *photoFile { return &p.store.files[p.idx[s]] }

func (p *photoSet) setErr(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

// subset returns the view of the samples idx of p.
func (p *photoSet) subset(idx []int) *photoSet {
	q := &photoSet{store: p.store, idx: make([]int32, len(idx)), exact: p.exact}
	for i, s := range idx {
		q.idx[i] = p.idx[s]
	}
	return q
}

// scanHeaders reads every file's header in parallel: its size and whether it is gray. It
// refuses, naming the file, headers it cannot read, empty images and images of more than
// maxPixels pixels.
func (st *photoStore) scanHeaders(maxPixels int64) error {
	errs := make([]error, len(st.files))
	st.parallel(len(st.files), func(i int) {
		f := &st.files[i]
		errs[i] = st.guard(f.path, func() error {
			fh, err := st.fsys.Open(f.path)
			if err != nil {
				return st.src.errf(f.path, "%v", fsErr(err))
			}
			defer fh.Close()
			br := readers.Get().(*bufio.Reader)
			defer readers.Put(br)
			br.Reset(fh)
			cfg, _, err := image.DecodeConfig(br)
			if err != nil {
				return st.src.errf(f.path, "cannot read the image header: %v", err)
			}
			w, h := int64(cfg.Width), int64(cfg.Height)
			switch {
			case w <= 0 || h <= 0:
				return st.src.errf(f.path, "image is %d×%d", w, h)
			case w > math.MaxInt32 || h > math.MaxInt32 || w*h > maxPixels:
				return st.src.errf(f.path, "image is %d×%d (%d pixels), more than the %d-pixel limit; refused before decoding", w, h, w*h, maxPixels)
			}
			f.w, f.h = int32(w), int32(h)
			f.gray = cfg.ColorModel == color.GrayModel || cfg.ColorModel == color.Gray16Model
			return nil
		})
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// parallel runs f(0..n-1) on the store's workers.
func (st *photoStore) parallel(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(st.workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// guard runs f, turning a panic into an error naming file p.
func (st *photoStore) guard(p string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = st.src.errf(p, "cannot decode image: internal error: %v", r)
		}
	}()
	return f()
}

// fitted is the size images are brought to before cropping: scaled, keeping their aspect
// ratio, so that the h×w crop covers the crop fraction of the side that binds; as
// torchvision's Resize does, that side gets its size rounded and the other one truncated.
func (st *photoStore) fitted(f *photoFile, h, w int) (fw, fh int) {
	rh, rw := float64(h)/st.crop, float64(w)/st.crop
	if sh, sw := rh/float64(f.h), rw/float64(f.w); sw >= sh {
		fw = int(math.Round(rw))
		fh = int(float64(f.h) * float64(fw) / float64(f.w))
	} else {
		fh = int(math.Round(rh))
		fw = int(float64(f.w) * float64(fh) / float64(f.h))
	}
	return max(fw, w), max(fh, h)
}

// centerCrop returns the h×w crop in the middle of a fw×fh image (offsets rounded half to
// even, as torchvision's CenterCrop).
func centerCrop(fw, fh, w, h int) rect {
	return rect{int(math.RoundToEven(float64(fw-w) / 2)), int(math.RoundToEven(float64(fh-h) / 2)), w, h}
}

// cacheKey names one decoded image at one fitted size and channel count.
type cacheKey struct {
	file      int32
	c, fw, fh int32
}

// image returns file i decoded, converted to c channels and resized to fw×fh (from the
// cache when it is there).
func (st *photoStore) image(i int32, c, fw, fh int) (*cachedImage, error) {
	key := cacheKey{i, int32(c), int32(fw), int32(fh)}
	return st.cache.get(key, func() (*cachedImage, error) {
		f := &st.files[i]
		var img *cachedImage
		err := st.guard(f.path, func() error {
			st.sem <- struct{}{}
			defer func() { <-st.sem }()
			var err error
			img, err = st.decode(f, c, fw, fh)
			return err
		})
		return img, err
	})
}

func (st *photoStore) decode(f *photoFile, c, fw, fh int) (*cachedImage, error) {
	fh0, err := st.fsys.Open(f.path)
	if err != nil {
		return nil, st.src.errf(f.path, "%v", fsErr(err))
	}
	defer fh0.Close()
	br := readers.Get().(*bufio.Reader)
	defer readers.Put(br)
	br.Reset(fh0)
	img, _, err := image.Decode(br)
	if err != nil {
		return nil, st.src.errf(f.path, "cannot decode image: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != int(f.w) || b.Dy() != int(f.h) {
		return nil, st.src.errf(f.path, "image decodes to %d×%d but its header says %d×%d", b.Dx(), b.Dy(), f.w, f.h)
	}
	if m, ok := img.(*image.YCbCr); ok && (fw != int(f.w) || fh != int(f.h)) {
		return &cachedImage{pix: resizeYCbCr(m, c, fw, fh), w: fw, h: fh}, nil
	}
	pix := planes(img, c)
	img = nil
	if fw == int(f.w) && fh == int(f.h) {
		return &cachedImage{pix: pix, w: fw, h: fh}, nil
	}
	out := make([]float32, c*fw*fh)
	resample(pix, c, int(f.w), int(f.h), rect{0, 0, int(f.w), int(f.h)}, out, fw, fh, nil)
	small := make([]uint8, len(out))
	toBytes(out, small)
	return &cachedImage{pix: small, w: fw, h: fh}, nil
}

// cachedImage is c planes of w×h bytes.
type cachedImage struct {
	pix  []uint8
	w, h int
}

// imageCache keeps decoded images up to a byte budget, least recently used out first;
// concurrent requests for one image decode it once.
type imageCache struct {
	mu       sync.Mutex
	limit    int64
	used     int64
	entries  map[cacheKey]*list.Element
	lru      list.List // of *cacheEntry, most recent first
	inflight map[cacheKey]*decodeCall
}

type cacheEntry struct {
	key cacheKey
	img *cachedImage
}

type decodeCall struct {
	done chan struct{}
	img  *cachedImage
	err  error
}

func newImageCache(limit int64) *imageCache {
	return &imageCache{limit: limit, entries: map[cacheKey]*list.Element{}, inflight: map[cacheKey]*decodeCall{}}
}

// reserve raises the budget to at least n bytes.
func (c *imageCache) reserve(n int64) {
	c.mu.Lock()
	c.limit = max(c.limit, n)
	c.mu.Unlock()
}

func (c *imageCache) get(key cacheKey, load func() (*cachedImage, error)) (*cachedImage, error) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		c.lru.MoveToFront(e)
		c.mu.Unlock()
		return e.Value.(*cacheEntry).img, nil
	}
	if call, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		<-call.done
		return call.img, call.err
	}
	call := &decodeCall{done: make(chan struct{})}
	c.inflight[key] = call
	c.mu.Unlock()

	call.img, call.err = load()

	c.mu.Lock()
	delete(c.inflight, key)
	if call.err == nil {
		size := int64(len(call.img.pix))
		c.entries[key] = c.lru.PushFront(&cacheEntry{key, call.img})
		c.used += size
		for c.used > c.limit && c.lru.Len() > 1 {
			old := c.lru.Back()
			e := old.Value.(*cacheEntry)
			c.lru.Remove(old)
			delete(c.entries, e.key)
			c.used -= int64(len(e.img.pix))
		}
	}
	c.mu.Unlock()
	close(call.done)
	return call.img, call.err
}

// fetch returns the image of sample s of d at d's fitted size.
func (p *photoSet) fetch(d *Dataset, s int) (*cachedImage, error) {
	f := p.file(s)
	fw, fh := p.store.fitted(f, d.H, d.W)
	return p.store.image(p.idx[s], d.C, fw, fh)
}

// prefetch decodes the samples idx of d into the cache in the background.
func (p *photoSet) prefetch(d *Dataset, idx []int) {
	idx = slices.Clone(idx)
	go p.store.parallel(len(idx), func(i int) {
		err := p.store.guard(p.file(idx[i]).path, func() error {
			_, err := p.fetch(d, idx[i])
			return err
		})
		if err != nil {
			p.setErr(err) // reported by the batch that needs the image, or here first
		}
	})
}

// photoCrop is the augmentation draws of one sample of a photo folder.
type photoCrop struct {
	r    rect // the region of the fitted image that becomes the sample
	flip bool
}

// drawCrops chooses, in sample order and from rng alone, each sample's region of its
// fitted image: the center crop without augmentation; with it, a random region of 8 to
// 100 % of the area and aspect ratio 3/4 to 4/3 (ten tries, then the center crop), and a
// mirror with probability 1/2 when aug.HFlip.
func (p *photoSet) drawCrops(d *Dataset, idx []int, aug *Augment, rng *rand.Rand) []photoCrop {
	out := make([]photoCrop, len(idx))
	for i, s := range idx {
		fw, fh := p.store.fitted(p.file(s), d.H, d.W)
		c := centerCrop(fw, fh, d.W, d.H)
		if aug.active() {
			area := float64(fw * fh)
			for range 10 {
				a := area * (aug.minScale() + (1-aug.minScale())*unit(rng))
				logr := math.Log(3.0/4) + (math.Log(4.0/3)-math.Log(3.0/4))*unit(rng)
				ratio := math.Exp(logr)
				w := int(math.Round(math.Sqrt(a * ratio)))
				h := int(math.Round(math.Sqrt(a / ratio)))
				if w >= 1 && h >= 1 && w <= fw && h <= fh {
					c = rect{intN(rng, fw-w+1), intN(rng, fh-h+1), w, h}
					break
				}
			}
			if aug.HFlip {
				out[i].flip = rng.Uint64()&1 == 1
			}
		}
		out[i].r = c
	}
	return out
}

// unit returns a uniform float in [0, 1) from one Uint64 draw.
func unit(r *rand.Rand) float64 { return float64(r.Uint64()>>11) / (1 << 53) }

// batch is Dataset.Batch for photo folders: it decodes (or finds in the cache) the images
// of idx in parallel and writes each sample's crop, resized to H×W, mirrored and
// normalized. A sample whose image fails to decode is filled with the normalized zero
// pixel and the error is kept for Dataset.Err.
func (p *photoSet) batch(d *Dataset, idx []int, norm Normalize, aug *Augment, rng *rand.Rand, x []float32, y []int32) {
	size := d.SampleSize()
	if p.exact {
		p.batchExact(d, idx, norm, aug, rng, x, y)
		return
	}
	crops := p.drawCrops(d, idx, aug, rng)
	var lut [3][256]float32
	for c := range d.C {
		buildLUT(&lut[c], norm, c)
	}
	p.store.parallel(len(idx), func(i int) {
		s := idx[i]
		out := x[i*size : (i+1)*size]
		err := p.store.guard(p.file(s).path, func() error {
			img, err := p.fetch(d, s)
			if err != nil {
				return err
			}
			cr := crops[i]
			plane := d.H * d.W
			if cr.r.w == d.W && cr.r.h == d.H { // a crop: bytes through the table
				for c := range d.C {
					src := img.pix[c*img.w*img.h:]
					dst := out[c*plane : (c+1)*plane]
					for r := range d.H {
						row := src[(cr.r.y+r)*img.w+cr.r.x:][:d.W]
						for j, v := range row {
							dst[r*d.W+j] = lut[c][v]
						}
					}
				}
			} else {
				resample(img.pix, d.C, img.w, img.h, cr.r, out, d.W, d.H, nil)
				for c := range d.C {
					m, sd := norm.at(c)
					for j, v := range out[c*plane : (c+1)*plane] {
						out[c*plane+j] = (v/255 - m) / sd
					}
				}
			}
			if cr.flip {
				for c := range d.C {
					for r := range d.H {
						slices.Reverse(out[c*plane+r*d.W : c*plane+(r+1)*d.W])
					}
				}
			}
			return nil
		})
		if err != nil {
			for c := range d.C {
				fill(out[c*d.H*d.W:(c+1)*d.H*d.W], lut[c][0])
			}
			p.setErr(err)
		}
	})
	if y != nil {
		for i, s := range idx {
			y[i] = d.Labels[s]
		}
	}
}

// batchExact serves folders whose images all have the fitted size: they are used as
// stored, with the pad-and-crop and flip augmentation of the in-memory layouts.
func (p *photoSet) batchExact(d *Dataset, idx []int, norm Normalize, aug *Augment, rng *rand.Rand, x []float32, y []int32) {
	imgs := make([][]uint8, len(idx))
	p.store.parallel(len(idx), func(i int) {
		img, err := p.fetch(d, idx[i])
		if err != nil {
			p.setErr(err)
			return
		}
		imgs[i] = img.pix
	})
	d.batchFrom(idx, norm, aug, rng, x, y, func(i int) []uint8 { return imgs[i] })
}

// Fit makes d deliver c×h×w samples. An image folder's photos are then resized (keeping
// their aspect ratio, so that h×w covers Options.CropFraction of them) and cropped to
// h×w, and converted to c channels (1 or 3); an image so small that it would be enlarged
// more than 8 times is refused, naming the file. Other data sets must already have that
// shape (Validate).
func (d *Dataset) Fit(c, h, w int) error {
	if d.photos == nil {
		return d.Validate(c, h, w)
	}
	if c != 1 && c != 3 {
		return fmt.Errorf("%s: the model takes %d channels; image folders give 1 (gray) or 3 (RGB)", d.Source, c)
	}
	if h < 1 || w < 1 {
		return fmt.Errorf("%s: the model takes %d×%d images", d.Source, w, h)
	}
	st := d.photos.store
	exact := true
	for s := range d.photos.idx {
		f := d.photos.file(s)
		fw, fh := st.fitted(f, h, w)
		if float64(fw) > maxUpscale*float64(f.w) || float64(fh) > maxUpscale*float64(f.h) {
			return st.src.errf(f.path, "image is %d×%d, too small for the model's %d×%d input (it would be enlarged more than %d times)",
				f.w, f.h, w, h, maxUpscale)
		}
		exact = exact && int(f.w) == w && int(f.h) == h
	}
	d.C, d.H, d.W = c, h, w
	d.photos.exact = exact
	return nil
}

// Err returns the first error met decoding the images of d's batches (image folders are
// decoded on demand: a file that is corrupt beyond its header shows here), nil when there
// was none. A sample whose image failed was filled with zeros.
func (d *Dataset) Err() error {
	if d.photos == nil {
		return nil
	}
	d.photos.mu.Lock()
	defer d.photos.mu.Unlock()
	return d.photos.err
}

func newPhotoStore(fsys fs.FS, src source, files []photoFile, opt Options) *photoStore {
	w := opt.Workers
	if w <= 0 {
		w = runtime.GOMAXPROCS(0)
	}
	cache := opt.CacheBytes
	if cache <= 0 {
		cache = DefaultCacheBytes
	}
	crop := opt.CropFraction
	if crop <= 0 || crop > 1 {
		crop = 1
	}
	return &photoStore{fsys: fsys, src: src, files: files, crop: crop, workers: w,
		sem: make(chan struct{}, w), cache: newImageCache(cache)}
}
