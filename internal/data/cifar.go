package data

import (
	"bufio"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// CIFAR binary batches: fixed-size records of label byte(s) followed by 32×32×3 pixel
// bytes in CHW order (1024 red, 1024 green, 1024 blue).

const cifarPixels = 3 * 32 * 32

// cifarFormat describes CIFAR-10 or CIFAR-100 files.
type cifarFormat struct {
	layout     Layout
	name       string // for messages
	subdir     string // the folder the official archive extracts to
	labelBytes int    // label bytes per record; the last one is used
	classes    int
	trainGlob  string
	testFile   string
	namesFile  string // class names, one per line
}

var (
	cifar10 = cifarFormat{
		layout: LayoutCIFAR10, name: "CIFAR-10", subdir: "cifar-10-batches-bin",
		labelBytes: 1, classes: 10, trainGlob: "data_batch_*.bin", testFile: "test_batch.bin",
		namesFile: "batches.meta.txt",
	}
	// CIFAR-100 records hold a coarse then a fine label; the fine label is used.
	cifar100 = cifarFormat{
		layout: LayoutCIFAR100, name: "CIFAR-100", subdir: "cifar-100-binary",
		labelBytes: 2, classes: 100, trainGlob: "train.bin", testFile: "test.bin",
		namesFile: "fine_label_names.txt",
	}
)

// files returns the split's files under dir, training batches in numeric order.
func (cf cifarFormat) files(fsys fs.FS, dir string, split Split) []string {
	if split == Test {
		if _, ok := firstExisting(fsys, []string{path.Join(dir, cf.testFile)}); ok {
			return []string{path.Join(dir, cf.testFile)}
		}
		return nil
	}
	matches, _ := fs.Glob(fsys, path.Join(dir, cf.trainGlob))
	sort.Slice(matches, func(i, j int) bool { return batchNumber(matches[i]) < batchNumber(matches[j]) })
	return matches
}

// batchNumber extracts k from ".../data_batch_k.bin" (0 when there is none).
func batchNumber(p string) int {
	base := strings.TrimSuffix(path.Base(p), ".bin")
	i := strings.LastIndexByte(base, '_')
	k, _ := strconv.Atoi(base[i+1:])
	return k
}

// detectCIFAR returns the folder (".", or the archive's subfolder) holding files of
// format cf, if any.
func detectCIFAR(fsys fs.FS, cf cifarFormat) (string, bool) {
	for _, dir := range []string{".", cf.subdir} {
		if len(cf.files(fsys, dir, Train)) > 0 || len(cf.files(fsys, dir, Test)) > 0 {
			return dir, true
		}
	}
	return "", false
}

// loadCIFAR loads a split of CIFAR-10 or CIFAR-100 binary batches from dir.
func loadCIFAR(fsys fs.FS, src source, dir string, cf cifarFormat, split Split, opt Options) (*Dataset, error) {
	files := cf.files(fsys, dir, split)
	if len(files) == 0 {
		want := cf.testFile
		if split == Train {
			want = cf.trainGlob
		}
		return nil, src.errf(dir, "%s data set has no %s split: %s is missing", cf.name, split, want)
	}
	rec := int64(cf.labelBytes + cifarPixels)
	n := 0
	for _, f := range files {
		st, err := fs.Stat(fsys, f)
		if err != nil {
			return nil, src.errf(f, "%v", fsErr(err))
		}
		if st.Size() == 0 {
			return nil, src.errf(f, "empty file: the %s split is empty", split)
		}
		if st.Size()%rec != 0 {
			return nil, src.errf(f, "truncated or not a %s batch: %d bytes is not a whole number of %d-byte records", cf.name, st.Size(), rec)
		}
		n += int(st.Size() / rec)
	}
	if err := src.checkSize(files[0], n, 3, 32, 32, 1, opt.maxBytes()); err != nil {
		return nil, err
	}
	classes := cf.classes
	if opt.Classes > 0 {
		classes = opt.Classes
	}
	d := &Dataset{N: n, C: 3, H: 32, W: 32, Classes: classes, Layout: cf.layout,
		Pixels: make([]uint8, n*cifarPixels), Labels: make([]int32, n)}
	k := 0
	lbl := make([]byte, cf.labelBytes)
	for _, f := range files {
		if err := func() error {
			fh, err := fsys.Open(f)
			if err != nil {
				return src.errf(f, "%v", fsErr(err))
			}
			defer fh.Close()
			r := bufio.NewReaderSize(fh, 1<<20)
			for first := k; ; k++ {
				if _, err := io.ReadFull(r, lbl); err == io.EOF {
					return nil
				} else if err != nil {
					return src.errf(f, "truncated in record %d: %v", k-first, err)
				}
				if k >= n {
					return src.errf(f, "file grew while being read")
				}
				if _, err := io.ReadFull(r, d.Pixels[k*cifarPixels:(k+1)*cifarPixels]); err != nil {
					return src.errf(f, "truncated in record %d: %v", k-first, err)
				}
				l := int(lbl[cf.labelBytes-1])
				if l >= classes {
					return src.errf(f, "label %d of record %d is outside [0, %d)", l, k-first, classes)
				}
				d.Labels[k] = int32(l)
			}
		}(); err != nil {
			return nil, err
		}
	}
	if k != n {
		return nil, src.errf(files[len(files)-1], "truncated: read %d of %d records", k, n)
	}
	d.ClassNames = readClassNames(fsys, path.Join(dir, cf.namesFile), classes)
	return d, nil
}

// readClassNames returns the non-empty lines of p when there are exactly classes of
// them, else nil.
func readClassNames(fsys fs.FS, p string, classes int) []string {
	b, err := fs.ReadFile(fsys, p)
	if err != nil || len(b) > 1<<20 {
		return nil
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	if len(names) != classes {
		return nil
	}
	return names
}
