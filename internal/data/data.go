// Package data loads image classification data sets (IDX, CIFAR binary batches, image
// folders, NPZ arrays, and the embedded Fashion-MNIST subset) into memory and turns them
// into normalized, optionally augmented float32 batches.
//
// Samples are kept as raw bytes (or as float32 when an NPZ file stores floats) in CHW
// order; conversion to float happens per batch. Every loader error is one line that
// names the file and the problem.
package data

import (
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"path"
	"path/filepath"
)

// Split selects the part of a data set to load.
type Split int

// The two splits every layout provides.
const (
	Train Split = iota
	Test
)

// String returns "train" or "test".
func (s Split) String() string {
	switch s {
	case Train:
		return "train"
	case Test:
		return "test"
	}
	return fmt.Sprintf("Split(%d)", int(s))
}

// Layout names the on-disk format a data set was loaded from.
type Layout string

// The layouts Open recognizes.
const (
	LayoutIDX      Layout = "idx"
	LayoutCIFAR10  Layout = "cifar10"
	LayoutCIFAR100 Layout = "cifar100"
	LayoutFolder   Layout = "folder"
	LayoutNPZ      Layout = "npz"
)

// Dataset holds N samples of C×H×W values with one integer label each.
//
// Pixels holds raw 0..255 bytes, scaled by 1/255 when batched; Floats holds values used
// as they are (no 1/255 scaling), as stored by a float NPZ file. Both are laid out sample
// by sample, each sample CHW. Exactly one of them is set, except for image folders, which
// hold neither: their images are decoded when batched (Fit, Err).
type Dataset struct {
	N, C, H, W int
	Classes    int       // labels are in [0, Classes)
	Pixels     []uint8   // N*C*H*W raw pixel values, or nil
	Floats     []float32 // N*C*H*W float values, or nil
	Labels     []int32   // N labels

	ClassNames []string // class names when the layout has them (image folders), else nil
	Source     string   // where the data came from (a directory or "embedded"), for messages
	Layout     Layout

	photos *photoSet // an image folder's files, decoded on demand
}

// SampleSize returns C*H*W, the number of values of one sample.
func (d *Dataset) SampleSize() int { return d.C * d.H * d.W }

// Validate reports whether the samples have the shape c×h×w a model expects.
func (d *Dataset) Validate(c, h, w int) error {
	if d.C == c && d.H == h && d.W == w {
		return nil
	}
	return fmt.Errorf("%s: data has %d×%d×%d images, model expects %d×%d×%d", d.Source, d.C, d.H, d.W, c, h, w)
}

// check verifies the internal consistency of d: which buffer is set and the lengths.
func (d *Dataset) check() error {
	want := d.N * d.SampleSize()
	switch {
	case d.photos != nil && (d.Pixels != nil || d.Floats != nil || len(d.photos.idx) != d.N):
		return fmt.Errorf("%s: internal error: an image folder holds %d of %d files and pixel buffers", d.Source, len(d.photos.idx), d.N)
	case d.photos != nil:
	case (d.Pixels == nil) == (d.Floats == nil):
		return fmt.Errorf("%s: internal error: exactly one of Pixels and Floats must be set", d.Source)
	case d.Pixels != nil && len(d.Pixels) != want, d.Floats != nil && len(d.Floats) != want:
		return fmt.Errorf("%s: internal error: sample buffer length does not match %d×%d×%d×%d", d.Source, d.N, d.C, d.H, d.W)
	case len(d.Labels) != d.N:
		return fmt.Errorf("%s: internal error: %d labels for %d samples", d.Source, len(d.Labels), d.N)
	}
	return nil
}

// DefaultMaxBytes is the default bound on the in-memory size of one loaded split.
const DefaultMaxBytes int64 = 4 << 30

// Options adjusts loading. The zero value is ready to use.
type Options struct {
	// Classes, when positive, fixes the number of classes; a label outside
	// [0, Classes) is then an error. When zero the count comes from the layout
	// (10 for CIFAR-10, 100 for CIFAR-100, the number of class folders) or, for IDX
	// and NPZ, is one more than the largest label found in either split.
	Classes int
	// MaxBytes bounds the in-memory size of the loaded samples; file headers that
	// claim more are refused before anything is allocated. Zero means DefaultMaxBytes.
	// Image folders, decoded on demand, are bounded by CacheBytes instead.
	MaxBytes int64

	// Image folders only. CacheBytes bounds the decoded images kept between batches
	// (0: DefaultCacheBytes; a loader raises it to three of its batches). MaxImagePixels
	// bounds one image's pixels, checked on its header before decoding (0:
	// DefaultMaxImagePixels). CropFraction is the part of the resized image the center
	// crop keeps (0: 1, the crop fills the shorter side; ImageNet models are usually
	// evaluated at 0.875, 224 of 256). Workers is the number of images decoded at once
	// (0: GOMAXPROCS).
	CacheBytes     int64
	MaxImagePixels int64
	CropFraction   float64
	Workers        int
}

func (o Options) maxBytes() int64 {
	if o.MaxBytes <= 0 {
		return DefaultMaxBytes
	}
	return o.MaxBytes
}

// source names files inside the file system a loader reads, for error messages.
type source struct {
	root   string // directory shown to users, or "embedded"
	native bool   // root is an OS directory: join with filepath
}

// name returns how the fs.FS path p is shown to users.
func (s source) name(p string) string {
	if s.native {
		return filepath.Join(s.root, filepath.FromSlash(p))
	}
	if p = path.Clean(p); p == "." {
		return s.root
	}
	return s.root + ":" + p
}

// errf returns an error "FILE: problem".
func (s source) errf(p, format string, args ...any) error {
	return fmt.Errorf("%s: %s", s.name(p), fmt.Sprintf(format, args...))
}

// checkLabels returns an error naming file p when a label is outside [0, classes).
func (s source) checkLabels(p string, labels []int32, classes int) error {
	for i, l := range labels {
		if l < 0 || int(l) >= classes {
			return s.errf(p, "label %d of sample %d is outside [0, %d)", l, i, classes)
		}
	}
	return nil
}

// checkSize returns an error naming file p when n samples of c×h×w values of elemSize
// bytes each would exceed limit.
func (s source) checkSize(p string, n, c, h, w, elemSize int, limit int64) error {
	total, over := uint64(elemSize), false
	for _, d := range []int{n, c, h, w} {
		if d < 0 {
			return s.errf(p, "negative dimension %d", d)
		}
		hi, lo := bits.Mul64(total, uint64(d))
		over = over || hi != 0
		total = lo
	}
	if over || total > uint64(limit) {
		need := fmt.Sprintf("%d bytes", total)
		if over {
			need = "more than 2^64 bytes"
		}
		return s.errf(p, "%d×%d×%d×%d samples would need %s, more than the %d-byte limit", n, c, h, w, need, limit)
	}
	return nil
}

// fsErr strips the path from a *fs.PathError, whose path the caller prints itself.
func fsErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, fs.ErrNotExist) {
			return errors.New("missing")
		}
		return pe.Err
	}
	return err
}
