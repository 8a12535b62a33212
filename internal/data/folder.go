package data

import (
	"bytes"
	"image"
	"image/color"
	_ "image/jpeg" // register the JPEG decoder
	_ "image/png"  // register the PNG decoder
	"io/fs"
	"path"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// Image folders: DIR/train/<class>/*.png|jpg|jpeg and DIR/test/<class>/... . Classes are
// the sorted names of train's subfolders; names starting with "." are ignored, as are
// files with other extensions. The first image decides the channel count (1 for
// grayscale, else 3); the others are converted to it. All images must have the same size.

// isImageFile reports whether name has a PNG or JPEG extension.
func isImageFile(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// subdirs returns the sorted names of the non-hidden folders in dir.
func subdirs(fsys fs.FS, dir string) ([]string, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func isDir(fsys fs.FS, p string) bool {
	st, err := fs.Stat(fsys, p)
	return err == nil && st.IsDir()
}

// hasFolder reports whether fsys looks like an image folder: train/ or test/ with
// class subfolders.
func hasFolder(fsys fs.FS) bool {
	for _, s := range []string{"train", "test"} {
		if names, err := subdirs(fsys, s); err == nil && len(names) > 0 {
			return true
		}
	}
	return false
}

// imageFile is one image and its class.
type imageFile struct {
	path  string
	label int32
}

// loadFolder loads a split of an image folder.
func loadFolder(fsys fs.FS, src source, split Split, opt Options) (*Dataset, error) {
	dir := split.String()
	if !isDir(fsys, dir) {
		return nil, src.errf(dir, "image folder has no %s/ folder", dir)
	}
	classDir := "train"
	if !isDir(fsys, classDir) {
		classDir = dir
	}
	classes, err := subdirs(fsys, classDir)
	if err != nil {
		return nil, src.errf(classDir, "%v", fsErr(err))
	}
	if len(classes) == 0 {
		return nil, src.errf(classDir, "has no class subfolders")
	}
	nclass := len(classes)
	if opt.Classes > 0 {
		if opt.Classes < nclass {
			return nil, src.errf(classDir, "has %d class folders but the class count is set to %d", nclass, opt.Classes)
		}
		nclass = opt.Classes
	}
	index := make(map[string]int32, len(classes))
	for i, c := range classes {
		index[c] = int32(i)
	}
	present, err := subdirs(fsys, dir)
	if err != nil {
		return nil, src.errf(dir, "%v", fsErr(err))
	}
	for _, c := range present {
		if _, ok := index[c]; !ok {
			return nil, src.errf(path.Join(dir, c), "class folder %q has no counterpart in %s/", c, classDir)
		}
	}

	var files []imageFile
	for _, c := range present {
		entries, err := fs.ReadDir(fsys, path.Join(dir, c))
		if err != nil {
			return nil, src.errf(path.Join(dir, c), "%v", fsErr(err))
		}
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") && isImageFile(e.Name()) {
				files = append(files, imageFile{path.Join(dir, c, e.Name()), index[c]})
			}
		}
	}
	if len(files) == 0 {
		return nil, src.errf(dir, "no .png/.jpg/.jpeg images: the %s split is empty", split)
	}

	first, err := fs.ReadFile(fsys, files[0].path)
	if err != nil {
		return nil, src.errf(files[0].path, "%v", fsErr(err))
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(first))
	if err != nil {
		return nil, src.errf(files[0].path, "cannot decode image: %v", err)
	}
	c := 3
	if cfg.ColorModel == color.GrayModel || cfg.ColorModel == color.Gray16Model {
		c = 1
	}
	h, w := cfg.Height, cfg.Width
	if h <= 0 || w <= 0 {
		return nil, src.errf(files[0].path, "image has size %d×%d", w, h)
	}
	n := len(files)
	if err := src.checkSize(dir, n, c, h, w, 1, opt.maxBytes()); err != nil {
		return nil, err
	}
	d := &Dataset{N: n, C: c, H: h, W: w, Classes: nclass, Layout: LayoutFolder,
		Pixels: make([]uint8, n*c*h*w), Labels: make([]int32, n), ClassNames: classes}
	for i, f := range files {
		d.Labels[i] = f.label
	}

	// Decode in parallel; report the error of the first failing file in sorted order.
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				errs[i] = decodeInto(fsys, src, files[i].path, files[0].path, c, h, w, d.Pixels[i*c*h*w:(i+1)*c*h*w])
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// decodeInto decodes image p into dst as c×h×w bytes; ref names the image that set the
// expected size.
func decodeInto(fsys fs.FS, src source, p, ref string, c, h, w int, dst []uint8) error {
	b, err := fs.ReadFile(fsys, p)
	if err != nil {
		return src.errf(p, "%v", fsErr(err))
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return src.errf(p, "cannot decode image: %v", err)
	}
	if cfg.Width != w || cfg.Height != h {
		return src.errf(p, "image is %d×%d but %s is %d×%d; all images must have the same size", cfg.Width, cfg.Height, src.name(ref), w, h)
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return src.errf(p, "cannot decode image: %v", err)
	}
	if sz := img.Bounds().Size(); sz.X != w || sz.Y != h {
		return src.errf(p, "image is %d×%d but %s is %d×%d; all images must have the same size", sz.X, sz.Y, src.name(ref), w, h)
	}
	toCHW(img, c, dst)
	return nil
}

// toCHW writes img into dst as c planes (1: gray, 3: red, green, blue). Alpha is
// composited onto black; color becomes gray with the ITU-R BT.601 luma weights.
func toCHW(img image.Image, c int, dst []uint8) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	plane := w * h
	switch m := img.(type) {
	case *image.Gray:
		for y := range h {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):][:w]
			for ch := range c {
				copy(dst[ch*plane+y*w:], row)
			}
		}
		return
	case *image.YCbCr:
		for y := range h {
			for x := range w {
				yi := m.YOffset(b.Min.X+x, b.Min.Y+y)
				if c == 1 {
					dst[y*w+x] = m.Y[yi]
					continue
				}
				ci := m.COffset(b.Min.X+x, b.Min.Y+y)
				r, g, bl := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				dst[y*w+x], dst[plane+y*w+x], dst[2*plane+y*w+x] = r, g, bl
			}
		}
		return
	case *image.RGBA:
		for y := range h {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):][:4*w]
			for x := range w {
				putRGB(dst, c, plane, y*w+x, uint32(row[4*x])*0x101, uint32(row[4*x+1])*0x101, uint32(row[4*x+2])*0x101)
			}
		}
		return
	}
	for y := range h {
		for x := range w {
			r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
			putRGB(dst, c, plane, y*w+x, r, g, bl)
		}
	}
}

// putRGB stores one pixel given as 16-bit premultiplied r, g, b.
func putRGB(dst []uint8, c, plane, i int, r, g, b uint32) {
	if c == 1 {
		dst[i] = uint8((19595*r + 38470*g + 7471*b + 1<<15) >> 24)
		return
	}
	dst[i], dst[plane+i], dst[2*plane+i] = uint8(r>>8), uint8(g>>8), uint8(b>>8)
}
