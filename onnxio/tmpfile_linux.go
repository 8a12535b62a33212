//go:build linux

package onnxio

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// createUnnamed opens an unnamed file in dir (O_TMPFILE): if the process dies before
// publish, nothing is left behind, not even a temporary name. ok is false where the file
// system does not support it; the caller then falls back to a named temporary file.
func createUnnamed(dir string, perm os.FileMode) (f *os.File, ok bool) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, uint32(perm))
	if err != nil {
		return nil, false
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed)")), true
}

// publishUnnamed gives the unnamed file f the name path: it is linked under a fresh hidden
// name in the same folder, then renamed over path (a link cannot replace a file). Only
// between those two calls does a name other than path exist.
func publishUnnamed(f *os.File, path string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	src := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	for i := 0; ; i++ {
		tmp := filepath.Join(dir, fmt.Sprintf(".%s.tmp%d-%d", base, os.Getpid(), i))
		err := unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW)
		if err == unix.EEXIST && i < 100 {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			os.Remove(tmp)
			return err
		}
		return nil
	}
}
