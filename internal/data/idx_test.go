package data

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
)

func TestIDX(t *testing.T) {
	for _, gzipped := range []bool{false, true} {
		dir := t.TempDir()
		trainLabels := []byte{0, 3, 1, 2, 3}
		testLabels := []byte{4, 0, 1} // the largest label is in the test split
		trainPix, testPix := writeIDXSet(t, dir, gzipped, 4, 3, trainLabels, testLabels)
		for _, c := range []struct {
			split  Split
			labels []byte
			pix    []byte
		}{{Train, trainLabels, trainPix}, {Test, testLabels, testPix}} {
			d, err := Open(dir, c.split)
			if err != nil {
				t.Fatalf("gz=%v %v: %v", gzipped, c.split, err)
			}
			if d.N != len(c.labels) || d.C != 1 || d.H != 4 || d.W != 3 || d.Classes != 5 || d.Layout != LayoutIDX || d.Source != dir {
				t.Errorf("gz=%v %v: got N=%d C=%d H=%d W=%d classes=%d layout=%s source=%s", gzipped, c.split, d.N, d.C, d.H, d.W, d.Classes, d.Layout, d.Source)
			}
			if !bytes.Equal(d.Pixels, c.pix) || d.Floats != nil {
				t.Errorf("gz=%v %v: pixels differ", gzipped, c.split)
			}
			for i, l := range c.labels {
				if d.Labels[i] != int32(l) {
					t.Errorf("gz=%v %v: label %d = %d, want %d", gzipped, c.split, i, d.Labels[i], l)
				}
			}
		}
	}
}

func TestIDXDotNames(t *testing.T) {
	// Some MNIST mirrors name the files train-images.idx3-ubyte.
	dir := t.TempDir()
	writeFile(t, dir, "train-images.idx3-ubyte", idxBytes([]int{2, 2, 2}, pattern(8, 0)))
	writeFile(t, dir, "train-labels.idx1-ubyte", idxBytes([]int{2}, []byte{1, 0}))
	d, err := Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 2 || d.Classes != 2 {
		t.Errorf("N=%d classes=%d", d.N, d.Classes)
	}
	_, err = Open(dir, Test)
	wantErr(t, err, dir, "no test split", "t10k-images-idx3-ubyte")
}

func TestIDXErrors(t *testing.T) {
	img := func(n, h, w int) []byte { return idxBytes([]int{n, h, w}, pattern(n*h*w, 0)) }
	lbl := func(l ...byte) []byte { return idxBytes([]int{len(l)}, l) }
	good := img(3, 4, 4)
	cases := []struct {
		name   string
		images []byte
		labels []byte
		gzip   bool
		opt    Options
		file   string // the file the message must name
		parts  []string
	}{
		{"truncated raw", good[:len(good)-5], lbl(0, 1, 2), false, Options{}, "train-images-idx3-ubyte", []string{"truncated", "3 images of 4×4"}},
		{"truncated gz", good[:len(good)-5], lbl(0, 1, 2), true, Options{}, "train-images-idx3-ubyte.gz", []string{"truncated"}},
		{"truncated header", good[:6], lbl(0, 1, 2), false, Options{}, "train-images-idx3-ubyte", []string{"truncated"}},
		{"trailing bytes", append(bytes.Clone(good), 1, 2), lbl(0, 1, 2), false, Options{}, "train-images-idx3-ubyte", []string{"2 bytes follow"}},
		{"trailing gz", append(bytes.Clone(good), 1, 2), lbl(0, 1, 2), true, Options{}, "train-images-idx3-ubyte.gz", []string{"data continues"}},
		{"bad magic", append([]byte{1, 2, 8, 3}, good[4:]...), lbl(0, 1, 2), false, Options{}, "train-images-idx3-ubyte", []string{"bad magic"}},
		{"labels as images", lbl(0, 1, 2), lbl(0, 1, 2), false, Options{}, "train-images-idx3-ubyte", []string{"1 dimensions; want 3"}},
		{"float type", append([]byte{0, 0, 0x0d, 3}, good[4:]...), lbl(0, 1, 2), false, Options{}, "train-images-idx3-ubyte", []string{"data type 0x0d"}},
		{"count mismatch", good, lbl(0, 1), false, Options{}, "train-labels-idx1-ubyte", []string{"holds 2 labels", "holds 3 images"}},
		{"truncated labels", good, lbl(0, 1, 2)[:10], true, Options{}, "train-labels-idx1-ubyte.gz", []string{"truncated"}},
		{"label out of range", good, lbl(0, 1, 7), false, Options{Classes: 5}, "train-labels-idx1-ubyte", []string{"label 7 of sample 2", "[0, 5)"}},
		{"empty", img(0, 4, 4), lbl(), false, Options{}, "train-images-idx3-ubyte", []string{"train split is empty"}},
		{"absurd dims", idxBytes([]int{1 << 30, 1 << 14, 1 << 14}, nil), lbl(0), false, Options{}, "train-images-idx3-ubyte", []string{"limit"}},
		{"over limit", good, lbl(0, 1, 2), false, Options{MaxBytes: 40}, "train-images-idx3-ubyte", []string{"48 bytes", "40-byte limit"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			ext, images, labels := "", c.images, c.labels
			if c.gzip {
				ext, images, labels = ".gz", gz(t, images), gz(t, labels)
			}
			writeFile(t, dir, "train-images-idx3-ubyte"+ext, images)
			writeFile(t, dir, "train-labels-idx1-ubyte"+ext, labels)
			_, err := OpenDir(dir, Train, c.opt)
			wantErr(t, err, append([]string{filepath.Join(dir, c.file) + ":"}, c.parts...)...)
		})
	}
}

func TestIDXMissingLabels(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "train-images-idx3-ubyte.gz", gz(t, idxBytes([]int{1, 2, 2}, pattern(4, 0))))
	_, err := Open(dir, Train)
	wantErr(t, err, dir, "train-labels-idx1-ubyte[.gz] is missing")
}

func TestOpenNothing(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir, Train)
	wantErr(t, err, dir, "no data set found", "IDX", "CIFAR-10", "CIFAR-100", "NPZ", "image folder")

	_, err = Open(filepath.Join(dir, "nope"), Train)
	wantErr(t, err, filepath.Join(dir, "nope")+": no such directory")

	f := writeFile(t, dir, "file", []byte("x"))
	_, err = Open(f, Test)
	wantErr(t, err, f, "not a directory")
	os.Remove(f)
}

func TestValidate(t *testing.T) {
	d := &Dataset{N: 1, C: 3, H: 32, W: 32, Source: "cifar"}
	if err := d.Validate(3, 32, 32); err != nil {
		t.Fatal(err)
	}
	wantErr(t, d.Validate(1, 28, 28), "cifar: data has 3×32×32 images, model expects 1×28×28")
}

func TestOpenFSNames(t *testing.T) {
	img := idxBytes([]int{2, 2, 2}, pattern(8, 0))
	fsys := fstest.MapFS{
		"train-images-idx3-ubyte": {Data: img[:len(img)-1]},
		"train-labels-idx1-ubyte": {Data: idxBytes([]int{2}, []byte{0, 1})},
	}
	_, err := OpenFS(fsys, "mem", Train, Options{})
	wantErr(t, err, "mem:train-images-idx3-ubyte: truncated")
	_, err = OpenFS(fsys, "mem", Test, Options{})
	wantErr(t, err, "mem: IDX data set has no test split")
}
