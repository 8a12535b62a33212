package data

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
)

func TestNPZUint8(t *testing.T) {
	// 2 samples of 3 channels, 2×2: NCHW data v[n][c][h][w] = pattern.
	nchw := pattern(2*3*2*2, 3)
	nhwc := make([]byte, len(nchw))
	for n := range 2 {
		for c := range 3 {
			for i := range 4 {
				nhwc[n*12+i*3+c] = nchw[n*12+c*4+i]
			}
		}
	}
	labels := npyBytes("<i8", false, []int{2}, i64Bytes([]int64{1, 4}))
	testLabels := npyBytes("|u1", false, []int{1, 1}, []byte{6})
	for _, c := range []struct {
		name    string
		shape   []int
		data    []byte
		compr   bool
		c, h, w int
		want    []byte
	}{
		{"NCHW", []int{2, 3, 2, 2}, nchw, false, 3, 2, 2, nchw},
		{"NHWC", []int{2, 2, 2, 3}, nhwc, true, 3, 2, 2, nchw},
		{"NHW", []int{2, 3, 4}, nchw, true, 1, 3, 4, nchw},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "train.npz", npzBytes(t, c.compr, []string{"x", "y"}, map[string][]byte{
				"x": npyBytes("|u1", false, c.shape, c.data), "y": labels}))
			writeFile(t, dir, "test.npz", npzBytes(t, c.compr, []string{"y", "x"}, map[string][]byte{
				"x": npyBytes("|u1", false, append([]int{1}, c.shape[1:]...), c.data[:len(c.data)/2]), "y": testLabels}))
			d, err := Open(dir, Train)
			if err != nil {
				t.Fatal(err)
			}
			if d.N != 2 || d.C != c.c || d.H != c.h || d.W != c.w || d.Layout != LayoutNPZ || d.Floats != nil {
				t.Fatalf("got N=%d C=%d H=%d W=%d layout=%s", d.N, d.C, d.H, d.W, d.Layout)
			}
			if !bytes.Equal(d.Pixels, c.want) {
				t.Errorf("pixels %v, want %v", d.Pixels, c.want)
			}
			// Classes come from the largest label of both splits (6, in test.npz).
			if d.Labels[0] != 1 || d.Labels[1] != 4 || d.Classes != 7 {
				t.Errorf("labels %v classes %d", d.Labels, d.Classes)
			}
			te, err := Open(dir, Test)
			if err != nil {
				t.Fatal(err)
			}
			if te.N != 1 || te.Labels[0] != 6 || te.Classes != 7 {
				t.Errorf("test: N=%d labels=%v classes=%d", te.N, te.Labels, te.Classes)
			}
		})
	}
}

func TestNPZFloat(t *testing.T) {
	vals := []float32{-1.5, 0, 0.25, 3, 1e-3, 7, 8, 9} // 2 samples NHWC 2×2×... no: 2×1×2×2
	f64 := make([]byte, 0, 64)
	for _, v := range vals {
		f64 = binary.BigEndian.AppendUint64(f64, math.Float64bits(float64(v)))
	}
	y := npyBytes("<i4", false, []int{2}, []byte{0, 0, 0, 0, 1, 0, 0, 0})
	for _, c := range []struct {
		descr string
		data  []byte
	}{{"<f4", f32Bytes(vals)}, {">f8", f64}} {
		dir := t.TempDir()
		writeFile(t, dir, "train.npz", npzBytes(t, true, []string{"x", "y"}, map[string][]byte{
			"x": npyBytes(c.descr, false, []int{2, 1, 2, 2}, c.data), "y": y}))
		d, err := Open(dir, Train)
		if err != nil {
			t.Fatal(err)
		}
		if d.Pixels != nil || len(d.Floats) != 8 || d.C != 1 || d.Classes != 2 {
			t.Fatalf("%s: got C=%d classes=%d floats=%v", c.descr, d.C, d.Classes, d.Floats)
		}
		for i, v := range vals {
			if d.Floats[i] != v {
				t.Errorf("%s: value %d = %v, want %v", c.descr, i, d.Floats[i], v)
			}
		}
		_, err = Open(dir, Test)
		wantErr(t, err, "test.npz: missing", "no test split")
	}
}

func TestNPZKeras(t *testing.T) {
	dir := t.TempDir()
	arr := map[string][]byte{
		"x_train": npyBytes("|u1", false, []int{3, 2, 2}, pattern(12, 0)),
		"y_train": npyBytes("|u1", false, []int{3}, []byte{0, 1, 2}),
		"x_test":  npyBytes("|u1", false, []int{1, 2, 2}, pattern(4, 1)),
		"y_test":  npyBytes("|u1", false, []int{1}, []byte{9}),
	}
	writeFile(t, dir, "mnist.npz", npzBytes(t, false, []string{"x_test", "x_train", "y_train", "y_test"}, arr))
	d, err := Open(dir, Train)
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 3 || d.C != 1 || d.H != 2 || d.Classes != 10 || !bytes.Equal(d.Pixels, pattern(12, 0)) {
		t.Errorf("got N=%d C=%d H=%d classes=%d", d.N, d.C, d.H, d.Classes)
	}
	te, err := Open(dir, Test)
	if err != nil || te.N != 1 || te.Labels[0] != 9 {
		t.Errorf("test: %v", err)
	}
}

func TestNPZErrors(t *testing.T) {
	x := npyBytes("|u1", false, []int{2, 2, 2}, pattern(8, 0))
	y := npyBytes("<i8", false, []int{2}, i64Bytes([]int64{0, 1}))
	cases := []struct {
		name  string
		x, y  []byte
		opt   Options
		parts []string
	}{
		{"truncated x", x[:len(x)-3], y, Options{}, []string{"array x", "truncated", "(2, 2, 2)"}},
		{"truncated header", x[:20], y, Options{}, []string{"array x", "truncated"}},
		{"trailing x", append(bytes.Clone(x), 0), y, Options{}, []string{"array x", "1 bytes follow"}},
		{"bad magic", append([]byte("\x93NUMPZ"), x[6:]...), y, Options{}, []string{"array x", "bad magic"}},
		{"fortran", npyBytes("|u1", true, []int{2, 2, 2}, pattern(8, 0)), y, Options{}, []string{"Fortran order"}},
		{"int16 pixels", npyBytes("<i2", false, []int{2, 2, 2}, pattern(16, 0)), y, Options{}, []string{"dtype <i2", "want uint8"}},
		{"complex", npyBytes("<c8", false, []int{2, 2, 2}, pattern(64, 0)), y, Options{}, []string{`dtype "<c8"`}},
		{"flat x", npyBytes("|u1", false, []int{2, 4}, pattern(8, 0)), y, Options{}, []string{"shape (2, 4)"}},
		{"count mismatch", x, npyBytes("<i8", false, []int{3}, i64Bytes([]int64{0, 1, 1})), Options{}, []string{"array y holds 3 labels", "holds 2 samples"}},
		{"negative label", x, npyBytes("<i8", false, []int{2}, i64Bytes([]int64{0, -1})), Options{}, []string{"label -1 of sample 1"}},
		{"label over", x, y, Options{Classes: 1}, []string{"label 1 of sample 1", "[0, 1)"}},
		{"float labels", x, npyBytes("<f4", false, []int{2}, f32Bytes([]float32{0, 1})), Options{}, []string{"want integer labels"}},
		{"empty", npyBytes("|u1", false, []int{0, 2, 2}, nil), npyBytes("<i8", false, []int{0}, nil), Options{}, []string{"train split is empty"}},
		{"NaN", npyBytes("<f4", false, []int{2, 1, 1}, f32Bytes([]float32{0, float32(math.NaN())})), y, Options{}, []string{"element 1 is NaN"}},
		{"over limit", x, y, Options{MaxBytes: 4}, []string{"limit"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := writeFile(t, dir, "train.npz", npzBytes(t, true, []string{"x", "y"}, map[string][]byte{"x": c.x, "y": c.y}))
			_, err := OpenDir(dir, Train, c.opt)
			wantErr(t, err, append([]string{p + ":"}, c.parts...)...)
		})
	}
	t.Run("not a zip", func(t *testing.T) {
		dir := t.TempDir()
		p := writeFile(t, dir, "train.npz", x)
		_, err := Open(dir, Train)
		wantErr(t, err, p+":", "not a valid NPZ")
	})
	t.Run("missing array", func(t *testing.T) {
		dir := t.TempDir()
		p := writeFile(t, dir, "train.npz", npzBytes(t, false, []string{"x"}, map[string][]byte{"x": x}))
		_, err := Open(dir, Train)
		wantErr(t, err, p+":", `no array "y"`)
	})
}

func TestNPYHeader(t *testing.T) {
	// Version 2 header, double quotes, a list shape and no trailing comma.
	text := `{"descr": "<u2", "shape": [3, 4], "fortran_order": False}` + "\n"
	b := []byte("\x93NUMPY\x02\x00")
	b = binary.LittleEndian.AppendUint32(b, uint32(len(text)))
	b = append(b, text...)
	h, err := readNPYHeader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if h.kind != 'u' || h.size != 2 || len(h.shape) != 2 || h.shape[0] != 3 || h.shape[1] != 4 || h.len != int64(len(b)) {
		t.Errorf("got %+v", h)
	}
	for _, bad := range []string{
		"{'descr': '<u1', 'fortran_order': False}",                          // no shape
		"{'descr': '<u1', 'fortran_order': False, 'shape': (-1,)}",          // negative
		"{'descr': [('a', '<u1')], 'fortran_order': False, 'shape': (1,)}",  // structured
		"{'descr': '<u1', 'fortran_order': False, 'shape': (1,), ",          // unterminated
		"{'descr': '<u1', 'fortran_order': False, 'shape': (99999999999,)}", // absurd
	} {
		b := []byte("\x93NUMPY\x01\x00")
		b = binary.LittleEndian.AppendUint16(b, uint16(len(bad)))
		if _, err := readNPYHeader(bytes.NewReader(append(b, bad...))); err == nil {
			t.Errorf("header %s: no error", bad)
		}
	}
}
