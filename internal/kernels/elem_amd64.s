//go:build amd64 && !purego

#include "textflag.h"

// MASKLOW sets mask register k to the low n bits (0 ≤ n ≤ 16, n in a
// register); it clobbers AX.
#define MASKLOW(n, k) MOVL $1, AX; SHLXL n, AX, AX; DECL AX; KMOVW AX, k

// RELUMASK zeroes the lanes of g where x·a + b ≤ 0 or ≥ hi (zero holds
// 0s); it clobbers tmp and K1.
// PERMUTE2 sets Z2 and Z3 to lanes of the 32-float table lo:hi picked by
// the index vectors in Z30 and Z31.
#define PERMUTE2(lo, hi) VMOVDQA32 Z30, Z2; VPERMI2PS hi, lo, Z2; VMOVDQA32 Z31, Z3; VPERMI2PS hi, lo, Z3

// SPLITMASKS sets K1 to the low min(n, 16) bits and K2 to the low
// max(n − 16, 0) bits, for n in CX (0 ≤ n < 32); it clobbers AX and BX.
#define SPLITMASKS MOVQ CX, BX; CMPQ BX, $16; JLE 2(PC); MOVQ $16, BX; MASKLOW(BX, K1); MOVQ CX, BX; SUBQ $16, BX; JGE 2(PC); XORQ BX, BX; MASKLOW(BX, K2)

// HALFMASKS sets K3 to the low (n+1)/2 bits and K4 to the low n/2 bits,
// for n in CX; it clobbers AX and BX.
#define HALFMASKS LEAQ 1(CX), BX; SHRQ $1, BX; MASKLOW(BX, K3); MOVQ CX, BX; SHRQ $1, BX; MASKLOW(BX, K4)

#define RELUMASK(x, g, a, b, zero, hi, tmp) VMOVAPS x, tmp; VFMADD213PS b, a, tmp; VCMPPS $0x1e, zero, tmp, K1; VCMPPS $0x11, hi, tmp, K1, K1; VMOVAPS.Z g, K1, g

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

// func clip16(x, y *float32, n int, lo, hi float32)
// y = min(max(x, lo), hi); NaN stays NaN.
TEXT ·clip16(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	VBROADCASTSS lo+24(FP), Z30
	VBROADCASTSS hi+28(FP), Z31
	SHRQ $4, CX
clip:
	VMAXPS (SI), Z30, Z0
	VMINPS Z0, Z31, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ clip
	VZEROUPPER
	RET

// func clipGrad16(x, dy, dx *float32, n int, lo, hi float32)
// dx = 0 where x ≤ lo or x ≥ hi, else dy (NaN passes dy, as in PyTorch).
TEXT ·clipGrad16(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DI
	MOVQ dx+16(FP), R8
	MOVQ n+24(FP), CX
	VBROADCASTSS lo+32(FP), Z30
	VBROADCASTSS hi+36(FP), Z31
	SHRQ $4, CX
cg:
	VMOVUPS (SI), Z0
	VCMPPS $0x16, Z30, Z0, K1
	VCMPPS $0x19, Z31, Z0, K1, K2
	VMOVUPS.Z (DI), K2, Z1
	VMOVUPS Z1, (R8)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R8
	DECQ CX
	JNZ cg
	VZEROUPPER
	RET

DATA deintEven<>+0(SB)/4, $0
DATA deintEven<>+4(SB)/4, $2
DATA deintEven<>+8(SB)/4, $4
DATA deintEven<>+12(SB)/4, $6
DATA deintEven<>+16(SB)/4, $8
DATA deintEven<>+20(SB)/4, $10
DATA deintEven<>+24(SB)/4, $12
DATA deintEven<>+28(SB)/4, $14
DATA deintEven<>+32(SB)/4, $16
DATA deintEven<>+36(SB)/4, $18
DATA deintEven<>+40(SB)/4, $20
DATA deintEven<>+44(SB)/4, $22
DATA deintEven<>+48(SB)/4, $24
DATA deintEven<>+52(SB)/4, $26
DATA deintEven<>+56(SB)/4, $28
DATA deintEven<>+60(SB)/4, $30
GLOBL deintEven<>(SB), RODATA|NOPTR, $64

DATA intLo<>+0(SB)/4, $0
DATA intLo<>+4(SB)/4, $16
DATA intLo<>+8(SB)/4, $1
DATA intLo<>+12(SB)/4, $17
DATA intLo<>+16(SB)/4, $2
DATA intLo<>+20(SB)/4, $18
DATA intLo<>+24(SB)/4, $3
DATA intLo<>+28(SB)/4, $19
DATA intLo<>+32(SB)/4, $4
DATA intLo<>+36(SB)/4, $20
DATA intLo<>+40(SB)/4, $5
DATA intLo<>+44(SB)/4, $21
DATA intLo<>+48(SB)/4, $6
DATA intLo<>+52(SB)/4, $22
DATA intLo<>+56(SB)/4, $7
DATA intLo<>+60(SB)/4, $23
GLOBL intLo<>(SB), RODATA|NOPTR, $64

// func padRows16(src, dst *float32, rows, w, sp, dp int)
// Copies rows rows of w floats (w ≥ 1) from src (pitch sp floats) to dst
// (pitch dp floats) as whole vectors: each dst row gets w/16 + 1 of them,
// its lanes from w on zero. Only src's rows are read.
TEXT ·padRows16(SB), NOSPLIT, $0-48
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
	MASKLOW(CX, K1)
	SHRQ $4, BX
prrow:
	MOVQ SI, R10
	MOVQ DI, R11
	MOVQ BX, CX
	TESTQ CX, CX
	JZ prtail
prvec:
	VMOVUPS (R10), Z0
	VMOVUPS Z0, (R11)
	ADDQ $64, R10
	ADDQ $64, R11
	DECQ CX
	JNZ prvec
prtail:
	VMOVUPS.Z (R10), K1, Z0
	VMOVUPS Z0, (R11)
	ADDQ R8, SI
	ADDQ R9, DI
	DECQ DX
	JNZ prrow
	VZEROUPPER
	RET

// func unpadRows16(src, dst *float32, rows, w, sp, dp, whole int, b float32, add, acc bool)
// Copies rows rows of w floats (w ≥ 1) from src (pitch sp floats) to dst
// (pitch dp floats), adding b when add is set, or adds them into dst when
// acc is set (then whole must be 0). The first whole rows are stored as
// whole vectors, the last one running up to 15 floats past w (which a
// later row must overwrite); the other rows end under a mask (with whole
// = 0 a plain copy of the rows). Only src's rows (and with acc dst's) are
// read.
TEXT ·unpadRows16(SB), NOSPLIT, $0-62
	MOVQ src+0(FP), SI
	MOVQ dst+8(FP), DI
	MOVQ rows+16(FP), DX
	MOVQ w+24(FP), BX
	MOVQ sp+32(FP), R8
	MOVQ dp+40(FP), R9
	MOVQ whole+48(FP), R13
	VBROADCASTSS b+56(FP), Z31
	MOVBLZX add+60(FP), R12
	MOVBLZX acc+61(FP), R14
	SHLQ $2, R8
	SHLQ $2, R9
	MOVQ BX, CX
	ANDQ $15, CX
	MASKLOW(CX, K1)
	MOVL $0xffff, AX
	KMOVW AX, K2
	SHRQ $4, BX
urrow:
	TESTQ R13, R13
	JNZ 3(PC)
	KMOVW K1, K2
	JMP 2(PC)
	DECQ R13
	MOVQ SI, R10
	MOVQ DI, R11
	MOVQ BX, CX
	TESTQ CX, CX
	JZ urtail
urvec:
	VMOVUPS (R10), Z0
	TESTQ R12, R12
	JZ 2(PC)
	VADDPS Z31, Z0, Z0
	TESTQ R14, R14
	JZ 2(PC)
	VADDPS (R11), Z0, Z0
	VMOVUPS Z0, (R11)
	ADDQ $64, R10
	ADDQ $64, R11
	DECQ CX
	JNZ urvec
urtail:
	KORTESTW K1, K1
	JZ urnext
	VMOVUPS.Z (R10), K1, Z0
	TESTQ R12, R12
	JZ 2(PC)
	VADDPS Z31, Z0, Z0
	TESTQ R14, R14
	JZ 3(PC)
	VMOVUPS.Z (R11), K1, Z1
	VADDPS Z1, Z0, Z0
	VMOVUPS Z0, K2, (R11)
urnext:
	ADDQ R8, SI
	ADDQ R9, DI
	DECQ DX
	JNZ urrow
	VZEROUPPER
	RET

// func deinterleaveRows32(src, even, odd *float32, rows, w, sp, ep, op int)
// For each row r < rows (rows ≥ 1), with pitches sp, ep and op in floats:
// even[r·ep + j] = src[r·sp + 2j] for j < (w+1)/2 and odd[r·op + j] =
// src[r·sp + 2j+1] for j < w/2; nothing else is read or written.
TEXT ·deinterleaveRows32(SB), NOSPLIT, $0-64
	MOVQ src+0(FP), SI
	MOVQ even+8(FP), DI
	MOVQ odd+16(FP), DX
	MOVQ rows+24(FP), R8
	MOVQ w+32(FP), R15
	MOVQ sp+40(FP), R9
	MOVQ ep+48(FP), R10
	MOVQ op+56(FP), R11
	SHLQ $2, R9
	SHLQ $2, R10
	SHLQ $2, R11
	VMOVDQU32 deintEven<>(SB), Z30
	VPBROADCASTD one<>(SB), Z31
	VPADDD Z31, Z30, Z31
	// the masks of the tail (w mod 32 floats), the same on every row
	MOVQ R15, CX
	ANDQ $31, CX
	SPLITMASKS
	HALFMASKS
deintrow:
	MOVQ SI, R12
	MOVQ DI, R13
	MOVQ DX, R14
	MOVQ R15, CX
deintloop:
	CMPQ CX, $32
	JLT deinttail
	VMOVUPS (R12), Z0
	VMOVUPS 64(R12), Z1
	PERMUTE2(Z0, Z1)
	VMOVUPS Z2, (R13)
	VMOVUPS Z3, (R14)
	ADDQ $128, R12
	ADDQ $64, R13
	ADDQ $64, R14
	SUBQ $32, CX
	JMP deintloop
deinttail:
	TESTQ CX, CX
	JZ deintnext
	VMOVUPS.Z (R12), K1, Z0
	VMOVUPS.Z 64(R12), K2, Z1
	PERMUTE2(Z0, Z1)
	// store (w+1)/2 evens and w/2 odds of the tail
	VMOVUPS Z2, K3, (R13)
	VMOVUPS Z3, K4, (R14)
deintnext:
	ADDQ R9, SI
	ADDQ R10, DI
	ADDQ R11, DX
	DECQ R8
	JNZ deintrow
	VZEROUPPER
	RET

DATA one<>+0(SB)/4, $1
GLOBL one<>(SB), RODATA|NOPTR, $4

// func interleaveRows32(even, odd, dst *float32, rows, w, ep, op, dp int)
// The inverse of deinterleaveRows32: for each row r < rows (rows ≥ 1),
// dst[r·dp + 2j] = even[r·ep + j] for 2j < w and dst[r·dp + 2j+1] =
// odd[r·op + j] for 2j+1 < w; nothing else is read or written.
TEXT ·interleaveRows32(SB), NOSPLIT, $0-64
	MOVQ even+0(FP), SI
	MOVQ odd+8(FP), DX
	MOVQ dst+16(FP), DI
	MOVQ rows+24(FP), R8
	MOVQ w+32(FP), R15
	MOVQ ep+40(FP), R9
	MOVQ op+48(FP), R10
	MOVQ dp+56(FP), R11
	SHLQ $2, R9
	SHLQ $2, R10
	SHLQ $2, R11
	VMOVDQU32 intLo<>(SB), Z30
	VPBROADCASTD eight<>(SB), Z31
	VPADDD Z31, Z30, Z31
	// the masks of the tail (w mod 32 floats), the same on every row:
	// load (n+1)/2 evens and n/2 odds, store min(n,16) and max(n−16,0)
	// lanes
	MOVQ R15, CX
	ANDQ $31, CX
	SPLITMASKS
	HALFMASKS
introw:
	MOVQ SI, R12
	MOVQ DX, R13
	MOVQ DI, R14
	MOVQ R15, CX
intloop:
	CMPQ CX, $32
	JLT inttail
	VMOVUPS (R12), Z0
	VMOVUPS (R13), Z1
	PERMUTE2(Z0, Z1)
	VMOVUPS Z2, (R14)
	VMOVUPS Z3, 64(R14)
	ADDQ $64, R12
	ADDQ $64, R13
	ADDQ $128, R14
	SUBQ $32, CX
	JMP intloop
inttail:
	TESTQ CX, CX
	JZ intnext
	VMOVUPS.Z (R12), K3, Z0
	VMOVUPS.Z (R13), K4, Z1
	PERMUTE2(Z0, Z1)
	VMOVUPS Z2, K1, (R14)
	VMOVUPS Z3, K2, 64(R14)
intnext:
	ADDQ R9, SI
	ADDQ R10, DX
	ADDQ R11, DI
	DECQ R8
	JNZ introw
	VZEROUPPER
	RET

DATA eight<>+0(SB)/4, $8
GLOBL eight<>(SB), RODATA|NOPTR, $4

// func addReLU16(a, b, y *float32, n int)
// y = max(a + b, 0).
TEXT ·addReLU16(SB), NOSPLIT, $0-32
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DX
	MOVQ y+16(FP), DI
	MOVQ n+24(FP), CX
	VPXORD Z31, Z31, Z31
	SHRQ $4, CX
ar:
	VMOVUPS (SI), Z0
	VADDPS (DX), Z0, Z0
	VMAXPS Z31, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ ar
	VZEROUPPER
	RET

// func add16(a, b, y *float32, n int)
// y = a + b; y may alias a or b.
TEXT ·add16(SB), NOSPLIT, $0-32
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DX
	MOVQ y+16(FP), DI
	MOVQ n+24(FP), CX
	SHRQ $4, CX
addloop:
	VMOVUPS (SI), Z0
	VADDPS (DX), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ addloop
	VZEROUPPER
	RET

// func reluGrad2x16(x, dy, d1, d2 *float32, n int)
// d1 = d2 = dy where x > 0, else 0.
TEXT ·reluGrad2x16(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DI
	MOVQ d1+16(FP), R8
	MOVQ d2+24(FP), R9
	MOVQ n+32(FP), CX
	VPXORD Z31, Z31, Z31
	SHRQ $4, CX
rg2:
	VMOVUPS (SI), Z0
	VCMPPS $0x1e, Z31, Z0, K1
	VMOVUPS.Z (DI), K1, Z1
	VMOVUPS Z1, (R8)
	VMOVUPS Z1, (R9)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R8
	ADDQ $64, R9
	DECQ CX
	JNZ rg2
	VZEROUPPER
	RET

// The *Planes loops run over np planes of hw floats each, stride floats
// apart (a channel of an N×C×H×W tensor), the last hw mod 16 floats of a
// plane under a mask.

// func gradLanesPlanes(x, dy *float32, hw, np, stride int, c *[4]float32, relu bool, out *float32, ostride int)
// With c = {mu, a, b, hi} and g = dy, or dy where 0 < x·a + b < hi when relu:
// plane i's Σg and Σg·(x − mu), lane by lane in float32, at
// out[i·ostride:][0:16] and [16:32].
TEXT ·gradLanesPlanes(SB), NOSPLIT, $0-72
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DI
	MOVQ hw+16(FP), BX
	MOVQ np+24(FP), R8
	MOVQ stride+32(FP), R9
	SHLQ $2, R9
	MOVQ c+40(FP), DX
	VBROADCASTSS 0(DX), Z28
	VBROADCASTSS 4(DX), Z30
	VBROADCASTSS 8(DX), Z31
	VBROADCASTSS 12(DX), Z27
	MOVBLZX relu+48(FP), R12
	MOVQ out+56(FP), R13
	MOVQ ostride+64(FP), R14
	SHLQ $2, R14
	VPXORD Z29, Z29, Z29
	MOVQ BX, CX
	ANDQ $15, CX
	MASKLOW(CX, K2)
	SHRQ $4, BX
glp:
	MOVQ SI, R10
	MOVQ DI, R11
	MOVQ BX, CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	TESTQ CX, CX
	JZ glptail
glpvec:
	VMOVUPS (R10), Z2
	VMOVUPS (R11), Z3
	TESTQ R12, R12
	JZ glpv1
	RELUMASK(Z2, Z3, Z30, Z31, Z29, Z27, Z4)
glpv1:
	VSUBPS Z28, Z2, Z2
	VADDPS Z3, Z0, Z0
	VFMADD231PS Z3, Z2, Z1
	ADDQ $64, R10
	ADDQ $64, R11
	DECQ CX
	JNZ glpvec
glptail:
	KORTESTW K2, K2
	JZ glpflush
	VMOVUPS.Z (R10), K2, Z2
	VMOVUPS.Z (R11), K2, Z3
	TESTQ R12, R12
	JZ glpt1
	RELUMASK(Z2, Z3, Z30, Z31, Z29, Z27, Z4)
glpt1:
	VSUBPS Z28, Z2, Z2
	VADDPS Z3, Z0, Z0
	VFMADD231PS Z3, Z2, Z1
glpflush:
	VMOVUPS Z0, (R13)
	VMOVUPS Z1, 64(R13)
	ADDQ R14, R13
	ADDQ R9, SI
	ADDQ R9, DI
	DECQ R8
	JNZ glp
	VZEROUPPER
	RET

// func affinePlanes(x, y *float32, hw, np, stride int, a, b, hi float32, relu bool)
// y = x·a + b, then min(max(·, 0), hi) when relu.
TEXT ·affinePlanes(SB), NOSPLIT, $0-53
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ hw+16(FP), BX
	MOVQ np+24(FP), R8
	MOVQ stride+32(FP), R9
	SHLQ $2, R9
	VBROADCASTSS a+40(FP), Z30
	VBROADCASTSS b+44(FP), Z31
	VBROADCASTSS hi+48(FP), Z28
	MOVBLZX relu+52(FP), R12
	VPXORD Z29, Z29, Z29
	MOVQ BX, CX
	ANDQ $15, CX
	MASKLOW(CX, K2)
	SHRQ $4, BX
afp:
	MOVQ SI, R10
	MOVQ DI, R11
	MOVQ BX, CX
	TESTQ CX, CX
	JZ afptail
afpvec:
	VMOVUPS (R10), Z0
	VFMADD213PS Z31, Z30, Z0
	TESTQ R12, R12
	JZ afpv1
	VMAXPS Z29, Z0, Z0
	VMINPS Z28, Z0, Z0
afpv1:
	VMOVUPS Z0, (R11)
	ADDQ $64, R10
	ADDQ $64, R11
	DECQ CX
	JNZ afpvec
afptail:
	KORTESTW K2, K2
	JZ afpnext
	VMOVUPS.Z (R10), K2, Z0
	VFMADD213PS Z31, Z30, Z0
	TESTQ R12, R12
	JZ afpt1
	VMAXPS Z29, Z0, Z0
	VMINPS Z28, Z0, Z0
afpt1:
	VMOVUPS Z0, K2, (R11)
afpnext:
	ADDQ R9, SI
	ADDQ R9, DI
	DECQ R8
	JNZ afp
	VZEROUPPER
	RET

// func bnDxPlanes(x, dy, dx *float32, hw, np, stride int, c *[7]float32, relu bool)
// With c = {mu, a, b, k, m1, m2, hi} and g as in gradSumsPlanes:
// dx = k·(g − m1 − (x − mu)·m2).
TEXT ·bnDxPlanes(SB), NOSPLIT, $0-57
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DI
	MOVQ dx+16(FP), R14
	MOVQ hw+24(FP), BX
	MOVQ np+32(FP), R8
	MOVQ stride+40(FP), R9
	SHLQ $2, R9
	MOVQ c+48(FP), DX
	VBROADCASTSS 0(DX), Z26
	VBROADCASTSS 4(DX), Z27
	VBROADCASTSS 8(DX), Z28
	VBROADCASTSS 12(DX), Z29
	VBROADCASTSS 16(DX), Z30
	VBROADCASTSS 20(DX), Z31
	VBROADCASTSS 24(DX), Z24
	VPXORD Z25, Z25, Z25
	MOVBLZX relu+56(FP), R12
	MOVQ BX, CX
	ANDQ $15, CX
	MASKLOW(CX, K2)
	SHRQ $4, BX
dxp2:
	MOVQ SI, R10
	MOVQ DI, R11
	MOVQ R14, R13
	MOVQ BX, CX
	TESTQ CX, CX
	JZ dxptail
dxpvec:
	VMOVUPS (R10), Z0
	VMOVUPS (R11), Z1
	TESTQ R12, R12
	JZ dxpv1
	RELUMASK(Z0, Z1, Z27, Z28, Z25, Z24, Z2)
dxpv1:
	VSUBPS Z26, Z0, Z0
	VSUBPS Z30, Z1, Z1
	VFNMADD231PS Z31, Z0, Z1
	VMULPS Z29, Z1, Z1
	VMOVUPS Z1, (R13)
	ADDQ $64, R10
	ADDQ $64, R11
	ADDQ $64, R13
	DECQ CX
	JNZ dxpvec
dxptail:
	KORTESTW K2, K2
	JZ dxpnext
	VMOVUPS.Z (R10), K2, Z0
	VMOVUPS.Z (R11), K2, Z1
	TESTQ R12, R12
	JZ dxpt1
	RELUMASK(Z0, Z1, Z27, Z28, Z25, Z24, Z2)
dxpt1:
	VSUBPS Z26, Z0, Z0
	VSUBPS Z30, Z1, Z1
	VFNMADD231PS Z31, Z0, Z1
	VMULPS Z29, Z1, Z1
	VMOVUPS Z1, K2, (R13)
dxpnext:
	ADDQ R9, SI
	ADDQ R9, DI
	ADDQ R9, R14
	DECQ R8
	JNZ dxp2
	VZEROUPPER
	RET

// func prefetchLines(p *float32, lines int, write bool)
// Asks for the lines cache lines from p to be brought into the cache, for
// writing when write is set.
TEXT ·prefetchLines(SB), NOSPLIT, $0-17
	MOVQ p+0(FP), SI
	MOVQ lines+8(FP), CX
	MOVBLZX write+16(FP), AX
	TESTQ CX, CX
	JZ pfdone
	TESTQ AX, AX
	JNZ pfw
pfr:
	PREFETCHT0 (SI)
	ADDQ $64, SI
	DECQ CX
	JNZ pfr
	RET
pfw:
	BYTE $0x0F; BYTE $0x0D; BYTE $0x0E // PREFETCHW (SI)
	ADDQ $64, SI
	DECQ CX
	JNZ pfw
pfdone:
	RET
