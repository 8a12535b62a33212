package onnxio

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

func TestFloat16(t *testing.T) {
	for _, tc := range []struct {
		h uint16
		f float32
	}{
		{0x0000, 0},
		{0x3c00, 1},
		{0xc000, -2},
		{0x3800, 0.5},
		{0x3555, 0.333251953125},
		{0x7bff, 65504},
		{0x0400, 1.0 / (1 << 14)},       // smallest normal
		{0x0001, 1.0 / (1 << 24)},       // smallest subnormal
		{0x03ff, 1023.0 / (1 << 24)},    // largest subnormal
		{0x8001, -1.0 / (1 << 24)},      // negative subnormal
		{0x7c00, float32(math.Inf(1))},  // +Inf
		{0xfc00, float32(math.Inf(-1))}, // -Inf
		{0x4248, 3.140625},              // pi, rounded
		{0xd640, -100},                  //
		{0x5640, 100},                   //
		{0x1400, 1.0 / (1 << 10)},       //
		{0x0200, 1.0 / (1 << 15)},       // subnormal 2^-15
		{0xbc00, -1},                    //
		{0x3bff, 1 - 1.0/(1<<11)},       // just below 1
		{0x3c01, 1 + 1.0/(1<<10)},       // just above 1
		{0x7800, 32768},                 //
		{0x8000, float32(math.Copysign(0, -1))},
	} {
		if got := Float16ToFloat32(tc.h); got != tc.f || math.Signbit(float64(got)) != math.Signbit(float64(tc.f)) {
			t.Errorf("Float16ToFloat32(%#04x) = %v, want %v", tc.h, got, tc.f)
		}
		if got := Float32ToFloat16(tc.f); got != tc.h {
			t.Errorf("Float32ToFloat16(%v) = %#04x, want %#04x", tc.f, got, tc.h)
		}
	}
	if f := Float16ToFloat32(0x7e00); !math.IsNaN(float64(f)) {
		t.Errorf("0x7e00 gives %v, want NaN", f)
	}
	if h := Float32ToFloat16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("NaN gives %#04x", h)
	}
	// Every half value survives half -> float32 -> half.
	for h := 0; h < 1<<16; h++ {
		f := Float16ToFloat32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if back := Float32ToFloat16(f); back != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, back)
		}
	}
	// Rounding to nearest, ties to even.
	for _, tc := range []struct {
		f float32
		h uint16
	}{
		{1 + 1.0/(1<<11), 0x3c00},             // tie, down to even
		{1 + 3.0/(1<<11), 0x3c02},             // tie, up to even
		{1 + 1.0/(1<<11) + 1e-7, 0x3c01},      // above the tie
		{65519, 0x7bff},                       // below the tie with Inf
		{65520, 0x7c00},                       // tie with Inf rounds to even: Inf
		{1e6, 0x7c00},                         // overflow
		{-1e6, 0xfc00},                        //
		{1.0 / (1 << 25), 0x0000},             // half the smallest subnormal: tie to 0
		{1.5 / (1 << 25), 0x0001},             // above it
		{3.0 / (1 << 25), 0x0002},             // 1.5 subnormal steps: tie to even 2
		{1e-10, 0x0000},                       // underflow
		{(1 << 14) * 1.0 / (1 << 28), 0x0400}, // 2^-14
	} {
		if got := Float32ToFloat16(tc.f); got != tc.h {
			t.Errorf("Float32ToFloat16(%v) = %#04x, want %#04x", tc.f, got, tc.h)
		}
	}
}

func TestBFloat16(t *testing.T) {
	for _, tc := range []struct {
		h uint16
		f float32
	}{
		{0x3f80, 1},
		{0xc040, -3},
		{0x4049, 3.140625},
		{0x7f80, float32(math.Inf(1))},
		{0x0001, math.Float32frombits(0x00010000)},
		{0x7f7f, math.Float32frombits(0x7f7f0000)},
	} {
		if got := BFloat16ToFloat32(tc.h); got != tc.f {
			t.Errorf("BFloat16ToFloat32(%#04x) = %v, want %v", tc.h, got, tc.f)
		}
		if got := Float32ToBFloat16(tc.f); got != tc.h {
			t.Errorf("Float32ToBFloat16(%v) = %#04x, want %#04x", tc.f, got, tc.h)
		}
	}
	for h := 0; h < 1<<16; h++ {
		f := BFloat16ToFloat32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if back := Float32ToBFloat16(f); back != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, back)
		}
	}
	for _, tc := range []struct {
		f float32
		h uint16
	}{
		{1 + 1.0/(1<<8), 0x3f80},        // tie to even (down)
		{1 + 3.0/(1<<8), 0x3f82},        // tie to even (up)
		{1 + 1.0/(1<<8) + 1e-6, 0x3f81}, // above the tie
		{math.MaxFloat32, 0x7f80},       // rounds up to Inf
	} {
		if got := Float32ToBFloat16(tc.f); got != tc.h {
			t.Errorf("Float32ToBFloat16(%v) = %#04x, want %#04x", tc.f, got, tc.h)
		}
	}
	if h := Float32ToBFloat16(float32(math.NaN())); !math.IsNaN(float64(BFloat16ToFloat32(h))) {
		t.Errorf("NaN gives %#04x", h)
	}
}

// le packs values of the given byte width little endian.
func le(width int, vals ...uint64) []byte {
	b := make([]byte, width*len(vals))
	for i, v := range vals {
		switch width {
		case 1:
			b[i] = byte(v)
		case 2:
			binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
		case 8:
			binary.LittleEndian.PutUint64(b[8*i:], v)
		}
	}
	return b
}

func TestTensorConversion(t *testing.T) {
	type tc struct {
		name   string
		t      *onnxpb.TensorProto
		floats []float32
		ints   []int64 // nil: TensorInt64s must fail
	}
	tensor := func(dt int32, n int64) *onnxpb.TensorProto {
		return &onnxpb.TensorProto{DataType: proto.Int32(dt), Dims: []int64{n}}
	}
	with := func(x *onnxpb.TensorProto, f func(*onnxpb.TensorProto)) *onnxpb.TensorProto { f(x); return x }
	m1 := uint64(math.MaxUint64)
	cases := []tc{
		{"float typed", with(tensor(TypeFloat, 2), func(x *onnxpb.TensorProto) { x.FloatData = []float32{1.5, -2} }), []float32{1.5, -2}, nil},
		{"float raw", with(tensor(TypeFloat, 2), func(x *onnxpb.TensorProto) {
			x.RawData = le(4, uint64(math.Float32bits(1.5)), uint64(math.Float32bits(-2)))
		}), []float32{1.5, -2}, nil},
		{"double typed", with(tensor(TypeDouble, 2), func(x *onnxpb.TensorProto) { x.DoubleData = []float64{0.25, 1e300} }), []float32{0.25, float32(math.Inf(1))}, nil},
		{"double raw", with(tensor(TypeDouble, 1), func(x *onnxpb.TensorProto) { x.RawData = le(8, math.Float64bits(-0.5)) }), []float32{-0.5}, nil},
		{"float16 typed", with(tensor(TypeFloat16, 3), func(x *onnxpb.TensorProto) { x.Int32Data = []int32{0x3c00, 0xc000, 0x3800} }), []float32{1, -2, 0.5}, nil},
		{"float16 raw", with(tensor(TypeFloat16, 2), func(x *onnxpb.TensorProto) { x.RawData = le(2, 0x3c00, 0x7bff) }), []float32{1, 65504}, nil},
		{"bfloat16 typed", with(tensor(TypeBFloat16, 2), func(x *onnxpb.TensorProto) { x.Int32Data = []int32{0x3f80, 0xc040} }), []float32{1, -3}, nil},
		{"bfloat16 raw", with(tensor(TypeBFloat16, 1), func(x *onnxpb.TensorProto) { x.RawData = le(2, 0x4049) }), []float32{3.140625}, nil},
		{"int8 typed", with(tensor(TypeInt8, 3), func(x *onnxpb.TensorProto) { x.Int32Data = []int32{-128, 127, -1} }), []float32{-128, 127, -1}, []int64{-128, 127, -1}},
		{"int8 raw", with(tensor(TypeInt8, 3), func(x *onnxpb.TensorProto) { x.RawData = []byte{0x80, 0x7f, 0xff} }), []float32{-128, 127, -1}, []int64{-128, 127, -1}},
		{"uint8 typed", with(tensor(TypeUint8, 2), func(x *onnxpb.TensorProto) { x.Int32Data = []int32{255, 300} }), []float32{255, 44}, []int64{255, 44}},
		{"uint8 raw", with(tensor(TypeUint8, 2), func(x *onnxpb.TensorProto) { x.RawData = []byte{255, 7} }), []float32{255, 7}, []int64{255, 7}},
		{"int16 raw", with(tensor(TypeInt16, 2), func(x *onnxpb.TensorProto) { x.RawData = le(2, 0x8000, 5) }), []float32{-32768, 5}, []int64{-32768, 5}},
		{"int16 typed", with(tensor(TypeInt16, 1), func(x *onnxpb.TensorProto) { x.Int32Data = []int32{-300} }), []float32{-300}, []int64{-300}},
		{"uint16 raw", with(tensor(TypeUint16, 1), func(x *onnxpb.TensorProto) { x.RawData = le(2, 0xffff) }), []float32{65535}, []int64{65535}},
		{"uint16 typed", with(tensor(TypeUint16, 1), func(x *onnxpb.TensorProto) { x.Int32Data = []int32{65535} }), []float32{65535}, []int64{65535}},
		{"int32 raw", with(tensor(TypeInt32, 2), func(x *onnxpb.TensorProto) { x.RawData = le(4, 0x80000000, 12) }), []float32{-2147483648, 12}, []int64{-2147483648, 12}},
		{"int32 typed", with(tensor(TypeInt32, 1), func(x *onnxpb.TensorProto) { x.Int32Data = []int32{-7} }), []float32{-7}, []int64{-7}},
		{"int64 raw", with(tensor(TypeInt64, 2), func(x *onnxpb.TensorProto) { x.RawData = le(8, m1, 1<<40) }), []float32{-1, 1 << 40}, []int64{-1, 1 << 40}},
		{"int64 typed", with(tensor(TypeInt64, 1), func(x *onnxpb.TensorProto) { x.Int64Data = []int64{math.MinInt64} }), []float32{math.MinInt64}, []int64{math.MinInt64}},
		{"uint32 raw", with(tensor(TypeUint32, 1), func(x *onnxpb.TensorProto) { x.RawData = le(4, 0xffffffff) }), []float32{4294967295}, []int64{4294967295}},
		{"uint32 typed", with(tensor(TypeUint32, 1), func(x *onnxpb.TensorProto) { x.Uint64Data = []uint64{0xffffffff} }), []float32{4294967295}, []int64{4294967295}},
		{"uint64 raw", with(tensor(TypeUint64, 1), func(x *onnxpb.TensorProto) { x.RawData = le(8, 1<<63-1) }), []float32{1 << 63}, []int64{1<<63 - 1}},
		{"uint64 typed too big", with(tensor(TypeUint64, 1), func(x *onnxpb.TensorProto) { x.Uint64Data = []uint64{m1} }), []float32{1 << 64}, nil},
		{"bool typed", with(tensor(TypeBool, 3), func(x *onnxpb.TensorProto) { x.Int32Data = []int32{0, 1, 5} }), []float32{0, 1, 1}, []int64{0, 1, 1}},
		{"bool raw", with(tensor(TypeBool, 2), func(x *onnxpb.TensorProto) { x.RawData = []byte{1, 0} }), []float32{1, 0}, []int64{1, 0}},
		{"int4 raw", with(tensor(TypeInt4, 3), func(x *onnxpb.TensorProto) { x.RawData = []byte{0x8f, 0x07} }), []float32{-1, -8, 7}, []int64{-1, -8, 7}},
		{"int4 typed", with(tensor(TypeInt4, 3), func(x *onnxpb.TensorProto) { x.Int32Data = []int32{0x8f, 0x07} }), []float32{-1, -8, 7}, []int64{-1, -8, 7}},
		{"uint4 raw", with(tensor(TypeUint4, 2), func(x *onnxpb.TensorProto) { x.RawData = []byte{0xf1} }), []float32{1, 15}, []int64{1, 15}},
		{"int2 raw", with(tensor(TypeInt2, 5), func(x *onnxpb.TensorProto) { x.RawData = []byte{0b00_01_10_11, 0b01} }), []float32{-1, -2, 1, 0, 1}, []int64{-1, -2, 1, 0, 1}},
		{"uint2 raw", with(tensor(TypeUint2, 4), func(x *onnxpb.TensorProto) { x.RawData = []byte{0b11_10_01_00} }), []float32{0, 1, 2, 3}, []int64{0, 1, 2, 3}},
		{"scalar", &onnxpb.TensorProto{DataType: proto.Int32(TypeFloat), FloatData: []float32{4}}, []float32{4}, nil},
		{"empty", &onnxpb.TensorProto{DataType: proto.Int32(TypeInt64), Dims: []int64{2, 0}}, []float32{}, []int64{}},
	}
	for _, c := range cases {
		got, err := TensorFloat32s(c.t, "", DefaultLimits())
		if err != nil {
			t.Errorf("%s: TensorFloat32s: %v", c.name, err)
		} else if !slices.Equal(got, c.floats) {
			t.Errorf("%s: TensorFloat32s = %v, want %v", c.name, got, c.floats)
		}
		ints, err := TensorInt64s(c.t, "", DefaultLimits())
		switch {
		case c.ints == nil && err == nil:
			t.Errorf("%s: TensorInt64s = %v, want an error", c.name, ints)
		case c.ints == nil:
			wantError(t, err)
		case err != nil:
			t.Errorf("%s: TensorInt64s: %v", c.name, err)
		case !slices.Equal(ints, c.ints):
			t.Errorf("%s: TensorInt64s = %v, want %v", c.name, ints, c.ints)
		}
	}
	// Unconvertible types and invalid tensors are errors.
	for _, x := range []*onnxpb.TensorProto{
		{DataType: proto.Int32(TypeString), Dims: []int64{1}, StringData: [][]byte{[]byte("a")}},
		{DataType: proto.Int32(TypeComplex64), Dims: []int64{1}, FloatData: []float32{1, 2}},
		{DataType: proto.Int32(TypeFloat8E4M3FN), Dims: []int64{1}, RawData: []byte{1}},
		{DataType: proto.Int32(TypeFloat), Dims: []int64{2}, FloatData: []float32{1}},
		{DataType: proto.Int32(TypeFloat), Dims: []int64{4}, Segment: &onnxpb.TensorProto_Segment{Begin: proto.Int64(0), End: proto.Int64(1)}, FloatData: []float32{1}},
		nil,
	} {
		if v, err := TensorFloat32s(x, "", DefaultLimits()); err == nil {
			t.Errorf("TensorFloat32s(%v) = %v, want an error", x, v)
		} else {
			wantError(t, err)
		}
	}
	_, err := TensorInt64s(NewFloat32Tensor("w", nil, []float32{1}), "", DefaultLimits())
	wantError(t, err, `tensor["w"]: FLOAT tensor does not hold integers`)
}

func TestNewTensors(t *testing.T) {
	check := func(x *onnxpb.TensorProto, dt int32, want []float32) {
		t.Helper()
		if err := ValidateTensor(x, DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		if x.GetDataType() != dt || len(x.RawData) == 0 && len(want) > 0 {
			t.Fatalf("%s: type %d, %d raw bytes", x.GetName(), x.GetDataType(), len(x.RawData))
		}
		got, err := TensorFloat32s(x, "", DefaultLimits())
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%s: %v %v, want %v", x.GetName(), got, err, want)
		}
	}
	check(NewFloat32Tensor("f", []int64{2, 2}, []float32{1, -2, 3.5, 0}), TypeFloat, []float32{1, -2, 3.5, 0})
	check(NewInt64Tensor("i64", []int64{3}, []int64{-1, 0, 1 << 40}), TypeInt64, []float32{-1, 0, 1 << 40})
	check(NewInt32Tensor("i32", []int64{2}, []int32{-5, 1 << 30}), TypeInt32, []float32{-5, 1 << 30})
	check(NewInt8Tensor("i8", []int64{3}, []int8{-128, 0, 127}), TypeInt8, []float32{-128, 0, 127})
	check(NewUint8Tensor("u8", []int64{2}, []uint8{0, 255}), TypeUint8, []float32{0, 255})
	check(NewFloat32Tensor("scalar", nil, []float32{7}), TypeFloat, []float32{7})
	check(NewFloat32Tensor("empty", []int64{0, 3}, nil), TypeFloat, []float32{})
	if x := NewFloat32Tensor("f", []int64{1}, []float32{1}); x.GetName() != "f" || !slices.Equal(x.Dims, []int64{1}) {
		t.Errorf("name/dims not set: %v", x)
	}
	dims := []int64{2}
	x := NewInt64Tensor("d", dims, []int64{1, 2})
	dims[0] = 5
	if x.Dims[0] != 2 {
		t.Error("NewInt64Tensor keeps the caller's dims slice")
	}
	defer func() {
		if recover() == nil {
			t.Error("NewFloat32Tensor with too few values did not panic")
		}
	}()
	NewFloat32Tensor("bad", []int64{2, 2}, []float32{1})
}

func TestNumElements(t *testing.T) {
	for _, tc := range []struct {
		dims []int64
		n    int64
		ok   bool
	}{
		{nil, 1, true},
		{[]int64{3, 4}, 12, true},
		{[]int64{3, 0, -1}, 0, false},
		{[]int64{0, 1 << 40, 1 << 40}, 0, true},
		{[]int64{1 << 32, 1 << 31}, 0, false},
		{[]int64{1 << 31, 1 << 31}, 1 << 62, true},
	} {
		n, err := NumElements(&onnxpb.TensorProto{Dims: tc.dims})
		if tc.ok && (err != nil || n != tc.n) || !tc.ok && err == nil {
			t.Errorf("NumElements(%v) = %d, %v", tc.dims, n, err)
		}
	}
}

func TestDataTypes(t *testing.T) {
	for _, tc := range []struct {
		dt   int32
		name string
		bits int
	}{
		{TypeFloat, "FLOAT", 32},
		{TypeInt8, "INT8", 8},
		{TypeFloat16, "FLOAT16", 16},
		{TypeBFloat16, "BFLOAT16", 16},
		{TypeComplex128, "COMPLEX128", 128},
		{TypeString, "STRING", 0},
		{TypeInt4, "INT4", 4},
		{TypeUint2, "UINT2", 2},
		{TypeInt2, "INT2", 2},
		{TypeUndefined, "UNDEFINED", 0},
		{27, "DataType(27)", 0},
		{-1, "DataType(-1)", 0},
	} {
		if got := DataTypeName(tc.dt); got != tc.name {
			t.Errorf("DataTypeName(%d) = %q, want %q", tc.dt, got, tc.name)
		}
		if got := ElemBits(tc.dt); got != tc.bits {
			t.Errorf("ElemBits(%d) = %d, want %d", tc.dt, got, tc.bits)
		}
	}
	for dt := int32(1); dt <= 26; dt++ {
		if !KnownDataType(dt) || ElemBits(dt) == 0 && dt != TypeString {
			t.Errorf("type %d: known %v, bits %d", dt, KnownDataType(dt), ElemBits(dt))
		}
		if IsFloatType(dt) == IsIntegerType(dt) && dt != TypeString {
			t.Errorf("type %s is float %v and integer %v", DataTypeName(dt), IsFloatType(dt), IsIntegerType(dt))
		}
	}
}
