//go:build amd64 && !purego

#include "textflag.h"

// AVX-512 loops of the activation quantizer (quant.go); n is a positive multiple of 16.

// func fakeQuant16(x, y *float32, n int, s, lo, hi float32)
// y = clamp(x/s, lo, hi) rounded half to even, times s.
TEXT ·fakeQuant16(SB), NOSPLIT, $0-36
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	VBROADCASTSS s+24(FP), Z29
	VBROADCASTSS lo+28(FP), Z30
	VBROADCASTSS hi+32(FP), Z31
	SHRQ $4, CX
fq:
	VMOVUPS (SI), Z0
	VDIVPS Z29, Z0, Z0
	VMAXPS Z30, Z0, Z0
	VMINPS Z31, Z0, Z0
	VRNDSCALEPS $0x08, Z0, Z0
	VMULPS Z29, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ fq
	VZEROUPPER
	RET

// func actGrad16(x, dy, dx *float32, n int, lo, hi float32, flags int, acc *[16]float32)
// dx = dy where lo < x < hi, else 0 (stored when flags&2); acc += dy where x ≥ hi and,
// when flags&1 (signed), acc −= dy where x ≤ lo, lane by lane.
TEXT ·actGrad16(SB), NOSPLIT, $0-56
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DI
	MOVQ dx+16(FP), R8
	MOVQ n+24(FP), CX
	VBROADCASTSS lo+32(FP), Z30
	VBROADCASTSS hi+36(FP), Z31
	MOVQ flags+40(FP), BX
	MOVQ acc+48(FP), DX
	VMOVUPS (DX), Z28
	SHRQ $4, CX
ag:
	VMOVUPS (SI), Z0
	VMOVUPS (DI), Z1
	VCMPPS $0x1d, Z31, Z0, K1 // x ≥ hi
	VCMPPS $0x1e, Z30, Z0, K2 // x > lo
	KANDNW K2, K1, K3         // lo < x < hi
	VADDPS Z1, Z28, K1, Z28
	TESTQ $1, BX
	JZ agstore
	KNOTW K2, K4              // x ≤ lo
	VSUBPS Z1, Z28, K4, Z28
agstore:
	TESTQ $2, BX
	JZ agnext
	VMOVAPS.Z Z1, K3, Z2
	VMOVUPS Z2, (R8)
	ADDQ $64, R8
agnext:
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ ag
	VMOVUPS Z28, (DX)
	VZEROUPPER
	RET
