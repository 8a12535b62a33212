//go:build !amd64 || purego

package quant

// Without the AVX-512 loops haveAVX512 stays false and these are never called.

func fakeQuant16(x, y *float32, n int, s, lo, hi float32) { panic("unreachable") }
func actGrad16(x, dy, dx *float32, n int, lo, hi float32, flags int, acc *[16]float32) {
	panic("unreachable")
}

func mixQuant16(x, y *float32, n, k int, p *MixParam) { panic("unreachable") }
func mixGrad16(x, dy, dx *float32, n, k int, p *MixParam, flags int, acc *float32) {
	panic("unreachable")
}
