//go:build !amd64 || purego

package kernels

// Without the AVX-512 loops haveElem16 stays false and this is never
// called.
func maxPool3s2x16(x *float32, wp int, win *int32, n, base int, idx *uint32) { panic("unreachable") }
