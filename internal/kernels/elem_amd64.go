//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

func init() { haveElem16 = cpu.X86.HasAVX512F && cpu.X86.HasBMI2 }

// The loops in elem_amd64.s; n is a positive multiple of 16.

//go:noescape
func sumSq16(x *float32, n int, k float32, acc *float32)

//go:noescape
func reluGrad16(x, dy, dx *float32, n int)

//go:noescape
func clip16(x, y *float32, n int, lo, hi float32)

//go:noescape
func clipGrad16(x, dy, dx *float32, n int, lo, hi float32)

//go:noescape
func padRows16(src, dst *float32, rows, w, sp, dp int)

//go:noescape
func unpadRows16(src, dst *float32, rows, w, sp, dp, whole int, b float32, add, acc bool)

//go:noescape
func deinterleaveRows32(src, even, odd *float32, rows, w, sp, ep, op int)

//go:noescape
func interleaveRows32(even, odd, dst *float32, rows, w, ep, op, dp int)

//go:noescape
func add16(a, b, y *float32, n int)

//go:noescape
func addReLU16(a, b, y *float32, n int)

//go:noescape
func reluGrad2x16(x, dy, d1, d2 *float32, n int)

//go:noescape
func gradLanesPlanes(x, dy *float32, hw, np, stride int, c *[4]float32, relu bool, out *float32, ostride int)

//go:noescape
func affinePlanes(x, y *float32, hw, np, stride int, a, b, hi float32, relu bool)

//go:noescape
func bnDxPlanes(x, dy, dx *float32, hw, np, stride int, c *[7]float32, relu bool)

//go:noescape
func prefetchLines(p *float32, lines int, write bool)
