//go:build !amd64 || purego

package kernels

// Without the AVX-512 loops haveElem16 stays false and these are never
// called.

func sumSq16(x *float32, n int, k float32, acc *float32) { panic("unreachable") }
func reluGrad16(x, dy, dx *float32, n int)               { panic("unreachable") }
func padRows16(src, dst *float32, rows, w, sp, dp int)   { panic("unreachable") }
func unpadRows16(src, dst *float32, rows, w, sp, dp, whole int, b float32, add, acc bool) {
	panic("unreachable")
}
func clip16(x, y *float32, n int, lo, hi float32) { panic("unreachable") }
func clipGrad16(x, dy, dx *float32, n int, lo, hi float32) {
	panic("unreachable")
}
func deinterleaveRows32(src, even, odd *float32, rows, w, sp, ep, op int) {
	panic("unreachable")
}
func interleaveRows32(even, odd, dst *float32, rows, w, ep, op, dp int) {
	panic("unreachable")
}
func add16(a, b, y *float32, n int)              { panic("unreachable") }
func addReLU16(a, b, y *float32, n int)          { panic("unreachable") }
func reluGrad2x16(x, dy, d1, d2 *float32, n int) { panic("unreachable") }
func affinePlanes(x, y *float32, hw, np, stride int, a, b, hi float32, relu bool) {
	panic("unreachable")
}
func gradLanesPlanes(x, dy *float32, hw, np, stride int, c *[4]float32, relu bool, out *float32, ostride int) {
	panic("unreachable")
}
func bnDxPlanes(x, dy, dx *float32, hw, np, stride int, c *[7]float32, relu bool) {
	panic("unreachable")
}
func prefetchLines(p *float32, lines int, write bool) {}
