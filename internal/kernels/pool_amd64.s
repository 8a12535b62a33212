//go:build amd64 && !purego

#include "textflag.h"

// KEY sets dst to the order key of the floats in v, an int32 that orders
// as the floats do, with -0 equal to +0 and every NaN (of either sign) at
// MaxInt32, so that the first maximum in scan order, or the first NaN, is
// the first key larger than all before it: for the bits b of a float and
// s = b >> 31 (arithmetic), (b ^ (s & MaxInt32)) + (s & 1), or MaxInt32
// where b & MaxInt32 > the bits of +Inf. Z29 holds MaxInt32 in every lane,
// Z28 the bits of +Inf; it clobbers t, s and K2.
#define KEY(v, dst, s, t) VPSRAD $31, v, s; VPANDD Z29, s, t; VPXORD t, v, dst; VPSRLD $31, v, t; VPADDD t, dst, dst; VPANDD Z29, v, t; VPCMPGTD Z28, t, K2; VMOVDQA32 Z29, K2, dst

// TAKE makes the lanes where key k beats the best key so far (Z26) take it
// and the candidate index base (Z27) + off, off a vector of offsets.
#define TAKE(k, off, t) VPCMPGTD Z26, k, K1; VMOVDQA32 k, K1, Z26; VPADDD off, Z27, t; VMOVDQA32 t, K1, Z25

// ROW takes the three taps of window row r (pointer p) for 16 windows:
// columns 2i, 2i+1 and 2i+2 of lane i, read as the even and odd lanes of
// the 32 floats at p and the even lanes of the 32 at p+8 bytes.
#define ROW(p, o0, o1, o2) VMOVDQU32 (p), Z10; VMOVDQU32 64(p), Z11; VMOVDQU32 8(p), Z12; VMOVDQU32 72(p), Z13; VMOVDQA32 Z31, Z14; VPERMI2D Z11, Z10, Z14; VMOVDQA32 Z30, Z15; VPERMI2D Z11, Z10, Z15; VMOVDQA32 Z31, Z16; VPERMI2D Z13, Z12, Z16; KEY(Z14, Z17, Z18, Z19); TAKE(Z17, o0, Z20); KEY(Z15, Z17, Z18, Z19); TAKE(Z17, o1, Z20); KEY(Z16, Z17, Z18, Z19); TAKE(Z17, o2, Z20)

// func maxPool3s2x16(x *float32, wp int, win *int32, n, base int, idx *uint32)
// For n groups of 16 windows of 3×3 at stride 2, the first window's
// top-left pixel at x (plane index base, row pitch wp bytes), groups 32
// columns apart: win[i] = the plane index of the window's first maximum in
// row-major order (a NaN as soon as one is met), as argmax in pool.go.
// idx points at the even lanes 0, 2, …, 30 and then the odd ones (winoIdx).
TEXT ·maxPool3s2x16(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ wp+8(FP), DX
	MOVQ win+16(FP), DI
	MOVQ n+24(FP), CX
	MOVQ base+32(FP), BX
	MOVQ idx+40(FP), AX
	VMOVDQU32 (AX), Z31
	VMOVDQU32 64(AX), Z30
	VPBROADCASTD poolMaxInt<>(SB), Z29
	VPBROADCASTD poolInf<>(SB), Z28
	// Z0…Z8: the offsets of tap (kh, kw), kh·W + kw, W = wp/4.
	MOVQ DX, AX
	SHRQ $2, AX
	VPXORD Z0, Z0, Z0
	VPBROADCASTD poolOne<>(SB), Z1
	VPADDD Z1, Z1, Z2
	VPBROADCASTD AX, Z3
	VPADDD Z1, Z3, Z4
	VPADDD Z2, Z3, Z5
	VPADDD Z3, Z3, Z6
	VPADDD Z1, Z6, Z7
	VPADDD Z2, Z6, Z8
	LEAQ (SI)(DX*1), R8
	LEAQ (R8)(DX*1), R9

loop:
	VPBROADCASTD BX, Z27
	VPADDD Z31, Z27, Z27 // lane i's window at base + 2i
	VPBROADCASTD poolMinInt<>(SB), Z26
	ROW(SI, Z0, Z1, Z2)
	ROW(R8, Z3, Z4, Z5)
	ROW(R9, Z6, Z7, Z8)
	VMOVDQU32 Z25, (DI)
	ADDQ $128, SI
	ADDQ $128, R8
	ADDQ $128, R9
	ADDQ $64, DI
	ADDQ $32, BX
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET

DATA poolOne<>+0(SB)/4, $1
GLOBL poolOne<>(SB), RODATA|NOPTR, $4

DATA poolMaxInt<>+0(SB)/4, $0x7fffffff
GLOBL poolMaxInt<>(SB), RODATA|NOPTR, $4

DATA poolMinInt<>+0(SB)/4, $0x80000000
GLOBL poolMinInt<>(SB), RODATA|NOPTR, $4

DATA poolInf<>+0(SB)/4, $0x7f800000
GLOBL poolInf<>(SB), RODATA|NOPTR, $4
