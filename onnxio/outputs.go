package onnxio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// CheckOutputPath returns an *Error naming path unless a file may be written there: path
// must not exist yet or be a regular file, and its folder must exist and take new files.
// Refused are directories, devices, FIFOs and sockets (an atomic rename would replace
// them with a regular file, /dev/null included), and symbolic links: the rename would
// replace the link, not the file it points to, so the caller is asked for the real path.
func CheckOutputPath(path string) error {
	if path == "" {
		return &Error{Msg: "empty output path"}
	}
	fi, err := os.Lstat(path)
	switch {
	case err == nil:
		if what := notRegular(fi.Mode()); what != "" {
			return &Error{File: path, Msg: fmt.Sprintf("is %s, not a regular file; qnas writes outputs only to regular files or new paths", what)}
		}
	case !os.IsNotExist(err) && !errors.Is(err, syscall.ENOTDIR): // ENOTDIR: the folder check names it
		return &Error{File: path, Msg: unwrapPath(err).Error(), Err: err}
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return &Error{File: path, Msg: fmt.Sprintf("the folder %s does not exist", dir)}
		}
		return &Error{File: path, Msg: unwrapPath(err).Error(), Err: err}
	}
	if !di.IsDir() {
		return &Error{File: path, Msg: fmt.Sprintf("%s is not a folder", dir)}
	}
	return nil
}

// CheckWritableFolder returns an *Error naming path when its folder does not take new
// files (permissions, a read-only file system). It tries by creating a file there that
// has no name on Linux (nothing is left even if the process dies), elsewhere a hidden
// temporary file it removes at once.
func CheckWritableFolder(path string) error {
	dir := filepath.Dir(path)
	if f, ok := createUnnamed(dir, 0o600); ok {
		f.Close()
		return nil
	}
	f, err := os.CreateTemp(dir, ".qnas-probe*")
	if err != nil {
		return &Error{File: path, Msg: fmt.Sprintf("cannot write into the folder %s: %v", dir, unwrapPath(err)), Err: err}
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}

// notRegular names the kind of a file that is not a regular file ("" for a regular one).
func notRegular(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return ""
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// SameFile reports whether a and b name one file: the same cleaned absolute path, or,
// when both exist, one file reached through symbolic or hard links.
func SameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(fa, fb)
	}
	aa, e1 := filepath.Abs(a)
	ab, e2 := filepath.Abs(b)
	return e1 == nil && e2 == nil && aa == ab
}

// ReadFileLimited reads the file at path, refusing one larger than max bytes: a regular
// file by its size before reading, anything else (a pipe, a device such as /dev/zero)
// after max+1 bytes. Errors are *Error naming path.
func ReadFileLimited(path string, max int64) ([]byte, error) {
	f, err := openRead(path)
	if err != nil {
		return nil, &Error{File: path, Msg: unwrapPath(err).Error(), Err: err}
	}
	defer f.Close()
	var hint int64
	if fi, err := f.Stat(); err == nil {
		if fi.IsDir() {
			return nil, &Error{File: path, Msg: "is a directory"}
		}
		if fi.Mode().IsRegular() {
			if fi.Size() > max {
				return nil, &Error{File: path, Msg: fmt.Sprintf("file has %d bytes, more than the limit of %d", fi.Size(), max)}
			}
			hint = fi.Size()
		}
	}
	b, err := readLimited(f, max, hint)
	if err != nil {
		return nil, withFile(err, path)
	}
	return b, nil
}

// openRead opens a file for reading without blocking in open: a FIFO that no process
// writes to then reads as empty instead of hanging the command.
func openRead(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
