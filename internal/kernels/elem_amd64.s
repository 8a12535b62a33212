//go:build amd64 && !purego

#include "textflag.h"

// AVX-512 loops of the BatchNorm and ReLU kernels (see elem.go). Each
// handles n elements, n a positive multiple of 16; the callers do the rest.

// func sumSq16(x *float32, n int, k float32, acc *float32)
// acc[0:16] += x−k, acc[16:32] += (x−k)², lane by lane.
TEXT ·sumSq16(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS k+16(FP), Z31
	MOVQ acc+24(FP), DX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	SHRQ $4, CX
sumsq:
	VMOVUPS (SI), Z4
	VSUBPS Z31, Z4, Z4
	VADDPS Z4, Z0, Z0
	VFMADD231PS Z4, Z4, Z1
	ADDQ $64, SI
	DECQ CX
	JZ sumsqdone
	VMOVUPS (SI), Z5
	VSUBPS Z31, Z5, Z5
	VADDPS Z5, Z2, Z2
	VFMADD231PS Z5, Z5, Z3
	ADDQ $64, SI
	DECQ CX
	JNZ sumsq
sumsqdone:
	VADDPS Z2, Z0, Z0
	VADDPS Z3, Z1, Z1
	VADDPS (DX), Z0, Z0
	VADDPS 64(DX), Z1, Z1
	VMOVUPS Z0, (DX)
	VMOVUPS Z1, 64(DX)
	VZEROUPPER
	RET

// func affine16(x, y *float32, n int, a, b float32, relu bool)
// y = x·a + b, then max(·, 0) when relu.
TEXT ·affine16(SB), NOSPLIT, $0-33
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	VBROADCASTSS a+24(FP), Z30
	VBROADCASTSS b+28(FP), Z31
	VPXORD Z29, Z29, Z29
	SHRQ $4, CX
	MOVBLZX relu+32(FP), AX
	TESTQ AX, AX
	JNZ affrelu
aff:
	VMOVUPS (SI), Z0
	VFMADD213PS Z31, Z30, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ aff
	VZEROUPPER
	RET
affrelu:
	VMOVUPS (SI), Z0
	VFMADD213PS Z31, Z30, Z0
	VMAXPS Z29, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ affrelu
	VZEROUPPER
	RET

// func gradSums16(x, dy *float32, n int, mu, a, b float32, relu bool, acc *float32)
// With g = dy, or dy where x·a + b > 0 when relu: acc[0:16] += g,
// acc[16:32] += g·(x − mu).
TEXT ·gradSums16(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DI
	MOVQ n+16(FP), CX
	VBROADCASTSS mu+24(FP), Z28
	VBROADCASTSS a+28(FP), Z30
	VBROADCASTSS b+32(FP), Z31
	MOVBLZX relu+36(FP), AX
	MOVQ acc+40(FP), DX
	VPXORD Z29, Z29, Z29
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	SHRQ $4, CX
	TESTQ AX, AX
	JNZ gsrelu
gs:
	VMOVUPS (SI), Z2
	VMOVUPS (DI), Z3
	VSUBPS Z28, Z2, Z2
	VADDPS Z3, Z0, Z0
	VFMADD231PS Z3, Z2, Z1
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ gs
	JMP gsdone
gsrelu:
	VMOVUPS (SI), Z2
	VMOVAPS Z2, Z4
	VFMADD213PS Z31, Z30, Z4
	VCMPPS $0x1e, Z29, Z4, K1
	VMOVUPS.Z (DI), K1, Z3
	VSUBPS Z28, Z2, Z2
	VADDPS Z3, Z0, Z0
	VFMADD231PS Z3, Z2, Z1
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ gsrelu
gsdone:
	VADDPS (DX), Z0, Z0
	VADDPS 64(DX), Z1, Z1
	VMOVUPS Z0, (DX)
	VMOVUPS Z1, 64(DX)
	VZEROUPPER
	RET

// func bnDx16(x, dy, dx *float32, n int, c *[6]float32, relu bool)
// With c = {mu, a, b, k, m1, m2} and g as in gradSums16:
// dx = k·(g − m1 − (x − mu)·m2).
TEXT ·bnDx16(SB), NOSPLIT, $0-41
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DI
	MOVQ dx+16(FP), R8
	MOVQ n+24(FP), CX
	MOVQ c+32(FP), DX
	VBROADCASTSS 0(DX), Z26
	VBROADCASTSS 4(DX), Z27
	VBROADCASTSS 8(DX), Z28
	VBROADCASTSS 12(DX), Z29
	VBROADCASTSS 16(DX), Z30
	VBROADCASTSS 20(DX), Z31
	VPXORD Z25, Z25, Z25
	MOVBLZX relu+40(FP), AX
	SHRQ $4, CX
	TESTQ AX, AX
	JNZ dxrelu
dxp:
	VMOVUPS (SI), Z0
	VMOVUPS (DI), Z1
	VSUBPS Z26, Z0, Z0
	VSUBPS Z30, Z1, Z1
	VFNMADD231PS Z31, Z0, Z1
	VMULPS Z29, Z1, Z1
	VMOVUPS Z1, (R8)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R8
	DECQ CX
	JNZ dxp
	VZEROUPPER
	RET
dxrelu:
	VMOVUPS (SI), Z0
	VMOVAPS Z0, Z2
	VFMADD213PS Z28, Z27, Z2
	VCMPPS $0x1e, Z25, Z2, K1
	VMOVUPS.Z (DI), K1, Z1
	VSUBPS Z26, Z0, Z0
	VSUBPS Z30, Z1, Z1
	VFNMADD231PS Z31, Z0, Z1
	VMULPS Z29, Z1, Z1
	VMOVUPS Z1, (R8)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R8
	DECQ CX
	JNZ dxrelu
	VZEROUPPER
	RET

// func reluGrad16(x, dy, dx *float32, n int)
// dx = dy where x > 0, else 0.
TEXT ·reluGrad16(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DI
	MOVQ dx+16(FP), R8
	MOVQ n+24(FP), CX
	VPXORD Z31, Z31, Z31
	SHRQ $4, CX
rg:
	VMOVUPS (SI), Z0
	VCMPPS $0x1e, Z31, Z0, K1
	VMOVUPS.Z (DI), K1, Z1
	VMOVUPS Z1, (R8)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R8
	DECQ CX
	JNZ rg
	VZEROUPPER
	RET

// func copyRows16(src, dst *float32, rows, w, sp, dp int)
// Copies rows rows of w floats (w ≥ 1) from src (pitch sp floats) to dst
// (pitch dp floats), 16 at a time and the last w mod 16 under a mask.
TEXT ·copyRows16(SB), NOSPLIT, $0-48
	MOVQ src+0(FP), SI
	MOVQ dst+8(FP), DI
	MOVQ rows+16(FP), DX
	MOVQ w+24(FP), BX
	MOVQ sp+32(FP), R8
	MOVQ dp+40(FP), R9
	SHLQ $2, R8
	SHLQ $2, R9
	MOVQ BX, CX
	ANDQ $15, CX
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	SHRQ $4, BX
crrow:
	MOVQ SI, R10
	MOVQ DI, R11
	MOVQ BX, CX
	TESTQ CX, CX
	JZ crtail
crvec:
	VMOVUPS (R10), Z0
	VMOVUPS Z0, (R11)
	ADDQ $64, R10
	ADDQ $64, R11
	DECQ CX
	JNZ crvec
crtail:
	KORTESTW K1, K1
	JZ crnext
	VMOVUPS.Z (R10), K1, Z0
	VMOVUPS Z0, K1, (R11)
crnext:
	ADDQ R8, SI
	ADDQ R9, DI
	DECQ DX
	JNZ crrow
	VZEROUPPER
	RET
