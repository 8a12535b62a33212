package data

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/qnas/qnas/internal/fmnist"
)

// Open loads split of the data set in directory dir, detecting its layout; see OpenFS.
func Open(dir string, split Split) (*Dataset, error) {
	return OpenDir(dir, split, Options{})
}

// OpenDir is Open with options.
func OpenDir(dir string, split Split, opt Options) (*Dataset, error) {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no such directory", dir)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %v", dir, fsErr(err))
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory; the data is a folder holding a data set", dir)
	}
	return load(os.DirFS(dir), source{root: dir, native: true}, split, opt)
}

// OpenFS loads split of the data set at the top of fsys; name says where fsys comes
// from in error messages. The layout is detected in this order:
//
//   - IDX: train-images-idx3-ubyte[.gz] / t10k-images-idx3-ubyte[.gz] and their labels files;
//   - CIFAR-10: data_batch_*.bin / test_batch.bin, here or in cifar-10-batches-bin/;
//   - CIFAR-100: train.bin / test.bin, here or in cifar-100-binary/ (fine labels);
//   - NPZ: train.npz / test.npz, or a single *.npz with x_train, y_train, x_test, y_test;
//   - image folder: train/<class>/*.png|jpg|jpeg and test/<class>/... .
//
// A missing or empty split is an error.
func OpenFS(fsys fs.FS, name string, split Split, opt Options) (*Dataset, error) {
	return load(fsys, source{root: name}, split, opt)
}

// Embedded loads split of the Fashion-MNIST subset compiled into the binary
// (4000 training and 1000 test images of 1×28×28, 10 classes).
func Embedded(split Split) (*Dataset, error) {
	return load(fmnist.Files, source{root: "embedded"}, split, Options{})
}

func load(fsys fs.FS, src source, split Split, opt Options) (*Dataset, error) {
	if split != Train && split != Test {
		return nil, fmt.Errorf("%s: unknown split %v", src.root, split)
	}
	var (
		d   *Dataset
		err error
	)
	if hasIDX(fsys) {
		d, err = loadIDX(fsys, src, split, opt)
	} else if dir, ok := detectCIFAR(fsys, cifar10); ok {
		d, err = loadCIFAR(fsys, src, dir, cifar10, split, opt)
	} else if dir, ok := detectCIFAR(fsys, cifar100); ok {
		d, err = loadCIFAR(fsys, src, dir, cifar100, split, opt)
	} else if hasNPZ(fsys) {
		d, err = loadNPZ(fsys, src, split, opt)
	} else if hasFolder(fsys) {
		d, err = loadFolder(fsys, src, split, opt)
	} else {
		return nil, fmt.Errorf("%s: no data set found; looked for IDX files (train-images-idx3-ubyte[.gz], t10k-…), "+
			"CIFAR-10 batches (data_batch_*.bin, test_batch.bin), CIFAR-100 (train.bin, test.bin), "+
			"NPZ (train.npz, test.npz) and an image folder (train/<class>/*.png|jpg, test/<class>/…)", src.root)
	}
	if err != nil {
		return nil, err
	}
	d.Source = src.root
	if d.N == 0 {
		return nil, fmt.Errorf("%s: the %s split is empty", src.root, split)
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	return d, nil
}
