package data

import (
	"fmt"
	"image"
	"math/rand/v2"
	"testing"
)

// photoFolder writes n JPEGs of w×h (smooth color fields with noise, like photos) into a
// temporary image folder and opens its training split.
func photoFolder(b *testing.B, n, w, h int, opt Options) *Dataset {
	dir := b.TempDir()
	r := rand.New(rand.NewPCG(1, 1))
	for i := range n {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				o := img.PixOffset(x, y)
				img.Pix[o] = uint8(x*255/w + r.IntN(24))
				img.Pix[o+1] = uint8(y*255/h + r.IntN(24))
				img.Pix[o+2] = uint8((x+y+i*17)%256/2 + r.IntN(24))
				img.Pix[o+3] = 255
			}
		}
		writeFile(b, dir, fmt.Sprintf("train/c%d/%03d.jpg", i%4, i), encodeJPEGQ(b, img, 90))
	}
	d, err := OpenDir(dir, Train, opt)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkPhotoDecode measures the images per second an image folder delivers at
// 224×224 when every image must be decoded (the cache holds none between batches):
// 500×375 JPEGs (ImageNet's typical size), 2 decoding goroutines, batches of 32, as
// evaluation (resize and center crop) and as training (random-resized crop and flip).
//
//	go test ./internal/data -run '^$' -bench PhotoDecode -benchtime 4x
func BenchmarkPhotoDecode(b *testing.B) {
	const n = 64
	d := photoFolder(b, n, 500, 375, Options{CacheBytes: 1, Workers: 2})
	if err := d.Fit(3, 224, 224); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"eval", "train"} {
		b.Run(mode, func(b *testing.B) {
			var aug *Augment
			if mode == "train" {
				aug = &Augment{PadCrop: 2, HFlip: true}
			}
			rng := rand.New(rand.NewPCG(2, 2))
			idx := make([]int, 32)
			x := make([]float32, len(idx)*d.SampleSize())
			images := 0
			b.ResetTimer()
			for k := 0; k < b.N; k++ {
				for start := 0; start < n; start += len(idx) {
					for i := range idx {
						idx[i] = start + i
					}
					d.Batch(idx, Normalize{}, aug, rng, x, nil)
					images += len(idx)
				}
			}
			if err := d.Err(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(images)/b.Elapsed().Seconds(), "images/s")
		})
	}
}
