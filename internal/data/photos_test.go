package data

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
)

// bands returns a w×h image of n equal bands of the given colors, vertical (side by side)
// or horizontal.
func bands(w, h int, vertical bool, cols ...color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			k := x * len(cols) / w
			if !vertical {
				k = y * len(cols) / h
			}
			img.SetNRGBA(x, y, cols[k])
		}
	}
	return img
}

var (
	red   = color.NRGBA{255, 0, 0, 255}
	green = color.NRGBA{0, 255, 0, 255}
	blue  = color.NRGBA{0, 0, 255, 255}
	gray  = color.NRGBA{128, 128, 128, 255}
	white = color.NRGBA{255, 255, 255, 255}
	black = color.NRGBA{0, 0, 0, 255}
)

// at returns channel c of pixel (x, y) of sample i of a 3×h×w batch read back as bytes.
func at(px []uint8, h, w, i, c, y, x int) int { return int(px[i*3*h*w+c*h*w+y*w+x]) }

// checkRegion fails unless every pixel of sample i in [x0,x1)×[y0,y1) is col within tol.
func checkRegion(t *testing.T, what string, px []uint8, h, w, i, x0, y0, x1, y1 int, col color.NRGBA, tol int) {
	t.Helper()
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			for c, want := range []uint8{col.R, col.G, col.B} {
				if got := at(px, h, w, i, c, y, x); got < int(want)-tol || got > int(want)+tol {
					t.Fatalf("%s: pixel (%d,%d) channel %d = %d, want %d±%d", what, x, y, c, got, want, tol)
				}
			}
		}
	}
}

// A folder of PNG and JPEG images of different sizes and color models, fitted to a
// 100×100 model: each image is scaled so that its shorter side is 100 and center-cropped.
func TestPhotoFolderResizeCrop(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "train/a/0-wide.png", encodePNG(t, bands(300, 100, true, red, green, blue)))    // no scaling: the middle third
	writeFile(t, dir, "train/a/1-tall.jpg", encodeJPEG(t, bands(60, 180, false, white, gray, black))) // ×5/3: the middle third
	writeFile(t, dir, "train/b/2-big.png", encodePNG(t, bands(400, 400, true, red, blue)))            // ÷4: both halves
	gray16 := image.NewGray16(image.Rect(0, 0, 50, 50))                                               // ×2, gray → RGB
	for i := range gray16.Pix {
		gray16.Pix[i] = []uint8{0x4d, 0x12}[i%2] // 0x4d12: high byte 77
	}
	writeFile(t, dir, "train/b/3-gray16.png", encodePNG(t, gray16))
	deep := image.NewNRGBA64(image.Rect(0, 0, 120, 80)) // 16-bit color
	for i := 0; i < len(deep.Pix); i += 8 {
		copy(deep.Pix[i:], []uint8{0x12, 0x34, 0xab, 0xcd, 0x80, 0x00, 0xff, 0xff})
	}
	writeFile(t, dir, "train/c/4-deep.png", encodePNG(t, deep))
	pal := image.NewPaletted(image.Rect(0, 0, 100, 100), color.Palette{color.RGBA{10, 20, 30, 255}})
	writeFile(t, dir, "train/c/5-pal.png", encodePNG(t, pal))
	cmyk, err := os.ReadFile(filepath.Join("testdata", "cmyk.jpg")) // 40×30: cyan | yellow
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "train/c/6-cmyk.jpg", cmyk)

	d, err := Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 7 || d.C != 3 {
		t.Fatalf("N=%d C=%d", d.N, d.C)
	}
	if err := d.Fit(3, 100, 100); err != nil {
		t.Fatal(err)
	}
	px := pixelsOf(t, d)
	checkRegion(t, "wide PNG", px, 100, 100, 0, 0, 0, 100, 100, green, 0)
	checkRegion(t, "tall JPEG", px, 100, 100, 1, 0, 4, 100, 96, gray, 3)
	checkRegion(t, "big PNG left", px, 100, 100, 2, 0, 0, 48, 100, red, 0)
	checkRegion(t, "big PNG right", px, 100, 100, 2, 52, 0, 100, 100, blue, 0)
	checkRegion(t, "16-bit gray PNG", px, 100, 100, 3, 0, 0, 100, 100, color.NRGBA{77, 77, 77, 255}, 0)
	checkRegion(t, "16-bit color PNG", px, 100, 100, 4, 0, 0, 100, 100, color.NRGBA{0x12, 0xab, 0x80, 255}, 0)
	checkRegion(t, "paletted PNG", px, 100, 100, 5, 0, 0, 100, 100, color.NRGBA{10, 20, 30, 255}, 0)
	// CMYK 40×30 → 133×100 → columns 16..116 of it: cyan left of 50, yellow right.
	checkRegion(t, "CMYK JPEG left", px, 100, 100, 6, 0, 0, 45, 100, color.NRGBA{0, 255, 255, 255}, 4)
	checkRegion(t, "CMYK JPEG right", px, 100, 100, 6, 55, 0, 100, 100, color.NRGBA{255, 255, 0, 255}, 4)

	// The same folder at 1 channel: luma.
	if err := d.Fit(1, 100, 100); err != nil {
		t.Fatal(err)
	}
	g := pixelsOf(t, d)
	if v := g[0*10000+50*100+50]; v != 150 { // green: 0.587·255
		t.Errorf("luma of green = %d, want 150", v)
	}
}

// CropFraction 0.5 keeps the middle half of each side: the inner square of a framed
// image, where a crop fraction of 1 keeps the frame.
func TestPhotoFolderCropFraction(t *testing.T) {
	dir := t.TempDir()
	img := image.NewNRGBA(image.Rect(0, 0, 400, 400))
	for y := range 400 {
		for x := range 400 {
			col := red
			if x >= 100 && x < 300 && y >= 100 && y < 300 {
				col = blue
			}
			img.SetNRGBA(x, y, col)
		}
	}
	writeFile(t, dir, "test/a/framed.png", encodePNG(t, img))
	for _, c := range []struct {
		frac  float64
		inner bool
	}{{0.5, true}, {1, false}} {
		d, err := OpenDir(dir, Test, Options{CropFraction: c.frac})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Fit(3, 50, 50); err != nil {
			t.Fatal(err)
		}
		px := pixelsOf(t, d)
		if c.inner { // the crop's edge is the square's: one pixel of blur
			checkRegion(t, "crop 0.5", px, 50, 50, 0, 1, 1, 49, 49, blue, 0)
		} else {
			checkRegion(t, "crop 1 corner", px, 50, 50, 0, 0, 0, 10, 10, red, 0)
			checkRegion(t, "crop 1 center", px, 50, 50, 0, 15, 15, 35, 35, blue, 0)
		}
	}
}

// Training batches of a mixed-size folder are random-resized crops, flipped at random:
// the same for the same seed, different for another, and a constant image stays constant.
func TestPhotoFolderAugment(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "train/a/lr.png", encodePNG(t, bands(200, 100, true, red, blue)))
	writeFile(t, dir, "train/b/flat.jpg", encodeJPEG(t, bands(90, 130, true, gray)))
	d, err := Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Fit(3, 32, 32); err != nil {
		t.Fatal(err)
	}
	aug := &Augment{PadCrop: 2, HFlip: true}
	idx := []int{0, 1}
	batch := func(seed uint64) []float32 {
		x := make([]float32, 2*d.SampleSize())
		d.Batch(idx, Normalize{}, aug, rand.New(rand.NewPCG(seed, 1)), x, nil)
		if err := d.Err(); err != nil {
			t.Fatal(err)
		}
		return x
	}
	if a, b := batch(1), batch(1); !slices.Equal(a, b) {
		t.Error("same seed, different batches")
	}
	redLeft, redRight := 0, 0
	for seed := range uint64(40) {
		x := batch(seed + 2)
		for _, v := range x[d.SampleSize():] { // the flat image: gray wherever the crop falls
			if v < 125.0/255 || v > 131.0/255 {
				t.Fatalf("seed %d: flat image gives %v", seed, v*255)
			}
		}
		// Red (channel 0) at the left edge or the right edge of the red|blue image.
		if x[0] > 0.9 {
			redLeft++
		}
		if x[31] > 0.9 {
			redRight++
		}
	}
	if redLeft < 5 || redRight < 5 {
		t.Errorf("red at the left edge %d times and at the right edge %d times of 40: no flips or crops", redLeft, redRight)
	}
}

// A folder whose images all have the model's size is augmented like the in-memory
// layouts (pad and crop, flip), with the same draws.
func TestPhotoFolderExactSizeAugment(t *testing.T) {
	dir := t.TempDir()
	mem := synthetic(4, 1, 6, 5, 2)
	for i := range 4 {
		img := image.NewGray(image.Rect(0, 0, 5, 6))
		copy(img.Pix, mem.Pixels[i*30:(i+1)*30])
		writeFile(t, dir, "train/"+[]string{"a", "b"}[i%2]+"/"+string(rune('0'+i))+".png", encodePNG(t, img))
	}
	d, err := Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	// Files sort as a/0, a/2, b/1, b/3.
	order := []int{0, 2, 1, 3}
	aug := &Augment{PadCrop: 2, HFlip: true}
	norm := Normalize{Mean: []float32{0.3}, Std: []float32{0.2}}
	x1 := make([]float32, 4*30)
	x2 := make([]float32, 4*30)
	d.Batch([]int{0, 1, 2, 3}, norm, aug, rand.New(rand.NewPCG(9, 9)), x1, nil)
	mem.Batch(order, norm, aug, rand.New(rand.NewPCG(9, 9)), x2, nil)
	if !slices.Equal(x1, x2) {
		t.Error("exact-size folder batches differ from the same pixels in memory")
	}
}

// pngHeader returns a PNG whose header claims w×h RGB pixels, followed by junk.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 2, 0, 0, 0)
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(ihdr))))
	b.Write(chunk)
	b.Write(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(chunk)))
	b.WriteString("\x00\x00\x00\x04IDATjunk\x00\x00\x00\x00")
	return b.Bytes()
}

// Bad photos: one line naming the file (or folder), found from the header where it can
// be, and the other images still read.
func TestPhotoFolderBadInput(t *testing.T) {
	good := encodeJPEG(t, bands(64, 48, true, red, blue))
	t.Run("huge header", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "train/a/ok.jpg", good)
		p := writeFile(t, dir, "train/a/huge.png", pngHeader(100000, 100000))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Open(dir, Train)
		runtime.ReadMemStats(&after)
		wantErr(t, err, p+":", "100000×100000", "refused before decoding")
		if a := after.TotalAlloc - before.TotalAlloc; a > 16<<20 {
			t.Errorf("refusing the header allocated %d MiB", a>>20)
		}
	})
	t.Run("1×1 image", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "train/a/ok.jpg", good)
		p := writeFile(t, dir, "train/a/z-dot.png", encodePNG(t, image.NewGray(image.Rect(0, 0, 1, 1))))
		_, err := Open(dir, Train) // fitted to the first image's 64×48
		wantErr(t, err, p+":", "1×1", "too small")
		os.Rename(filepath.Join(dir, "train/a/ok.jpg"), filepath.Join(dir, "train/a/zz-ok.jpg"))
		d, err := Open(dir, Train) // fitted to the dot's 1×1, then to a model's 32×32
		if err != nil {
			t.Fatal(err)
		}
		wantErr(t, d.Fit(3, 32, 32), p+":", "1×1", "too small for the model's 32×32 input")
	})
	t.Run("empty class folder", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "train/a/ok.jpg", good)
		if err := os.MkdirAll(filepath.Join(dir, "train", "b"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, Train)
		wantErr(t, err, filepath.Join(dir, "train", "b")+":", "no .png/.jpg/.jpeg images")
	})
	t.Run("corrupt JPEG", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "train/a/1-ok.jpg", good)
		sos := bytes.Index(good, []byte{0xff, 0xda}) // the headers stay, the scan is garbage
		bad := append(slices.Clone(good[:sos+20]), bytes.Repeat([]byte{0xff, 0x00, 0x13}, 50)...)
		p := writeFile(t, dir, "train/a/2-bad.jpg", bad)
		writeFile(t, dir, "train/a/3-ok.jpg", good)
		d, err := Open(dir, Train) // the header is intact
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, 3*d.SampleSize())
		d.Batch([]int{0, 1, 2}, Normalize{}, nil, nil, x, nil)
		err = d.Err()
		wantErr(t, err, p+":", "cannot decode image")
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error spans lines: %q", err)
		}
		if x[0] < 0.95 || x[2*d.SampleSize()] < 0.95 || x[d.SampleSize()] != 0 {
			t.Errorf("good images around the bad one: %v %v, bad one %v", x[0], x[2*d.SampleSize()], x[d.SampleSize()])
		}
	})
	t.Run("decoder panic", func(t *testing.T) {
		fsys := &panicFS{MapFS: fstest.MapFS{
			"train/a/1.jpg": {Data: good},
			"train/a/2.jpg": {Data: good},
		}, victim: "train/a/2.jpg"}
		d, err := OpenFS(fsys, "mem", Train, Options{})
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, 2*d.SampleSize())
		d.Batch([]int{0, 1}, Normalize{}, nil, nil, x, nil)
		wantErr(t, d.Err(), "mem:train/a/2.jpg:", "internal error", "boom")
	})
}

// panicFS panics when victim is opened a second time (the first read is the header scan).
type panicFS struct {
	fstest.MapFS
	victim string
	opens  atomic.Int32
}

func (p *panicFS) Open(name string) (fs.File, error) {
	if name == p.victim && p.opens.Add(1) > 1 {
		panic("boom")
	}
	return p.MapFS.Open(name)
}

// Iterating a folder much larger than the cache keeps the cache within its budget (raised
// to three batches by the loader) and decodes every image.
func TestPhotoCacheBounded(t *testing.T) {
	dir := t.TempDir()
	const n = 120
	for i := range n {
		writeFile(t, dir, "train/"+string(rune('a'+i%3))+"/"+string(rune('A'+i/26))+string(rune('a'+i%26))+".png",
			encodePNG(t, bands(40+i%7, 30+i%5, true, red, blue)))
	}
	d, err := OpenDir(dir, Train, Options{CacheBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Fit(3, 24, 24); err != nil {
		t.Fatal(err)
	}
	l, err := NewLoader(d, LoaderOptions{BatchSize: 8, Shuffle: true, Seed: 3, Aug: &Augment{HFlip: true}})
	if err != nil {
		t.Fatal(err)
	}
	c := d.photos.store.cache
	x := make([]float32, 8*d.SampleSize())
	y := make([]int32, 8)
	for epoch := range 2 {
		seen := 0
		for {
			k := l.Next(x, y)
			if k == 0 {
				break
			}
			seen += k
			if err := l.Err(); err != nil {
				t.Fatal(err)
			}
			c.mu.Lock()
			used, limit, entries := c.used, c.limit, len(c.entries)
			c.mu.Unlock()
			if used > limit || entries >= n/2 {
				t.Fatalf("cache holds %d bytes (%d images) of a %d-byte budget", used, entries, limit)
			}
		}
		if seen != n {
			t.Errorf("epoch %d gave %d samples, want %d", epoch, seen, n)
		}
	}
}

// With QNAS_PHOTO_REFERENCE naming a folder written by scripts/torch/photo_reference.py,
// the evaluation crops equal torchvision's (Resize with PIL's bilinear filter, then
// CenterCrop) within one level in 255. Not in CI, which has no torchvision.
func TestTorchvisionReference(t *testing.T) {
	dir := os.Getenv("QNAS_PHOTO_REFERENCE")
	if dir == "" {
		t.Skip("QNAS_PHOTO_REFERENCE is not set")
	}
	var size int
	var crop float64
	spec, err := os.ReadFile(filepath.Join(dir, "reference.txt"))
	if err == nil {
		_, err = fmt.Sscan(string(spec), &size, &crop)
	}
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "reference.npy"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := readNPYHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := readNPYInts(f, h, int(h.elems(1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(dir, Test, Options{CropFraction: crop})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Fit(3, size, size); err != nil {
		t.Fatal(err)
	}
	px := pixelsOf(t, d)
	if len(px) != len(ref) {
		t.Fatalf("%d values, reference %d", len(px), len(ref))
	}
	n := d.SampleSize()
	for i := range d.N {
		worst, sum := 0, 0
		for j := i * n; j < (i+1)*n; j++ {
			dv := int(px[j]) - int(ref[j])
			worst, sum = max(worst, dv, -dv), sum+max(dv, -dv)
		}
		t.Logf("image %d: max |qnas − torchvision| = %d, mean %.3f", i, worst, float64(sum)/float64(n))
		if worst > 1 {
			t.Errorf("image %d differs from torchvision's crop by up to %d levels", i, worst)
		}
	}
}
