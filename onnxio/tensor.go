package onnxio

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// tensorData validates t and returns its layout and, when its data is in raw_data
// layout (inline or external), the raw bytes. External data is read relative to dir.
func tensorData(t *onnxpb.TensorProto, dir string, lim Limits) (tensorLayout, []byte, error) {
	lim = lim.orDefault()
	if t == nil {
		return tensorLayout{}, nil, &Error{Msg: "tensor is nil"}
	}
	p := tensorPath(t)
	l, err := layout(p, t, lim)
	if err != nil {
		return l, nil, err
	}
	if l.segment {
		return l, nil, errAt(p, "segmented tensors are not supported")
	}
	switch {
	case l.external:
		raw, err := readExternal(p, t, dir, lim)
		return l, raw, err
	case l.raw:
		return l, t.RawData, nil
	}
	return l, nil, nil
}

// tensorPath names a standalone tensor in errors by its name, if it has one.
func tensorPath(t *onnxpb.TensorProto) *path {
	if t.GetName() == "" {
		return nil
	}
	return &path{fname: "tensor", key: t.GetName(), hasKey: true, index: -1}
}

// TensorFloat32s returns the values of a numeric tensor converted to float32: FLOAT,
// DOUBLE, FLOAT16, BFLOAT16, the integer types (INT2 to INT64, UINT2 to UINT64) and
// BOOL (0 or 1). The values may be in a typed field, in raw_data (little endian) or in
// an external file relative to dir. The tensor is validated first, so the result is
// allocated only once the stored data is known to hold that many elements (external
// data: once it is known to lie within lim). Integers beyond 2^24 lose precision.
func TensorFloat32s(t *onnxpb.TensorProto, dir string, lim Limits) ([]float32, error) {
	l, raw, err := tensorData(t, dir, lim)
	if err != nil {
		return nil, err
	}
	dt := t.GetDataType()
	out := make([]float32, l.n)
	le := binary.LittleEndian
	useRaw := l.raw || l.external
	switch dt {
	case TypeFloat:
		if useRaw {
			for i := range out {
				out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
			}
		} else {
			copy(out, t.FloatData)
		}
	case TypeDouble:
		if useRaw {
			for i := range out {
				out[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
			}
		} else {
			for i, v := range t.DoubleData {
				out[i] = float32(v)
			}
		}
	case TypeFloat16, TypeBFloat16:
		conv := Float16ToFloat32
		if dt == TypeBFloat16 {
			conv = BFloat16ToFloat32
		}
		if useRaw {
			for i := range out {
				out[i] = conv(le.Uint16(raw[2*i:]))
			}
		} else {
			for i, v := range t.Int32Data {
				out[i] = conv(uint16(v))
			}
		}
	default:
		if !IsIntegerType(dt) {
			return nil, errAt(tensorPath(t), "cannot convert %s to float32", DataTypeName(dt))
		}
		if err := fillInts(t, raw, useRaw, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TensorInt64s returns the values of an integer or BOOL tensor as int64, from a typed
// field, raw_data or external data (relative to dir). Floating-point and string types
// are an error, as is a UINT64 value above the int64 range.
func TensorInt64s(t *onnxpb.TensorProto, dir string, lim Limits) ([]int64, error) {
	if t != nil && !IsIntegerType(t.GetDataType()) {
		return nil, errAt(tensorPath(t), "%s tensor does not hold integers", DataTypeName(t.GetDataType()))
	}
	l, raw, err := tensorData(t, dir, lim)
	if err != nil {
		return nil, err
	}
	out := make([]int64, l.n)
	if err := fillInts(t, raw, l.raw || l.external, out); err != nil {
		return nil, err
	}
	return out, nil
}

// fillInts decodes the integer or BOOL tensor t, whose layout has been validated, into
// out (len(out) elements) from raw (little endian, if useRaw) or its typed field.
func fillInts[T float32 | int64](t *onnxpb.TensorProto, raw []byte, useRaw bool, out []T) error {
	le := binary.LittleEndian
	dt := t.GetDataType()
	switch dt {
	case TypeInt8, TypeUint8, TypeInt16, TypeUint16, TypeInt32, TypeBool:
		// int32_data holds one value per element; numpy-style truncation to the type.
		var get func(i int) int32
		if useRaw {
			switch dt {
			case TypeInt8:
				get = func(i int) int32 { return int32(int8(raw[i])) }
			case TypeUint8, TypeBool:
				get = func(i int) int32 { return int32(raw[i]) }
			case TypeInt16:
				get = func(i int) int32 { return int32(int16(le.Uint16(raw[2*i:]))) }
			case TypeUint16:
				get = func(i int) int32 { return int32(le.Uint16(raw[2*i:])) }
			case TypeInt32:
				get = func(i int) int32 { return int32(le.Uint32(raw[4*i:])) }
			}
		} else {
			get = func(i int) int32 { return t.Int32Data[i] }
		}
		for i := range out {
			v := get(i)
			switch dt {
			case TypeInt8:
				v = int32(int8(v))
			case TypeUint8:
				v = int32(uint8(v))
			case TypeInt16:
				v = int32(int16(v))
			case TypeUint16:
				v = int32(uint16(v))
			case TypeBool:
				if v != 0 {
					v = 1
				}
			}
			out[i] = T(v)
		}
	case TypeInt64:
		if useRaw {
			for i := range out {
				out[i] = T(int64(le.Uint64(raw[8*i:])))
			}
		} else {
			for i, v := range t.Int64Data {
				out[i] = T(v)
			}
		}
	case TypeUint32, TypeUint64:
		_, toInt := any(out).([]int64)
		for i := range out {
			var v uint64
			switch {
			case !useRaw:
				v = t.Uint64Data[i]
				if dt == TypeUint32 {
					v = uint64(uint32(v))
				}
			case dt == TypeUint32:
				v = uint64(le.Uint32(raw[4*i:]))
			default:
				v = le.Uint64(raw[8*i:])
			}
			if toInt && v > math.MaxInt64 {
				return errAt(tensorPath(t), "element %d = %d does not fit in int64", i, v)
			}
			out[i] = T(v)
		}
	case TypeInt4, TypeUint4, TypeInt2, TypeUint2:
		bits := uint(ElemBits(dt))
		per := 8 / int(bits)
		mask := byte(1)<<bits - 1
		signed := dt == TypeInt4 || dt == TypeInt2
		for i := range out {
			var b byte
			if useRaw {
				b = raw[i/per]
			} else {
				b = byte(t.Int32Data[i/per])
			}
			v := int64(b >> (uint(i%per) * bits) & mask)
			if signed && v >= 1<<(bits-1) {
				v -= 1 << bits
			}
			out[i] = T(v)
		}
	default:
		return errAt(tensorPath(t), "%s tensor does not hold integers", DataTypeName(dt))
	}
	return nil
}

// Float16ToFloat32 converts IEEE 754 half-precision bits to float32, exactly
// (subnormals, infinities and NaNs included).
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // infinity or NaN; keep the payload
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp != 0: // normal: rebias 15 -> 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
	case frac == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: frac * 2^-24, exact in float32.
	v := float32(frac) * (1.0 / (1 << 24))
	if sign != 0 {
		v = -v
	}
	return v
}

// Float32ToFloat16 converts a float32 to IEEE 754 half-precision bits, rounding to
// nearest, ties to even; values beyond the half range become infinities, NaNs stay NaN.
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	frac := b & 0x7fffff
	if exp == 0xff {
		if frac != 0 {
			return sign | 0x7e00 | uint16(frac>>13) // quiet NaN
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half (or zero): value = m * 2^(e-25) with the implicit bit.
		if e < -10 {
			return sign
		}
		m := frac | 0x800000
		shift := uint32(14 - e) // 13 + (1 - e)
		h := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | frac>>13
	rem := frac & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, up to infinity: still correct
	}
	return sign | uint16(h)
}

// BFloat16ToFloat32 converts bfloat16 bits (the upper half of a float32) to float32.
func BFloat16ToFloat32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// Float32ToBFloat16 converts a float32 to bfloat16 bits, rounding to nearest, ties to
// even; NaNs stay NaN.
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40 // quiet NaN
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// newTensor builds a tensor of type dt with raw_data. It panics if len(data) is not
// the element count of dims: that is a programming error of the caller.
func newTensor(name string, dt int32, dims []int64, count int, raw []byte) *onnxpb.TensorProto {
	n, err := countElements(nil, dims, math.MaxInt64)
	if err != nil || n != int64(count) {
		panic(fmt.Sprintf("onnxio: tensor %q: %d values do not fill dims %v", name, count, dims))
	}
	return &onnxpb.TensorProto{
		Name:     proto.String(name),
		DataType: proto.Int32(dt),
		Dims:     append([]int64{}, dims...),
		RawData:  raw,
	}
}

// NewFloat32Tensor returns a FLOAT tensor holding data in raw_data (little endian).
// len(data) must be the product of dims (1 for a scalar, dims empty); otherwise it
// panics. The same holds for the other New*Tensor functions.
func NewFloat32Tensor(name string, dims []int64, data []float32) *onnxpb.TensorProto {
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return newTensor(name, TypeFloat, dims, len(data), raw)
}

// NewInt64Tensor returns an INT64 tensor holding data in raw_data.
func NewInt64Tensor(name string, dims []int64, data []int64) *onnxpb.TensorProto {
	raw := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	return newTensor(name, TypeInt64, dims, len(data), raw)
}

// NewInt32Tensor returns an INT32 tensor holding data in raw_data.
func NewInt32Tensor(name string, dims []int64, data []int32) *onnxpb.TensorProto {
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], uint32(v))
	}
	return newTensor(name, TypeInt32, dims, len(data), raw)
}

// NewInt8Tensor returns an INT8 tensor holding data in raw_data.
func NewInt8Tensor(name string, dims []int64, data []int8) *onnxpb.TensorProto {
	raw := make([]byte, len(data))
	for i, v := range data {
		raw[i] = byte(v)
	}
	return newTensor(name, TypeInt8, dims, len(data), raw)
}

// NewUint8Tensor returns a UINT8 tensor holding data in raw_data.
func NewUint8Tensor(name string, dims []int64, data []uint8) *onnxpb.TensorProto {
	return newTensor(name, TypeUint8, dims, len(data), append([]byte{}, data...))
}

// NewInt4Tensor returns an INT4 tensor holding data packed two values to a byte of
// raw_data, the first in the low nibble (the ONNX layout). Values must lie in [-8, 7].
func NewInt4Tensor(name string, dims []int64, data []int8) *onnxpb.TensorProto {
	raw := make([]byte, (len(data)+1)/2)
	for i, v := range data {
		raw[i/2] |= byte(v&0xf) << (4 * uint(i%2))
	}
	return newTensor(name, TypeInt4, dims, len(data), raw)
}

// NewUint4Tensor returns a UINT4 tensor packed like NewInt4Tensor. Values must lie in
// [0, 15].
func NewUint4Tensor(name string, dims []int64, data []uint8) *onnxpb.TensorProto {
	raw := make([]byte, (len(data)+1)/2)
	for i, v := range data {
		raw[i/2] |= (v & 0xf) << (4 * uint(i%2))
	}
	return newTensor(name, TypeUint4, dims, len(data), raw)
}
