package data

import (
	"archive/zip"
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"math"
	"sort"
)

// NPZ archives (numpy.savez / savez_compressed). Two arrangements are recognized:
//
//   - train.npz and test.npz, each with arrays x and y;
//   - a single NAME.npz with x_train, y_train, x_test and y_test (as keras.datasets ships).
//
// x is uint8 (raw pixels, scaled by 1/255 when batched) or float32/float64 (used as is),
// shaped N×H×W (grayscale), N×C×H×W, or N×H×W×C. Channels-last is assumed when the last
// dimension is 1 or 3 and the second is not. y holds integer labels, shaped N or N×1.

// npzFiles returns the .npz files in the top folder, sorted.
func npzFiles(fsys fs.FS) []string {
	m, _ := fs.Glob(fsys, "*.npz")
	sort.Strings(m)
	return m
}

func hasNPZ(fsys fs.FS) bool { return len(npzFiles(fsys)) > 0 }

// planNPZ decides which archive and arrays hold split.
func planNPZ(fsys fs.FS, src source, split Split) (file, x, y, otherFile, otherY string, err error) {
	other := Test
	if split == Test {
		other = Train
	}
	files := npzFiles(fsys)
	pair := false
	for _, f := range files {
		if f == "train.npz" || f == "test.npz" {
			pair = true
		}
	}
	switch {
	case pair:
		file = split.String() + ".npz"
		if _, ok := firstExisting(fsys, []string{file}); !ok {
			return "", "", "", "", "", src.errf(file, "missing: the NPZ data set has no %s split", split)
		}
		return file, "x", "y", other.String() + ".npz", "y", nil
	case len(files) == 1:
		f := files[0]
		return f, "x_" + split.String(), "y_" + split.String(), f, "y_" + other.String(), nil
	default:
		return "", "", "", "", "", src.errf(".", "found %d .npz files (%s, …); want train.npz and test.npz, or one file with x_train, y_train, x_test, y_test", len(files), files[0])
	}
}

// npzArchive is an opened NPZ file.
type npzArchive struct {
	zr *zip.Reader
	f  fs.File
}

func openNPZ(fsys fs.FS, src source, p string, limit int64) (*npzArchive, error) {
	f, st, err := openStat(fsys, src, p)
	if err != nil {
		return nil, err
	}
	ra, ok := f.(io.ReaderAt)
	if !ok {
		if st.Size() > limit {
			f.Close()
			return nil, src.errf(p, "%d bytes exceed the %d-byte limit", st.Size(), limit)
		}
		b, err := io.ReadAll(f)
		if err != nil {
			f.Close()
			return nil, src.errf(p, "read error: %v", err)
		}
		ra = bytesReaderAt(b)
	}
	zr, err := zip.NewReader(ra, st.Size())
	if err != nil {
		f.Close()
		return nil, src.errf(p, "not a valid NPZ (zip) archive: %v", err)
	}
	return &npzArchive{zr: zr, f: f}, nil
}

func (a *npzArchive) Close() error { return a.f.Close() }

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// array is one NPY member of an archive, opened at its data.
type array struct {
	*npyHeader
	r     io.Reader
	rc    io.Closer
	where string // "array x of" for messages
}

// open opens array name (stored as name.npy) and checks its size against its header.
func (a *npzArchive) open(src source, p, name string, limit int64) (*array, error) {
	var zf *zip.File
	for _, f := range a.zr.File {
		if f.Name == name+".npy" || f.Name == name {
			zf = f
			break
		}
	}
	if zf == nil {
		var names []string
		for _, f := range a.zr.File {
			names = append(names, f.Name)
		}
		return nil, src.errf(p, "has no array %q (it holds %v)", name, names)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, src.errf(p, "array %s: %v", name, err)
	}
	br := bufio.NewReaderSize(rc, 1<<20)
	h, err := readNPYHeader(br)
	if err != nil {
		rc.Close()
		return nil, src.errf(p, "array %s: %v", name, err)
	}
	n := h.elems(limit)
	if n < 0 {
		rc.Close()
		return nil, src.errf(p, "array %s: shape %s exceeds the %d-byte limit", name, h.shapeString(), limit)
	}
	want := h.len + n*int64(h.size)
	switch got := int64(zf.UncompressedSize64); {
	case got < want:
		rc.Close()
		return nil, src.errf(p, "array %s: truncated: shape %s %s needs %d bytes, the member has %d", name, h.shapeString(), h.descr, want, got)
	case got > want:
		rc.Close()
		return nil, src.errf(p, "array %s: %d bytes follow the data of shape %s %s", name, got-want, h.shapeString(), h.descr)
	}
	return &array{npyHeader: h, r: br, rc: rc, where: fmt.Sprintf("array %s", name)}, nil
}

// labels reads an integer label array of shape (N) or (N, 1).
func (a *npzArchive) labels(src source, p, name string, limit int64) ([]int32, error) {
	arr, err := a.open(src, p, name, limit)
	if err != nil {
		return nil, err
	}
	defer arr.rc.Close()
	if !(len(arr.shape) == 1 || len(arr.shape) == 2 && arr.shape[1] == 1) {
		return nil, src.errf(p, "%s has shape %s; want (N,) labels", arr.where, arr.shapeString())
	}
	if arr.kind == 'f' {
		return nil, src.errf(p, "%s has dtype %s; want integer labels", arr.where, arr.descr)
	}
	vals, err := readNPYInts(arr.r, arr.npyHeader, arr.shape[0])
	if err != nil {
		return nil, src.errf(p, "%s: %v", arr.where, err)
	}
	out := make([]int32, len(vals))
	for i, v := range vals {
		if v < 0 {
			return nil, src.errf(p, "%s: label %d of sample %d is negative", arr.where, v, i)
		}
		if v > math.MaxInt32 {
			return nil, src.errf(p, "%s: label %d of sample %d is absurdly large", arr.where, v, i)
		}
		out[i] = int32(v)
	}
	return out, nil
}

// loadNPZ loads a split of an NPZ data set.
func loadNPZ(fsys fs.FS, src source, split Split, opt Options) (*Dataset, error) {
	file, xName, yName, otherFile, otherY, err := planNPZ(fsys, src, split)
	if err != nil {
		return nil, err
	}
	limit := opt.maxBytes()
	a, err := openNPZ(fsys, src, file, limit)
	if err != nil {
		return nil, err
	}
	defer a.Close()

	labels, err := a.labels(src, file, yName, limit)
	if err != nil {
		return nil, err
	}
	x, err := a.open(src, file, xName, limit)
	if err != nil {
		return nil, err
	}
	defer x.rc.Close()
	d := &Dataset{Layout: LayoutNPZ, Labels: labels}
	nhwc := false
	switch s := x.shape; len(s) {
	case 3:
		d.N, d.C, d.H, d.W = s[0], 1, s[1], s[2]
	case 4:
		nhwc = (s[3] == 1 || s[3] == 3) && s[1] != 1 && s[1] != 3
		if nhwc {
			d.N, d.C, d.H, d.W = s[0], s[3], s[1], s[2]
		} else {
			d.N, d.C, d.H, d.W = s[0], s[1], s[2], s[3]
		}
	default:
		return nil, src.errf(file, "%s has shape %s; want N×H×W, N×C×H×W or N×H×W×C", x.where, x.shapeString())
	}
	if d.N == 0 {
		return nil, src.errf(file, "%s has no samples: the %s split is empty", x.where, split)
	}
	if d.C == 0 || d.H == 0 || d.W == 0 {
		return nil, src.errf(file, "%s has shape %s: empty samples", x.where, x.shapeString())
	}
	if len(labels) != d.N {
		return nil, src.errf(file, "array %s holds %d labels but %s holds %d samples", yName, len(labels), x.where, d.N)
	}
	total := d.N * d.SampleSize()
	switch {
	case x.kind == 'u' && x.size == 1:
		d.Pixels = make([]uint8, total)
		if _, err := io.ReadFull(x.r, d.Pixels); err != nil {
			return nil, src.errf(file, "%s: %v", x.where, truncated(err, 0))
		}
		if nhwc {
			d.Pixels = toNCHW(d.Pixels, d.N, d.C, d.H, d.W)
		}
	case x.kind == 'f':
		if d.Floats, err = readNPYFloats(x.r, x.npyHeader, total); err != nil {
			return nil, src.errf(file, "%s: %v", x.where, err)
		}
		for i, v := range d.Floats {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, src.errf(file, "%s: element %d is %v", x.where, i, v)
			}
		}
		if nhwc {
			d.Floats = toNCHW(d.Floats, d.N, d.C, d.H, d.W)
		}
	default:
		return nil, src.errf(file, "%s has dtype %s; want uint8 pixels or float32/float64 values", x.where, x.descr)
	}

	d.Classes = opt.Classes
	if d.Classes <= 0 {
		d.Classes = maxLabel(labels) + 1
		if om := npzMaxLabel(fsys, src, otherFile, otherY, limit); om+1 > d.Classes {
			d.Classes = om + 1
		}
	}
	if err := src.checkLabels(file, labels, d.Classes); err != nil {
		return nil, err
	}
	return d, nil
}

// npzMaxLabel returns the largest label of array name in file, or -1 when it cannot be
// read (loading that split reports the problem).
func npzMaxLabel(fsys fs.FS, src source, file, name string, limit int64) int {
	a, err := openNPZ(fsys, src, file, limit)
	if err != nil {
		return -1
	}
	defer a.Close()
	labels, err := a.labels(src, file, name, limit)
	if err != nil {
		return -1
	}
	return maxLabel(labels)
}

// toNCHW returns the N×H×W×C array v transposed to N×C×H×W.
func toNCHW[T uint8 | float32](v []T, n, c, h, w int) []T {
	out := make([]T, len(v))
	plane := h * w
	for s := range n {
		src := v[s*c*plane : (s+1)*c*plane]
		dst := out[s*c*plane : (s+1)*c*plane]
		for i := range plane {
			for ch := range c {
				dst[ch*plane+i] = src[i*c+ch]
			}
		}
	}
	return out
}
