package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// IDX files (MNIST, Fashion-MNIST): a 4-byte magic (0, 0, type, ndim), ndim big-endian
// uint32 dimensions, then the data. Only unsigned-byte data (type 0x08) is accepted:
// images have 3 dimensions (N, H, W), labels 1 (N).

const idxUint8 = 0x08

// idxPrefix returns the file-name prefix of a split: "train" or "t10k".
func idxPrefix(split Split) string {
	if split == Test {
		return "t10k"
	}
	return "train"
}

// idxCandidates lists the accepted names of a split's images ("images", 3) or labels
// ("labels", 1) file, raw and gzipped, with "-" or "." before "idx".
func idxCandidates(split Split, kind string, ndim int) []string {
	p := idxPrefix(split)
	var names []string
	for _, sep := range []string{"-", "."} {
		base := fmt.Sprintf("%s-%s%sidx%d-ubyte", p, kind, sep, ndim)
		names = append(names, base, base+".gz")
	}
	return names
}

// firstExisting returns the first of names that exists as a regular file in fsys.
func firstExisting(fsys fs.FS, names []string) (string, bool) {
	for _, n := range names {
		if st, err := fs.Stat(fsys, n); err == nil && st.Mode().IsRegular() {
			return n, true
		}
	}
	return "", false
}

// hasIDX reports whether fsys holds IDX image files of either split.
func hasIDX(fsys fs.FS) bool {
	_, tr := firstExisting(fsys, idxCandidates(Train, "images", 3))
	_, te := firstExisting(fsys, idxCandidates(Test, "images", 3))
	return tr || te
}

// payload is an opened file whose content may be gzip-compressed.
type payload struct {
	f       fs.File
	r       io.Reader
	rawSize int64 // file size when not compressed, else -1
	read    int64 // bytes consumed so far (of the decompressed stream)
}

// openPayload opens p in fsys, transparently decompressing gzip content.
func openPayload(fsys fs.FS, src source, p string) (*payload, error) {
	f, st, err := openStat(fsys, src, p)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	pl := &payload{f: f, r: br, rawSize: st.Size()}
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, src.errf(p, "corrupt gzip data: %v", err)
		}
		pl.r, pl.rawSize = zr, -1
	}
	return pl, nil
}

func (pl *payload) Close() error { return pl.f.Close() }

// readFull reads len(b) bytes; what names the content for the truncation message.
func (pl *payload) readFull(src source, p string, b []byte, what string) error {
	n, err := io.ReadFull(pl.r, b)
	pl.read += int64(n)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		unit := "bytes"
		if pl.rawSize < 0 {
			unit = "decompressed bytes"
		}
		return src.errf(p, "truncated: data ends after %d %s, inside the %s", pl.read, unit, what)
	default:
		return src.errf(p, "read error: %v", err)
	}
}

// expectEnd returns an error when content remains after the described data.
func (pl *payload) expectEnd(src source, p string) error {
	if pl.rawSize >= 0 {
		if pl.rawSize > pl.read {
			return src.errf(p, "%d bytes follow the data its header describes", pl.rawSize-pl.read)
		}
		return nil
	}
	var one [1]byte
	n, err := io.ReadFull(pl.r, one[:])
	switch {
	case n > 0:
		return src.errf(p, "data continues after the %d bytes its header describes", pl.read)
	case errors.Is(err, io.EOF):
		return nil
	default:
		return src.errf(p, "corrupt gzip data: %v", err)
	}
}

// readIDXHeader reads and checks an IDX header of unsigned bytes with ndim dimensions.
func readIDXHeader(pl *payload, src source, p string, ndim int) ([]int, error) {
	var head [4]byte
	if err := pl.readFull(src, p, head[:], "header"); err != nil {
		return nil, err
	}
	if head[0] != 0 || head[1] != 0 {
		return nil, src.errf(p, "not an IDX file: bad magic number %#08x", binary.BigEndian.Uint32(head[:]))
	}
	if head[2] != idxUint8 {
		return nil, src.errf(p, "IDX data type %#02x is not supported; want unsigned bytes (0x08)", head[2])
	}
	if int(head[3]) != ndim {
		return nil, src.errf(p, "IDX file has %d dimensions; want %d (magic %#08x)", head[3], ndim, 0x800|ndim)
	}
	buf := make([]byte, 4*ndim)
	if err := pl.readFull(src, p, buf, "header"); err != nil {
		return nil, err
	}
	dims := make([]int, ndim)
	for i := range dims {
		v := binary.BigEndian.Uint32(buf[4*i:])
		if v > 1<<31-1 {
			return nil, src.errf(p, "absurd dimension %d in IDX header", v)
		}
		dims[i] = int(v)
	}
	return dims, nil
}

// checkPayloadSize returns an error when an uncompressed file is shorter than its
// header plus n data bytes, before the data is allocated.
func (pl *payload) checkPayloadSize(src source, p string, n int64, what string) error {
	if pl.rawSize >= 0 && pl.rawSize < pl.read+n {
		return src.errf(p, "truncated: header promises %s (%d bytes) but the file has %d bytes", what, pl.read+n, pl.rawSize)
	}
	return nil
}

// readIDXLabels reads a whole labels file.
func readIDXLabels(fsys fs.FS, src source, p string, limit int64) ([]int32, error) {
	pl, err := openPayload(fsys, src, p)
	if err != nil {
		return nil, err
	}
	defer pl.Close()
	dims, err := readIDXHeader(pl, src, p, 1)
	if err != nil {
		return nil, err
	}
	n := dims[0]
	what := fmt.Sprintf("%d labels", n)
	if err := pl.checkPayloadSize(src, p, int64(n), what); err != nil {
		return nil, err
	}
	if int64(n) > limit {
		return nil, src.errf(p, "%d labels exceed the %d-byte limit", n, limit)
	}
	raw := make([]byte, n)
	if err := pl.readFull(src, p, raw, what); err != nil {
		return nil, err
	}
	if err := pl.expectEnd(src, p); err != nil {
		return nil, err
	}
	labels := make([]int32, n)
	for i, b := range raw {
		labels[i] = int32(b)
	}
	return labels, nil
}

// idxMaxLabel returns the largest label of a split's labels file, or -1 when it is
// missing or unreadable (loading that split will report the problem).
func idxMaxLabel(fsys fs.FS, src source, split Split, limit int64) int {
	p, ok := firstExisting(fsys, idxCandidates(split, "labels", 1))
	if !ok {
		return -1
	}
	labels, err := readIDXLabels(fsys, src, p, limit)
	if err != nil {
		return -1
	}
	return maxLabel(labels)
}

func maxLabel(labels []int32) int {
	m := -1
	for _, l := range labels {
		m = max(m, int(l))
	}
	return m
}

// loadIDX loads a split of an IDX data set (train-* or t10k-* files).
func loadIDX(fsys fs.FS, src source, split Split, opt Options) (*Dataset, error) {
	imgNames := idxCandidates(split, "images", 3)
	lblNames := idxCandidates(split, "labels", 1)
	imgName, ok := firstExisting(fsys, imgNames)
	if !ok {
		return nil, src.errf(".", "IDX data set has no %s split: %s[.gz] is missing", split, imgNames[0])
	}
	lblName, ok := firstExisting(fsys, lblNames)
	if !ok {
		return nil, src.errf(".", "IDX data set has %s but %s[.gz] is missing", imgName, lblNames[0])
	}

	pl, err := openPayload(fsys, src, imgName)
	if err != nil {
		return nil, err
	}
	defer pl.Close()
	dims, err := readIDXHeader(pl, src, imgName, 3)
	if err != nil {
		return nil, err
	}
	n, h, w := dims[0], dims[1], dims[2]
	if n == 0 {
		return nil, src.errf(imgName, "holds no images: the %s split is empty", split)
	}
	if h == 0 || w == 0 {
		return nil, src.errf(imgName, "images have size %d×%d", h, w)
	}
	if err := src.checkSize(imgName, n, 1, h, w, 1, opt.maxBytes()); err != nil {
		return nil, err
	}
	what := fmt.Sprintf("%d images of %d×%d", n, h, w)
	size := int64(n) * int64(h) * int64(w)
	if err := pl.checkPayloadSize(src, imgName, size, what); err != nil {
		return nil, err
	}

	labels, err := readIDXLabels(fsys, src, lblName, opt.maxBytes())
	if err != nil {
		return nil, err
	}
	if len(labels) != n {
		return nil, src.errf(lblName, "holds %d labels but %s holds %d images", len(labels), imgName, n)
	}

	pixels := make([]byte, size)
	if err := pl.readFull(src, imgName, pixels, what); err != nil {
		return nil, err
	}
	if err := pl.expectEnd(src, imgName); err != nil {
		return nil, err
	}

	classes := opt.Classes
	if classes <= 0 {
		other := Test
		if split == Test {
			other = Train
		}
		classes = max(maxLabel(labels), idxMaxLabel(fsys, src, other, opt.maxBytes())) + 1
	}
	if err := src.checkLabels(lblName, labels, classes); err != nil {
		return nil, err
	}
	return &Dataset{N: n, C: 1, H: h, W: w, Classes: classes, Pixels: pixels, Labels: labels, Layout: LayoutIDX}, nil
}

// openStat opens p in fsys and stats it; errors name the file.
func openStat(fsys fs.FS, src source, p string) (fs.File, fs.FileInfo, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, nil, src.errf(p, "%v", fsErr(err))
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, src.errf(p, "%v", fsErr(err))
	}
	return f, st, nil
}
