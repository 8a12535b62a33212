//go:build linux

package onnxio

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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

// publishUnnamed gives the unnamed file f the name path. Where path does not exist yet, f is
// linked under it directly, so no other name ever exists. A link cannot replace a file, so
// where path exists f is linked under a hidden name in the same folder and renamed over
// path; a process killed between those two calls leaves that hidden name, which every
// later write of path removes first (removeStaleTemps).
func publishUnnamed(f *os.File, path string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	removeStaleTemps(dir, base)
	src := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	err := unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	if err != unix.EEXIST {
		return err
	}
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

// removeStaleTemps removes the hidden names ".base.tmpPID-N" in dir that publishUnnamed
// gave base in processes that no longer run. A name of a running process (perhaps another
// process that reused the PID) is left alone.
func removeStaleTemps(dir, base string) {
	names, _ := filepath.Glob(filepath.Join(dir, "."+globEscape(base)+".tmp*-*"))
	for _, name := range names {
		rest := strings.TrimPrefix(filepath.Base(name), "."+base+".tmp")
		pid, n, ok := strings.Cut(rest, "-")
		p, err1 := strconv.Atoi(pid)
		_, err2 := strconv.Atoi(n)
		if !ok || err1 != nil || err2 != nil || p <= 0 || p == os.Getpid() {
			continue
		}
		if unix.Kill(p, 0) == unix.ESRCH {
			os.Remove(name)
		}
	}
}

// globEscape quotes the characters filepath.Match treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
