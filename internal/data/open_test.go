package data

import (
	"testing"
	"time"

	"github.com/qnas/qnas/internal/testenv"
)

func TestEmbedded(t *testing.T) {
	for _, c := range []struct {
		split Split
		n     int
	}{{Train, 4000}, {Test, 1000}} {
		d, err := Embedded(c.split)
		if err != nil {
			t.Fatal(err)
		}
		if d.N != c.n || d.C != 1 || d.H != 28 || d.W != 28 || d.Classes != 10 || d.Source != "embedded" {
			t.Errorf("%v: got N=%d C=%d H=%d W=%d classes=%d source=%q", c.split, d.N, d.C, d.H, d.W, d.Classes, d.Source)
		}
		var counts [10]int
		for _, l := range d.Labels {
			counts[l]++
		}
		for k, n := range counts {
			if n == 0 {
				t.Errorf("%v: class %d has no samples", c.split, k)
			}
		}
		if err := d.Validate(1, 28, 28); err != nil {
			t.Error(err)
		}
	}
}

func TestFashionMNIST(t *testing.T) {
	dir := testenv.Require(t, testenv.FashionMNISTDir, "apt install dataset-fashion-mnist")
	for _, c := range []struct {
		split Split
		n     int
	}{{Train, 60000}, {Test, 10000}} {
		start := time.Now()
		d, err := Open(dir, c.split)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%v: %d images loaded in %v", c.split, d.N, time.Since(start).Round(time.Millisecond))
		if d.N != c.n || d.C != 1 || d.H != 28 || d.W != 28 || d.Classes != 10 || d.Layout != LayoutIDX {
			t.Errorf("%v: got N=%d C=%d H=%d W=%d classes=%d", c.split, d.N, d.C, d.H, d.W, d.Classes)
		}
		var counts [10]int
		for _, l := range d.Labels {
			counts[l]++
		}
		for k, n := range counts {
			if n != c.n/10 { // Fashion-MNIST is balanced
				t.Errorf("%v: class %d has %d samples, want %d", c.split, k, n, c.n/10)
			}
		}
	}
}

func BenchmarkOpenFashionMNIST(b *testing.B) {
	dir := testenv.Require(b, testenv.FashionMNISTDir, "apt install dataset-fashion-mnist")
	for b.Loop() {
		if _, err := Open(dir, Train); err != nil {
			b.Fatal(err)
		}
	}
}
