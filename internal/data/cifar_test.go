package data

import (
	"bytes"
	"path/filepath"
	"testing"
)

// cifarRecords encodes records with the given label bytes per record; the pixels of
// record i are pattern(3072, seed+i).
func cifarRecords(labels [][]byte, seed int) []byte {
	var b []byte
	for i, l := range labels {
		b = append(b, l...)
		b = append(b, pattern(cifarPixels, seed+i)...)
	}
	return b
}

func TestCIFAR10(t *testing.T) {
	for _, sub := range []string{"", "cifar-10-batches-bin"} {
		dir := t.TempDir()
		// Batches 1, 2 and 10: numeric order, not lexical.
		writeFile(t, dir, filepath.Join(sub, "data_batch_10.bin"), cifarRecords([][]byte{{9}}, 100))
		writeFile(t, dir, filepath.Join(sub, "data_batch_2.bin"), cifarRecords([][]byte{{5}, {6}}, 20))
		writeFile(t, dir, filepath.Join(sub, "data_batch_1.bin"), cifarRecords([][]byte{{0}, {1}, {2}}, 10))
		writeFile(t, dir, filepath.Join(sub, "test_batch.bin"), cifarRecords([][]byte{{3}, {4}}, 50))
		d, err := Open(dir, Train)
		if err != nil {
			t.Fatal(err)
		}
		if d.N != 6 || d.C != 3 || d.H != 32 || d.W != 32 || d.Classes != 10 || d.Layout != LayoutCIFAR10 {
			t.Fatalf("got N=%d C=%d H=%d W=%d classes=%d layout=%s", d.N, d.C, d.H, d.W, d.Classes, d.Layout)
		}
		wantLabels := []int32{0, 1, 2, 5, 6, 9}
		wantSeeds := []int{10, 11, 12, 20, 21, 100}
		for i := range wantLabels {
			if d.Labels[i] != wantLabels[i] {
				t.Errorf("label %d = %d, want %d", i, d.Labels[i], wantLabels[i])
			}
			if !bytes.Equal(d.Pixels[i*cifarPixels:(i+1)*cifarPixels], pattern(cifarPixels, wantSeeds[i])) {
				t.Errorf("pixels of sample %d differ", i)
			}
		}
		te, err := Open(dir, Test)
		if err != nil {
			t.Fatal(err)
		}
		if te.N != 2 || te.Labels[1] != 4 || !bytes.Equal(te.Pixels[cifarPixels:], pattern(cifarPixels, 51)) {
			t.Errorf("test split: N=%d labels=%v", te.N, te.Labels)
		}
	}
}

func TestCIFAR100(t *testing.T) {
	for _, sub := range []string{"", "cifar-100-binary"} {
		dir := t.TempDir()
		writeFile(t, dir, filepath.Join(sub, "train.bin"), cifarRecords([][]byte{{1, 99}, {19, 7}, {3, 0}}, 0))
		writeFile(t, dir, filepath.Join(sub, "test.bin"), cifarRecords([][]byte{{2, 42}}, 7))
		d, err := Open(dir, Train)
		if err != nil {
			t.Fatal(err)
		}
		if d.N != 3 || d.Classes != 100 || d.Layout != LayoutCIFAR100 || d.Labels[0] != 99 || d.Labels[1] != 7 || d.Labels[2] != 0 {
			t.Errorf("got N=%d classes=%d layout=%s labels=%v", d.N, d.Classes, d.Layout, d.Labels)
		}
		if !bytes.Equal(d.Pixels[2*cifarPixels:], pattern(cifarPixels, 2)) {
			t.Error("pixels differ")
		}
		te, err := Open(dir, Test)
		if err != nil {
			t.Fatal(err)
		}
		if te.N != 1 || te.Labels[0] != 42 {
			t.Errorf("test: N=%d labels=%v", te.N, te.Labels)
		}
	}
}

func TestCIFARErrors(t *testing.T) {
	t.Run("truncated", func(t *testing.T) {
		dir := t.TempDir()
		b := cifarRecords([][]byte{{1}, {2}}, 0)
		p := writeFile(t, dir, "data_batch_1.bin", b[:len(b)-100])
		_, err := Open(dir, Train)
		wantErr(t, err, p+":", "truncated", "3073-byte records")
	})
	t.Run("label out of range", func(t *testing.T) {
		dir := t.TempDir()
		p := writeFile(t, dir, "test_batch.bin", cifarRecords([][]byte{{1}, {10}}, 0))
		_, err := Open(dir, Test)
		wantErr(t, err, p+":", "label 10 of record 1", "[0, 10)")
	})
	t.Run("fine label out of range", func(t *testing.T) {
		dir := t.TempDir()
		p := writeFile(t, dir, "train.bin", cifarRecords([][]byte{{1, 100}}, 0))
		_, err := Open(dir, Train)
		wantErr(t, err, p+":", "label 100 of record 0", "[0, 100)")
	})
	t.Run("missing split", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "data_batch_1.bin", cifarRecords([][]byte{{1}}, 0))
		_, err := Open(dir, Test)
		wantErr(t, err, dir, "CIFAR-10", "no test split", "test_batch.bin is missing")
	})
	t.Run("empty", func(t *testing.T) {
		dir := t.TempDir()
		p := writeFile(t, dir, "test.bin", nil)
		_, err := Open(dir, Test)
		wantErr(t, err, p+":", "test split is empty")
	})
}
