package data

import (
	"slices"
	"testing"
)

// epochOrder drains one epoch of l and returns the indices it visited.
func epochOrder(l *Loader, x []float32, y []int32) (order []int, sizes []int) {
	for n := l.Next(x, y); n > 0; n = l.Next(x, y) {
		order = append(order, l.Indices()...)
		sizes = append(sizes, n)
	}
	return order, sizes
}

func TestLoaderOrder(t *testing.T) {
	d := synthetic(10, 1, 2, 2, 3)
	x := make([]float32, 4*4)
	y := make([]int32, 4)
	newL := func(seed uint64, shuffle, dropLast bool) *Loader {
		l, err := NewLoader(d, LoaderOptions{BatchSize: 4, Shuffle: shuffle, DropLast: dropLast, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	plain := newL(0, false, false)
	order, sizes := epochOrder(plain, x, y)
	if !slices.Equal(order, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) || !slices.Equal(sizes, []int{4, 4, 2}) || plain.Len() != 3 {
		t.Errorf("unshuffled: order %v sizes %v len %d", order, sizes, plain.Len())
	}
	if plain.Epoch() != 1 {
		t.Errorf("epoch after one pass = %d", plain.Epoch())
	}

	a, b, c := newL(7, true, false), newL(7, true, false), newL(8, true, false)
	var first []int
	for e := range 3 {
		oa, _ := epochOrder(a, x, y)
		ob, _ := epochOrder(b, x, y)
		oc, _ := epochOrder(c, x, y)
		if !slices.Equal(oa, ob) {
			t.Errorf("epoch %d: same seed, orders %v and %v", e, oa, ob)
		}
		if slices.Equal(oa, oc) {
			t.Errorf("epoch %d: seeds 7 and 8 give the same order %v", e, oa)
		}
		sorted := slices.Sorted(slices.Values(oa))
		if !slices.Equal(sorted, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
			t.Errorf("epoch %d is not a permutation: %v", e, oa)
		}
		if e == 0 {
			first = oa
		} else if slices.Equal(oa, first) {
			t.Errorf("epoch %d repeats epoch 0's order", e)
		}
	}

	drop := newL(7, true, true)
	if _, sizes := epochOrder(drop, x, y); !slices.Equal(sizes, []int{4, 4}) || drop.Len() != 2 {
		t.Errorf("drop-last sizes %v len %d", sizes, drop.Len())
	}
}

func TestLoaderSeekAugment(t *testing.T) {
	d := synthetic(20, 3, 8, 8, 4)
	opt := LoaderOptions{BatchSize: 6, Shuffle: true, Seed: 3, Aug: &Augment{PadCrop: 2, HFlip: true},
		Norm: Normalize{Mean: []float32{0.5}, Std: []float32{0.2}}}
	size := 6 * d.SampleSize()
	run := func(l *Loader, batches int) (xs [][]float32, idx [][]int) {
		for len(xs) < batches {
			x, y := make([]float32, size), make([]int32, 6)
			if l.Next(x, y) == 0 {
				continue
			}
			xs, idx = append(xs, x), append(idx, slices.Clone(l.Indices()))
		}
		return xs, idx
	}
	l1, _ := NewLoader(d, opt)
	l2, _ := NewLoader(d, opt)
	x1, i1 := run(l1, 9) // 4 batches per epoch: epochs 0, 1 and batch 0 of epoch 2
	x2, i2 := run(l2, 9)
	for k := range x1 {
		if !slices.Equal(x1[k], x2[k]) || !slices.Equal(i1[k], i2[k]) {
			t.Fatalf("batch %d differs between loaders with the same seed", k)
		}
	}
	// Resume at batch 2 of epoch 1: the 7th batch of the first run.
	l3, _ := NewLoader(d, opt)
	l3.Seek(1, 2)
	x3, i3 := run(l3, 3)
	for k := range x3 {
		if !slices.Equal(x3[k], x1[6+k]) || !slices.Equal(i3[k], i1[6+k]) {
			t.Fatalf("resumed batch %d differs", k)
		}
	}
}

func TestLoaderErrors(t *testing.T) {
	d := synthetic(5, 3, 2, 2, 2)
	_, err := NewLoader(d, LoaderOptions{})
	wantErr(t, err, "LoaderOptions.BatchSize 0: must be positive")
	_, err = NewLoader(d, LoaderOptions{BatchSize: 2, Norm: Normalize{Mean: []float32{1, 2}}})
	wantErr(t, err, "Data.Mean has 2 values")
	_, err = NewLoader(d, LoaderOptions{BatchSize: 8, DropLast: true})
	wantErr(t, err, "synthetic: 5 samples make no full batch of 8")
}

func TestHoldoutSubset(t *testing.T) {
	d := synthetic(100, 1, 2, 2, 100) // label i identifies sample i
	tr, ho, err := Holdout(d, 0.1, 42)
	if err != nil {
		t.Fatal(err)
	}
	if tr.N != 90 || ho.N != 10 || len(tr.Pixels) != 90*4 {
		t.Fatalf("sizes %d/%d", tr.N, ho.N)
	}
	all := append(slices.Clone(tr.Labels), ho.Labels...)
	slices.Sort(all)
	for i, l := range all {
		if l != int32(i) {
			t.Fatalf("parts are not a partition: %v", all)
		}
	}
	for i, l := range ho.Labels {
		if !slices.Equal(ho.Pixels[i*4:(i+1)*4], d.Pixels[l*4:(l+1)*4]) {
			t.Errorf("held-out sample %d has the wrong pixels", i)
		}
	}
	if !slices.IsSorted(tr.Labels) || !slices.IsSorted(ho.Labels) {
		t.Error("parts do not keep the original order")
	}
	_, ho2, _ := Holdout(d, 0.1, 42)
	_, ho3, _ := Holdout(d, 0.1, 43)
	if !slices.Equal(ho.Labels, ho2.Labels) || slices.Equal(ho.Labels, ho3.Labels) {
		t.Error("hold-out is not determined by the seed")
	}
	for _, f := range []float64{0, 1, 0.001} {
		if _, _, err := Holdout(d, f, 0); err == nil {
			t.Errorf("fraction %v: no error", f)
		}
	}

	s := Subset(d, 4)
	if !slices.Equal(s.Labels, []int32{0, 25, 50, 75}) || s.Classes != 100 {
		t.Errorf("subset labels %v", s.Labels)
	}
	if Subset(d, 0) != d || Subset(d, 100) != d {
		t.Error("Subset without a limit should return d")
	}
}
