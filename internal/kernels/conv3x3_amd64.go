//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

//go:generate go run ./asmgen/main.go

func init() { haveConv3x3 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL }
