package data

import (
	_ "image/jpeg" // register the JPEG decoder
	_ "image/png"  // register the PNG decoder
	"io/fs"
	"path"
	"slices"
	"strings"
)

// Image folders: DIR/train/<class>/*.png|jpg|jpeg and DIR/test/<class>/... . Classes are
// the sorted names of train's subfolders; names starting with "." are ignored, as are
// files with other extensions; a class folder without images is an error. Images may have
// any size and color model (gray, RGB, paletted, CMYK, 8 or 16 bits, with alpha): opening
// the folder reads only their headers, and Batch decodes them on demand (see photos.go),
// converted to the data set's channel count (1 when every image is gray, else 3, until Fit
// sets the model's) and resized and cropped to its size (the first image's, until Fit).

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

	var files []photoFile
	for _, c := range present {
		classPath := path.Join(dir, c)
		entries, err := fs.ReadDir(fsys, classPath)
		if err != nil {
			return nil, src.errf(classPath, "%v", fsErr(err))
		}
		n := len(files)
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") && isImageFile(e.Name()) {
				files = append(files, photoFile{path: path.Join(classPath, e.Name()), label: index[c]})
			}
		}
		if len(files) == n {
			return nil, src.errf(classPath, "class folder has no .png/.jpg/.jpeg images")
		}
	}
	if len(files) == 0 {
		return nil, src.errf(dir, "no .png/.jpg/.jpeg images: the %s split is empty", split)
	}
	st := newPhotoStore(fsys, src, files, opt)
	maxPixels := opt.MaxImagePixels
	if maxPixels <= 0 {
		maxPixels = DefaultMaxImagePixels
	}
	if err := st.scanHeaders(maxPixels); err != nil {
		return nil, err
	}
	// Until Fit sets the model's size: the first image's size, one channel when every
	// image is gray.
	c := 1
	if slices.ContainsFunc(files, func(f photoFile) bool { return !f.gray }) {
		c = 3
	}
	d := &Dataset{N: len(files), C: c, H: int(files[0].h), W: int(files[0].w), Classes: nclass, Layout: LayoutFolder,
		Labels: make([]int32, len(files)), ClassNames: classes,
		photos: &photoSet{store: st, idx: make([]int32, len(files))}}
	for i, f := range files {
		d.Labels[i] = f.label
		d.photos.idx[i] = int32(i)
	}
	if err := d.Fit(c, d.H, d.W); err != nil {
		return nil, err
	}
	return d, nil
}
