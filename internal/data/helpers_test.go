package data

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFile writes b to dir/name, creating folders.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// idxBytes encodes an unsigned-byte IDX file.
func idxBytes(dims []int, data []byte) []byte {
	b := []byte{0, 0, 0x08, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, uint32(d))
	}
	return append(b, data...)
}

// pattern returns n deterministic bytes.
func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed*31 + i/13)
	}
	return b
}

// writeIDXSet writes an IDX data set with the given train and test labels and h×w
// images, raw or gzipped; it returns the image bytes of both splits.
func writeIDXSet(t *testing.T, dir string, gzipped bool, h, w int, trainLabels, testLabels []byte) (trainPix, testPix []byte) {
	t.Helper()
	ext := ""
	enc := func(b []byte) []byte { return b }
	if gzipped {
		ext = ".gz"
		enc = func(b []byte) []byte { return gz(t, b) }
	}
	trainPix = pattern(len(trainLabels)*h*w, 1)
	testPix = pattern(len(testLabels)*h*w, 2)
	writeFile(t, dir, "train-images-idx3-ubyte"+ext, enc(idxBytes([]int{len(trainLabels), h, w}, trainPix)))
	writeFile(t, dir, "train-labels-idx1-ubyte"+ext, enc(idxBytes([]int{len(trainLabels)}, trainLabels)))
	writeFile(t, dir, "t10k-images-idx3-ubyte"+ext, enc(idxBytes([]int{len(testLabels), h, w}, testPix)))
	writeFile(t, dir, "t10k-labels-idx1-ubyte"+ext, enc(idxBytes([]int{len(testLabels)}, testLabels)))
	return trainPix, testPix
}

// npyBytes encodes an NPY version 1.0 array with the given dtype and shape.
func npyBytes(descr string, fortran bool, shape []int, data []byte) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	s := strings.Join(dims, ", ")
	if len(shape) == 1 {
		s += ","
	}
	f := "False"
	if fortran {
		f = "True"
	}
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }", descr, f, s)
	for (10+len(header)+1)%64 != 0 {
		header += " "
	}
	header += "\n"
	b := []byte("\x93NUMPY\x01\x00")
	b = binary.LittleEndian.AppendUint16(b, uint16(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// npzBytes zips arrays (name → NPY bytes) in the given order.
func npzBytes(t *testing.T, compress bool, names []string, arrays map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		method := zip.Store
		if compress {
			method = zip.Deflate
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n + ".npy", Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(arrays[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func f32Bytes(v []float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func i64Bytes(v []int64) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, uint64(x))
	}
	return b
}

// wantErr fails unless err is non-nil, one line, and contains every part.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error; want one containing %q", parts)
	}
	msg := err.Error()
	t.Log(msg)
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not contain %q", msg, p)
		}
	}
}
