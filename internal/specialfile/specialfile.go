//go:build linux

// Package specialfile makes, for tests, the kinds of paths an output must never replace
// (a FIFO, a socket, a character device, a directory, symbolic links) and checks
// afterwards that each is still what it was.
package specialfile

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// File is one special path and what it must stay.
type File struct {
	Name string // what it is, for messages: "a FIFO", "a symbolic link to a regular file", …
	Path string
	mode os.FileMode // the type bits it must keep
	link string      // a symbolic link's target
	rdev uint64      // a device's number
	data []byte      // the content of the regular file a link points to
}

// Make creates the special files in dir: a FIFO, a Unix socket (kept listening until the
// test ends), a directory, a symbolic link to a regular file, a dangling symbolic link
// and, when the test runs as root, a character device with the numbers of /dev/null.
func Make(t testing.TB, dir string) []File {
	t.Helper()
	var out []File
	add := func(name, path string) {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		f := File{Name: name, Path: path, mode: fi.Mode().Type()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			f.rdev = st.Rdev
		}
		if f.mode&os.ModeSymlink != 0 {
			f.link, _ = os.Readlink(path)
			f.data, _ = os.ReadFile(path)
		}
		out = append(out, f)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	add("a FIFO", fifo)
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	add("a socket", sock)
	sub := filepath.Join(dir, "folder")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	add("a directory", sub)
	target := filepath.Join(dir, "target.bin")
	if err := os.WriteFile(target, []byte("the file a link points to"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("target.bin", link); err != nil {
		t.Fatal(err)
	}
	add("a symbolic link to a regular file", link)
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink("nowhere.bin", dangling); err != nil {
		t.Fatal(err)
	}
	add("a dangling symbolic link", dangling)
	if os.Geteuid() == 0 {
		null := filepath.Join(dir, "fakenull")
		if err := syscall.Mknod(null, syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err == nil {
			add("a character device", null)
		}
	}
	return out
}

// Check reports on t every special file that is no longer what Make made.
func Check(t testing.TB, files []File) {
	t.Helper()
	for _, f := range files {
		fi, err := os.Lstat(f.Path)
		if err != nil {
			t.Errorf("%s %s: %v", f.Name, f.Path, err)
			continue
		}
		if fi.Mode().Type() != f.mode {
			t.Errorf("%s %s was replaced: now %v", f.Name, f.Path, fi.Mode().Type())
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Rdev != f.rdev {
			t.Errorf("%s %s: device number changed", f.Name, f.Path)
		}
		if f.link != "" {
			if l, _ := os.Readlink(f.Path); l != f.link {
				t.Errorf("%s %s now points to %q", f.Name, f.Path, l)
			}
			if b, _ := os.ReadFile(f.Path); string(b) != string(f.data) {
				t.Errorf("%s %s: the file it points to changed", f.Name, f.Path)
			}
		}
	}
}
