package data

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"path/filepath"
	"strings"
	"testing"
)

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t *testing.T, img image.Image) []byte { return encodeJPEGQ(t, img, 100) }

func encodeJPEGQ(t testing.TB, img image.Image, quality int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: quality}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pixelsOf returns every sample of d as bytes, read back from Batch without
// normalization (v·255, rounded), sample after sample, each CHW; it fails on a decoding
// error.
func pixelsOf(t *testing.T, d *Dataset) []uint8 {
	t.Helper()
	idx := make([]int, d.N)
	for i := range idx {
		idx[i] = i
	}
	x := make([]float32, d.N*d.SampleSize())
	d.Batch(idx, Normalize{}, nil, nil, x, nil)
	if err := d.Err(); err != nil {
		t.Fatal(err)
	}
	out := make([]uint8, len(x))
	for i, v := range x {
		out[i] = uint8(min(max(v*255+0.5, 0), 255))
	}
	return out
}

func grayImage(w, h, seed int) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	copy(img.Pix, pattern(w*h, seed))
	return img
}

// rgbImage returns an opaque image whose channel ch at (x, y) is pattern(...)[...].
func rgbImage(w, h, seed int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	p := pattern(3*w*h, seed)
	for i := range w * h {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = p[3*i], p[3*i+1], p[3*i+2], 255
	}
	return img
}

func TestFolderGrayPNG(t *testing.T) {
	dir := t.TempDir()
	imgs := map[string]*image.Gray{}
	for i, name := range []string{"train/dog/a.png", "train/cat/b.PNG", "train/cat/a.png", "train/emu/x.png",
		"test/emu/q.png", "test/cat/z.png"} {
		imgs[name] = grayImage(5, 4, i)
		writeFile(t, dir, name, encodePNG(t, imgs[name]))
	}
	writeFile(t, dir, "train/cat/notes.txt", []byte("ignored"))
	writeFile(t, dir, "train/.ipynb_checkpoints/x.png", []byte("ignored"))
	writeFile(t, dir, "test/cat/.hidden.png", []byte("ignored"))

	d, err := Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 4 || d.C != 1 || d.H != 4 || d.W != 5 || d.Classes != 3 || d.Layout != LayoutFolder {
		t.Fatalf("got N=%d C=%d H=%d W=%d classes=%d layout=%s", d.N, d.C, d.H, d.W, d.Classes, d.Layout)
	}
	if got := d.ClassNames; len(got) != 3 || got[0] != "cat" || got[1] != "dog" || got[2] != "emu" {
		t.Errorf("class names %v", got)
	}
	order := []string{"train/cat/a.png", "train/cat/b.PNG", "train/dog/a.png", "train/emu/x.png"}
	labels := []int32{0, 0, 1, 2}
	px := pixelsOf(t, d)
	for i, name := range order {
		if d.Labels[i] != labels[i] {
			t.Errorf("label of %s = %d, want %d", name, d.Labels[i], labels[i])
		}
		if !bytes.Equal(px[i*20:(i+1)*20], imgs[name].Pix) {
			t.Errorf("pixels of %s differ", name)
		}
	}
	te, err := Open(dir, Test)
	if err != nil {
		t.Fatal(err)
	}
	// test/ lacks dog, but keeps train's mapping: cat 0, emu 2.
	if te.N != 2 || te.Classes != 3 || te.Labels[0] != 0 || te.Labels[1] != 2 || !bytes.Equal(pixelsOf(t, te)[20:], imgs["test/emu/q.png"].Pix) {
		t.Errorf("test split: N=%d classes=%d labels=%v", te.N, te.Classes, te.Labels)
	}
}

func TestFolderColorPNG(t *testing.T) {
	dir := t.TempDir()
	first := rgbImage(3, 2, 0)
	writeFile(t, dir, "train/a/1.png", encodePNG(t, first))
	gray := grayImage(3, 2, 5)
	writeFile(t, dir, "train/a/2.png", encodePNG(t, gray))
	translucent := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for i := range 6 {
		copy(translucent.Pix[4*i:], []byte{200, 100, 50, 128})
	}
	writeFile(t, dir, "train/b/3.png", encodePNG(t, translucent))
	pal := image.NewPaletted(image.Rect(0, 0, 3, 2), color.Palette{color.RGBA{10, 20, 30, 255}, color.RGBA{40, 50, 60, 255}})
	pal.Pix[4] = 1
	writeFile(t, dir, "train/b/4.png", encodePNG(t, pal))

	d, err := Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 4 || d.C != 3 || d.H != 2 || d.W != 3 {
		t.Fatalf("got N=%d C=%d H=%d W=%d", d.N, d.C, d.H, d.W)
	}
	px := pixelsOf(t, d)
	sample := func(i, c, y, x int) uint8 { return px[i*18+c*6+y*3+x] }
	for y := range 2 {
		for x := range 3 {
			for c := range 3 {
				if got, want := sample(0, c, y, x), first.Pix[first.PixOffset(x, y)+c]; got != want {
					t.Errorf("rgb (%d,%d) channel %d = %d, want %d", x, y, c, got, want)
				}
				if got, want := sample(1, c, y, x), gray.GrayAt(x, y).Y; got != want {
					t.Errorf("gray→rgb (%d,%d) channel %d = %d, want %d", x, y, c, got, want)
				}
			}
		}
	}
	// Alpha 128 composited onto black: about half of each channel.
	for c, want := range []int{100, 50, 25} {
		if got := int(sample(2, c, 0, 0)); got < want-1 || got > want+1 {
			t.Errorf("translucent channel %d = %d, want ≈%d", c, got, want)
		}
	}
	if sample(3, 0, 0, 0) != 10 || sample(3, 2, 1, 1) != 60 {
		t.Errorf("paletted pixels %d %d", sample(3, 0, 0, 0), sample(3, 2, 1, 1))
	}
}

// A folder is gray (1 channel) only when every image is; a 1-channel model reads color
// images as their luma.
func TestFolderChannels(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "train/a/1.png", encodePNG(t, grayImage(2, 2, 0)))
	c := rgbImage(2, 2, 3)
	writeFile(t, dir, "train/a/2.png", encodePNG(t, c))
	d, err := Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	if d.C != 3 {
		t.Fatalf("C=%d, want 3", d.C)
	}
	if err := d.Fit(1, 2, 2); err != nil {
		t.Fatal(err)
	}
	px := pixelsOf(t, d)
	for i := range 4 {
		want := color.GrayModel.Convert(c.At(i%2, i/2)).(color.Gray).Y
		if got := px[4+i]; got != want {
			t.Errorf("luma of pixel %d = %d, want %d", i, got, want)
		}
	}
	if err := d.Fit(2, 2, 2); err == nil || !strings.Contains(err.Error(), "2 channels") {
		t.Errorf("2-channel model: %v", err)
	}
	gdir := t.TempDir()
	writeFile(t, gdir, "train/a/1.png", encodePNG(t, grayImage(2, 2, 0)))
	if g, err := Open(gdir, Train); err != nil || g.C != 1 {
		t.Errorf("all gray: C=%d, %v", g.C, err)
	}
}

func TestFolderJPEG(t *testing.T) {
	dir := t.TempDir()
	colors := []color.NRGBA{{200, 30, 90, 255}, {20, 180, 240, 255}}
	for i, col := range colors {
		img := image.NewNRGBA(image.Rect(0, 0, 16, 8))
		for p := 0; p < len(img.Pix); p += 4 {
			img.Pix[p], img.Pix[p+1], img.Pix[p+2], img.Pix[p+3] = col.R, col.G, col.B, col.A
		}
		name := []string{"train/red/x.jpg", "train/sky/y.jpeg"}[i]
		writeFile(t, dir, name, encodeJPEG(t, img))
	}
	d, err := Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 2 || d.C != 3 {
		t.Fatalf("got N=%d C=%d", d.N, d.C)
	}
	if err := d.Fit(3, 8, 16); err != nil {
		t.Fatal(err)
	}
	px := pixelsOf(t, d)
	for i, col := range colors {
		for c, want := range []uint8{col.R, col.G, col.B} {
			for _, got := range px[i*384+c*128 : i*384+(c+1)*128] {
				if diff := int(got) - int(want); diff < -3 || diff > 3 {
					t.Fatalf("image %d channel %d: %d, want ≈%d", i, c, got, want)
				}
			}
		}
	}

	gdir := t.TempDir()
	writeFile(t, gdir, "test/k/g.jpg", encodeJPEG(t, grayImage(8, 8, 1)))
	g, err := Open(gdir, Test)
	if err != nil {
		t.Fatal(err)
	}
	if g.C != 1 || g.N != 1 {
		t.Errorf("gray JPEG: C=%d N=%d", g.C, g.N)
	}
}

func TestFolderErrors(t *testing.T) {
	t.Run("class only in test", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "train/a/1.png", encodePNG(t, grayImage(2, 2, 0)))
		writeFile(t, dir, "test/zebra/1.png", encodePNG(t, grayImage(2, 2, 0)))
		_, err := Open(dir, Test)
		wantErr(t, err, filepath.Join(dir, "test/zebra")+":", `"zebra"`, "train/")
	})
	t.Run("class folder without images", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "train/a/1.png", encodePNG(t, grayImage(2, 2, 0)))
		writeFile(t, dir, "test/a/readme.txt", []byte("x"))
		_, err := Open(dir, Test)
		wantErr(t, err, filepath.Join(dir, "test/a")+":", "class folder has no .png/.jpg/.jpeg images")
	})
	t.Run("empty split", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "train/a/1.png", encodePNG(t, grayImage(2, 2, 0)))
		writeFile(t, dir, "test/readme.txt", []byte("x"))
		_, err := Open(dir, Test)
		wantErr(t, err, filepath.Join(dir, "test")+":", "test split is empty")
	})
	t.Run("no test folder", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "train/a/1.png", encodePNG(t, grayImage(2, 2, 0)))
		_, err := Open(dir, Test)
		wantErr(t, err, filepath.Join(dir, "test")+":", "no test/ folder")
	})
	t.Run("class count", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "train/a/1.png", encodePNG(t, grayImage(2, 2, 0)))
		writeFile(t, dir, "train/b/1.png", encodePNG(t, grayImage(2, 2, 0)))
		_, err := OpenDir(dir, Train, Options{Classes: 1})
		wantErr(t, err, filepath.Join(dir, "train")+":", "2 class folders")
	})
}
