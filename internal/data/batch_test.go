package data

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// synthetic returns a dataset of n random c×h×w byte samples with labels i%classes.
func synthetic(n, c, h, w, classes int) *Dataset {
	r := rand.New(rand.NewPCG(1, 2))
	d := &Dataset{N: n, C: c, H: h, W: w, Classes: classes, Pixels: make([]uint8, n*c*h*w), Labels: make([]int32, n), Source: "synthetic"}
	for i := range d.Pixels {
		d.Pixels[i] = uint8(r.Uint32())
	}
	for i := range d.Labels {
		d.Labels[i] = int32(i % classes)
	}
	return d
}

// reference computes sample s of d with shift (dy, dx) and flip the slow way: build
// the zero-padded image, crop, mirror, then scale and normalize.
func reference(d *Dataset, s int, norm Normalize, dy, dx int, flip bool) []float32 {
	out := make([]float32, 0, d.SampleSize())
	for c := range d.C {
		m, sd := norm.at(c)
		for y := range d.H {
			for x := range d.W {
				xx := x
				if flip {
					xx = d.W - 1 - x
				}
				sy, sx := y+dy, xx+dx
				var v float32 // pixel 0 outside the image
				if sy >= 0 && sy < d.H && sx >= 0 && sx < d.W {
					i := s*d.SampleSize() + c*d.H*d.W + sy*d.W + sx
					if d.Pixels != nil {
						v = float32(d.Pixels[i]) / 255
					} else {
						v = d.Floats[i]
					}
				}
				out = append(out, (v-m)/sd)
			}
		}
	}
	return out
}

func TestBatchNormalize(t *testing.T) {
	for _, c := range []int{1, 3, 5} {
		d := synthetic(6, c, 3, 4, 3)
		norm := Normalize{Mean: []float32{0.5}, Std: []float32{0.25}}
		if c > 1 {
			norm = Normalize{Mean: make([]float32, c), Std: make([]float32, c)}
			for i := range c {
				norm.Mean[i], norm.Std[i] = 0.1*float32(i), 0.2+0.1*float32(i)
			}
		}
		idx := []int{4, 0, 4}
		x := make([]float32, len(idx)*d.SampleSize())
		y := make([]int32, len(idx))
		d.Batch(idx, norm, nil, nil, x, y)
		for i, s := range idx {
			if !slices.Equal(x[i*d.SampleSize():(i+1)*d.SampleSize()], reference(d, s, norm, 0, 0, false)) {
				t.Errorf("C=%d: sample %d differs from (p/255−mean)/std", c, s)
			}
			if y[i] != d.Labels[s] {
				t.Errorf("C=%d: label %d = %d", c, i, y[i])
			}
		}
	}
	// Float data is used as stored: no 1/255.
	f := &Dataset{N: 1, C: 1, H: 1, W: 2, Classes: 1, Floats: []float32{2, -4}, Labels: []int32{0}}
	x := make([]float32, 2)
	f.Batch([]int{0}, Normalize{Mean: []float32{1}, Std: []float32{2}}, nil, nil, x, nil)
	if x[0] != 0.5 || x[1] != -2.5 {
		t.Errorf("float data: %v, want [0.5 -2.5]", x)
	}
	// Empty Normalize: pixels/255.
	b := &Dataset{N: 1, C: 1, H: 1, W: 2, Classes: 1, Pixels: []uint8{0, 255}, Labels: []int32{0}}
	b.Batch([]int{0}, Normalize{}, nil, nil, x, nil)
	if x[0] != 0 || x[1] != 1 {
		t.Errorf("identity normalization: %v", x)
	}
}

func TestBatchAugment(t *testing.T) {
	for _, useFloats := range []bool{false, true} {
		d := synthetic(5, 3, 6, 5, 2)
		if useFloats {
			d.Floats = make([]float32, len(d.Pixels))
			for i, p := range d.Pixels {
				d.Floats[i] = float32(p) / 100
			}
			d.Pixels = nil
		}
		norm := Normalize{Mean: []float32{0.4, 0.5, 0.6}, Std: []float32{0.2, 0.3, 0.4}}
		aug := &Augment{PadCrop: 3, HFlip: true}
		idx := []int{0, 1, 2, 3, 4, 2, 1}
		x := make([]float32, len(idx)*d.SampleSize())
		shifts := map[[2]int]bool{}
		flips := 0
		for round := range 200 {
			rng := rand.New(rand.NewPCG(uint64(round), 9))
			d.Batch(idx, norm, aug, rng, x, nil)
			// Replay the documented draws: dy, dx, then the flip, per sample.
			replay := rand.New(rand.NewPCG(uint64(round), 9))
			for i, s := range idx {
				dy, dx := intN(replay, 7)-3, intN(replay, 7)-3
				flip := replay.Uint64()&1 == 1
				shifts[[2]int{dy, dx}] = true
				if flip {
					flips++
				}
				if !slices.Equal(x[i*d.SampleSize():(i+1)*d.SampleSize()], reference(d, s, norm, dy, dx, flip)) {
					t.Fatalf("floats=%v round %d sample %d (dy=%d dx=%d flip=%v) differs from the reference", useFloats, round, i, dy, dx, flip)
				}
			}
		}
		if len(shifts) != 49 {
			t.Errorf("saw %d of 49 shifts", len(shifts))
		}
		if n := 200 * len(idx); flips < n*4/10 || flips > n*6/10 {
			t.Errorf("%d flips of %d", flips, n)
		}
	}
}

func TestBatchDeterministicNoAlloc(t *testing.T) {
	d := synthetic(64, 3, 32, 32, 10)
	norm := Normalize{Mean: []float32{0.49, 0.48, 0.45}, Std: []float32{0.25, 0.24, 0.26}}
	aug := &Augment{PadCrop: 4, HFlip: true}
	idx := make([]int, 32)
	for i := range idx {
		idx[i] = (i * 7) % 64
	}
	a := make([]float32, len(idx)*d.SampleSize())
	b := make([]float32, len(a))
	y := make([]int32, len(idx))
	d.Batch(idx, norm, aug, rand.New(rand.NewPCG(5, 5)), a, y)
	d.Batch(idx, norm, aug, rand.New(rand.NewPCG(5, 5)), b, y)
	if !slices.Equal(a, b) {
		t.Error("same seed, different batches")
	}
	d.Batch(idx, norm, aug, rand.New(rand.NewPCG(6, 5)), b, y)
	if slices.Equal(a, b) {
		t.Error("different seeds, same batches")
	}
	rng := rand.New(rand.NewPCG(1, 1))
	if n := testing.AllocsPerRun(20, func() { d.Batch(idx, norm, aug, rng, a, y) }); n != 0 {
		t.Errorf("Batch allocates %v times per call", n)
	}
}

func TestParseNormalize(t *testing.T) {
	n, err := ParseNormalize("0.4914, 0.4822,0.4465", "0.25")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(n.Mean, []float32{0.4914, 0.4822, 0.4465}) || !slices.Equal(n.Std, []float32{0.25}) {
		t.Errorf("got %+v", n)
	}
	if n, err := ParseNormalize("", " "); err != nil || n.Mean != nil || n.Std != nil {
		t.Errorf("empty: %+v, %v", n, err)
	}
	_, err = ParseNormalize("0.5", "0.2,x")
	wantErr(t, err, `--std: "x" is not a number`)
}

func TestNormalizeCheck(t *testing.T) {
	ok := []Normalize{{}, {Mean: []float32{0.5}}, {Mean: []float32{1, 2, 3}, Std: []float32{1}}}
	for _, n := range ok {
		if err := n.Check(3); err != nil {
			t.Errorf("%v: %v", n, err)
		}
	}
	wantErr(t, Normalize{Mean: []float32{1, 2}}.Check(3), "Data.Mean has 2 values", "3 channels; give 1 or 3")
	wantErr(t, Normalize{Std: []float32{1, 2, 3}}.Check(1), "Data.Std has 3 values", "1 channel; give 1")
	wantErr(t, Normalize{Std: []float32{0}}.Check(1), "Data.Std value 0 must be positive")

	d := synthetic(2, 1, 2, 2, 2)
	defer func() {
		if r := recover(); r == nil {
			t.Error("Batch with a short buffer did not panic")
		}
	}()
	d.Batch([]int{0, 1}, Normalize{}, nil, nil, make([]float32, 7), nil)
}

func BenchmarkBatch(b *testing.B) {
	for _, c := range []struct {
		name    string
		c, h, w int
		aug     *Augment
	}{
		{"fmnist", 1, 28, 28, nil},
		{"fmnist-aug", 1, 28, 28, &Augment{PadCrop: 2, HFlip: true}},
		{"cifar", 3, 32, 32, nil},
		{"cifar-aug", 3, 32, 32, &Augment{PadCrop: 4, HFlip: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			d := synthetic(1024, c.c, c.h, c.w, 10)
			idx := make([]int, 128)
			for i := range idx {
				idx[i] = (i * 37) % d.N
			}
			x := make([]float32, len(idx)*d.SampleSize())
			y := make([]int32, len(idx))
			norm := Normalize{Mean: []float32{0.5}, Std: []float32{0.25}}
			rng := rand.New(rand.NewPCG(1, 2))
			b.SetBytes(int64(len(idx) * d.SampleSize()))
			b.ReportAllocs()
			for b.Loop() {
				d.Batch(idx, norm, c.aug, rng, x, y)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(idx)), "ns/sample")
		})
	}
}
