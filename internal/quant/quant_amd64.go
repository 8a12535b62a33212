//go:build amd64 && !purego

package quant

import "golang.org/x/sys/cpu"

func init() { haveAVX512 = cpu.X86.HasAVX512F }

//go:noescape
func fakeQuant16(x, y *float32, n int, s, lo, hi float32)

//go:noescape
func actGrad16(x, dy, dx *float32, n int, lo, hi float32, flags int, acc *[16]float32)

//go:noescape
func mixQuant16(x, y *float32, n, k int, p *MixParam)

//go:noescape
func mixGrad16(x, dy, dx *float32, n, k int, p *MixParam, flags int, acc *float32)
