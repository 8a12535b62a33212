//go:build amd64 && !purego

#include "textflag.h"

// AVX-512 loops of the activation quantizer (quant.go); n is a positive multiple of 16
// unless said otherwise.

// func fakeQuant16(x, y *float32, n int, s, lo, hi float32)
// y = clamp(x/s, lo, hi) rounded half to even, times s, for n > 0 floats: 16 lanes at a
// time, the last n mod 16 under a mask.
TEXT ·fakeQuant16(SB), NOSPLIT, $0-36
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	VBROADCASTSS s+24(FP), Z29
	VBROADCASTSS lo+28(FP), Z30
	VBROADCASTSS hi+32(FP), Z31
	MOVQ CX, DX
	ANDQ $15, DX
	SHRQ $4, CX
	JZ fqtail
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
fqtail:
	TESTQ DX, DX
	JZ fqdone
	MOVL $1, AX
	SHLXL DX, AX, AX
	DECL AX
	KMOVW AX, K1
	VMOVUPS.Z (SI), K1, Z0
	VDIVPS Z29, Z0, Z0
	VMAXPS Z30, Z0, Z0
	VMINPS Z31, Z0, Z0
	VRNDSCALEPS $0x08, Z0, Z0
	VMULPS Z29, Z0, Z0
	VMOVUPS Z0, K1, (DI)
fqdone:
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

// func mixQuant16(x, y *float32, n, k int, p *MixParam)
// y = Σ_j p[j].Weight · clamp(x/p[j].Scale, p[j].Lo, p[j].Hi) rounded, times p[j].Scale.
TEXT ·mixQuant16(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ k+24(FP), R10
	MOVQ p+32(FP), R11
	SHRQ $4, CX
mq:
	VMOVUPS (SI), Z0
	VPXORD Z1, Z1, Z1
	MOVQ R11, R9
	MOVQ R10, BX
mqopt:
	VBROADCASTSS 0(R9), Z2
	VDIVPS Z2, Z0, Z3
	VMAXPS.BCST 4(R9), Z3, Z3
	VMINPS.BCST 8(R9), Z3, Z3
	VRNDSCALEPS $0x08, Z3, Z3
	VMULPS Z2, Z3, Z3
	VFMADD231PS.BCST 12(R9), Z3, Z1
	ADDQ $32, R9
	DECQ BX
	JNZ mqopt
	VMOVUPS Z1, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ mq
	VZEROUPPER
	RET

// func mixGrad16(x, dy, dx *float32, n, k int, p *MixParam, flags int, acc *float32)
// For every option j: lanes of dy where x ≥ p[j].Clip are added to acc[j·32:+16] and, when
// flags&8 (signed), those where x ≤ p[j].Low subtracted (when flags&1); dy·(the option's
// quantized x) is added to acc[j·32+16:+16] (when flags&2); dx = Σ_j p[j].Weight·dy over
// p[j].Low < x < p[j].Clip is stored (when flags&4).
TEXT ·mixGrad16(SB), NOSPLIT, $0-64
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DI
	MOVQ dx+16(FP), R8
	MOVQ n+24(FP), CX
	MOVQ k+32(FP), R10
	MOVQ p+40(FP), R11
	MOVQ flags+48(FP), R12
	MOVQ acc+56(FP), R13
	SHRQ $4, CX
mg:
	VMOVUPS (SI), Z0
	VMOVUPS (DI), Z1
	VPXORD Z4, Z4, Z4
	MOVQ R11, R9
	MOVQ R13, DX
	MOVQ R10, BX
mgopt:
	VCMPPS.BCST $0x1d, 16(R9), Z0, K1 // x ≥ clip
	VCMPPS.BCST $0x1e, 20(R9), Z0, K2 // x > low
	KANDNW K2, K1, K3
	VMOVAPS.Z Z1, K3, Z5
	VFMADD231PS.BCST 12(R9), Z5, Z4
	TESTQ $1, R12
	JZ mgq
	VMOVUPS (DX), Z6
	VADDPS Z1, Z6, K1, Z6
	TESTQ $8, R12
	JZ mgclipstore
	KNOTW K2, K4
	VSUBPS Z1, Z6, K4, Z6
mgclipstore:
	VMOVUPS Z6, (DX)
mgq:
	TESTQ $2, R12
	JZ mgnext
	VBROADCASTSS 0(R9), Z2
	VDIVPS Z2, Z0, Z3
	VMAXPS.BCST 4(R9), Z3, Z3
	VMINPS.BCST 8(R9), Z3, Z3
	VRNDSCALEPS $0x08, Z3, Z3
	VMULPS Z2, Z3, Z3
	VMOVUPS 64(DX), Z7
	VFMADD231PS Z3, Z1, Z7
	VMOVUPS Z7, 64(DX)
mgnext:
	ADDQ $32, R9
	ADDQ $128, DX
	DECQ BX
	JNZ mgopt
	TESTQ $4, R12
	JZ mgadv
	VMOVUPS Z4, (R8)
	ADDQ $64, R8
mgadv:
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ mg
	VZEROUPPER
	RET
