//go:build amd64 && !purego

package kernels

// maxPool3s2x16 is in pool_amd64.s.
//
//go:noescape
func maxPool3s2x16(x *float32, wp int, win *int32, n, base int, idx *uint32)
