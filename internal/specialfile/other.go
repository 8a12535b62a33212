//go:build !linux

package specialfile

import "testing"

// File is one special path and what it must stay.
type File struct{ Name, Path string }

// Make skips the test: the special files are made with Linux system calls.
func Make(t testing.TB, dir string) []File {
	t.Skip("special files are made on Linux only")
	return nil
}

// Check does nothing here.
func Check(testing.TB, []File) {}
