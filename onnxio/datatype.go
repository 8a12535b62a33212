package onnxio

import (
	"math"
	"strconv"

	"github.com/qnas/qnas/onnxio/onnxpb"
)

// Element types of TensorProto.data_type as plain int32 values, the type of the field.
const (
	TypeUndefined      = int32(onnxpb.TensorProto_UNDEFINED)
	TypeFloat          = int32(onnxpb.TensorProto_FLOAT)
	TypeUint8          = int32(onnxpb.TensorProto_UINT8)
	TypeInt8           = int32(onnxpb.TensorProto_INT8)
	TypeUint16         = int32(onnxpb.TensorProto_UINT16)
	TypeInt16          = int32(onnxpb.TensorProto_INT16)
	TypeInt32          = int32(onnxpb.TensorProto_INT32)
	TypeInt64          = int32(onnxpb.TensorProto_INT64)
	TypeString         = int32(onnxpb.TensorProto_STRING)
	TypeBool           = int32(onnxpb.TensorProto_BOOL)
	TypeFloat16        = int32(onnxpb.TensorProto_FLOAT16)
	TypeDouble         = int32(onnxpb.TensorProto_DOUBLE)
	TypeUint32         = int32(onnxpb.TensorProto_UINT32)
	TypeUint64         = int32(onnxpb.TensorProto_UINT64)
	TypeComplex64      = int32(onnxpb.TensorProto_COMPLEX64)
	TypeComplex128     = int32(onnxpb.TensorProto_COMPLEX128)
	TypeBFloat16       = int32(onnxpb.TensorProto_BFLOAT16)
	TypeFloat8E4M3FN   = int32(onnxpb.TensorProto_FLOAT8E4M3FN)
	TypeFloat8E4M3FNUZ = int32(onnxpb.TensorProto_FLOAT8E4M3FNUZ)
	TypeFloat8E5M2     = int32(onnxpb.TensorProto_FLOAT8E5M2)
	TypeFloat8E5M2FNUZ = int32(onnxpb.TensorProto_FLOAT8E5M2FNUZ)
	TypeUint4          = int32(onnxpb.TensorProto_UINT4)
	TypeInt4           = int32(onnxpb.TensorProto_INT4)
	TypeFloat4E2M1     = int32(onnxpb.TensorProto_FLOAT4E2M1)
	TypeFloat8E8M0     = int32(onnxpb.TensorProto_FLOAT8E8M0)
	TypeUint2          = int32(onnxpb.TensorProto_UINT2)
	TypeInt2           = int32(onnxpb.TensorProto_INT2)
)

// valueField names the typed TensorProto field that holds a data type's values.
type valueField int

const (
	fieldNone valueField = iota
	fieldFloat
	fieldInt32
	fieldString
	fieldInt64
	fieldDouble
	fieldUint64
)

func (f valueField) String() string {
	switch f {
	case fieldFloat:
		return "float_data"
	case fieldInt32:
		return "int32_data"
	case fieldString:
		return "string_data"
	case fieldInt64:
		return "int64_data"
	case fieldDouble:
		return "double_data"
	case fieldUint64:
		return "uint64_data"
	}
	return "no field"
}

// typeInfo describes the storage of one data type.
type typeInfo struct {
	bits  int        // bits per element in raw_data; 0 for STRING
	field valueField // typed field holding the values
	// per is the number of typed-field values per element (2 for complex types); for
	// packed sub-byte types it is negative: -k means k elements share one value.
	per int
}

var typeInfos = [...]typeInfo{
	TypeFloat:          {32, fieldFloat, 1},
	TypeUint8:          {8, fieldInt32, 1},
	TypeInt8:           {8, fieldInt32, 1},
	TypeUint16:         {16, fieldInt32, 1},
	TypeInt16:          {16, fieldInt32, 1},
	TypeInt32:          {32, fieldInt32, 1},
	TypeInt64:          {64, fieldInt64, 1},
	TypeString:         {0, fieldString, 1},
	TypeBool:           {8, fieldInt32, 1},
	TypeFloat16:        {16, fieldInt32, 1},
	TypeDouble:         {64, fieldDouble, 1},
	TypeUint32:         {32, fieldUint64, 1},
	TypeUint64:         {64, fieldUint64, 1},
	TypeComplex64:      {64, fieldFloat, 2},
	TypeComplex128:     {128, fieldDouble, 2},
	TypeBFloat16:       {16, fieldInt32, 1},
	TypeFloat8E4M3FN:   {8, fieldInt32, 1},
	TypeFloat8E4M3FNUZ: {8, fieldInt32, 1},
	TypeFloat8E5M2:     {8, fieldInt32, 1},
	TypeFloat8E5M2FNUZ: {8, fieldInt32, 1},
	TypeUint4:          {4, fieldInt32, -2},
	TypeInt4:           {4, fieldInt32, -2},
	TypeFloat4E2M1:     {4, fieldInt32, -2},
	TypeFloat8E8M0:     {8, fieldInt32, 1},
	TypeUint2:          {2, fieldInt32, -4},
	TypeInt2:           {2, fieldInt32, -4},
}

// lookupType returns the storage description of dt; ok is false for UNDEFINED and
// unknown types.
func lookupType(dt int32) (typeInfo, bool) {
	if dt <= TypeUndefined || int(dt) >= len(typeInfos) {
		return typeInfo{}, false
	}
	return typeInfos[dt], true
}

// KnownDataType reports whether dt is a defined ONNX element type (not UNDEFINED).
func KnownDataType(dt int32) bool {
	_, ok := lookupType(dt)
	return ok
}

// DataTypeName returns the ONNX name of an element type, e.g. "FLOAT" or "INT8", or
// "DataType(N)" for a number that names no type.
func DataTypeName(dt int32) string {
	if dt == TypeUndefined {
		return "UNDEFINED"
	}
	if !KnownDataType(dt) {
		return "DataType(" + strconv.Itoa(int(dt)) + ")"
	}
	return onnxpb.TensorProto_DataType(dt).String()
}

// ElemBits returns the storage size of one element of type dt in bits: 32 for FLOAT,
// 8 for INT8, 4 for INT4, 128 for COMPLEX128. It returns 0 for STRING, UNDEFINED and
// unknown types.
func ElemBits(dt int32) int {
	ti, _ := lookupType(dt)
	return ti.bits
}

// IsFloatType reports whether dt is a real or complex floating-point type.
func IsFloatType(dt int32) bool {
	switch dt {
	case TypeFloat, TypeDouble, TypeFloat16, TypeBFloat16, TypeComplex64, TypeComplex128,
		TypeFloat8E4M3FN, TypeFloat8E4M3FNUZ, TypeFloat8E5M2, TypeFloat8E5M2FNUZ, TypeFloat4E2M1, TypeFloat8E8M0:
		return true
	}
	return false
}

// IsIntegerType reports whether dt is an integer type or BOOL.
func IsIntegerType(dt int32) bool {
	switch dt {
	case TypeUint8, TypeInt8, TypeUint16, TypeInt16, TypeInt32, TypeInt64, TypeBool, TypeUint32, TypeUint64, TypeUint4, TypeInt4, TypeUint2, TypeInt2:
		return true
	}
	return false
}

// rawBytes returns the size in bytes of n elements of a type of the given bit width in
// raw_data (sub-byte types are packed), or -1 if it does not fit in an int64.
func rawBytes(bits int, n int64) int64 {
	switch {
	case bits <= 0:
		return 0
	case bits%8 == 0:
		per := int64(bits / 8)
		if n > math.MaxInt64/per {
			return -1
		}
		return n * per
	default:
		k := int64(8 / bits) // elements per byte
		return n/k + boolInt(n%k != 0)
	}
}

// typedCount returns how many typed-field values n elements of the type take, or -1 on
// overflow.
func typedCount(ti typeInfo, n int64) int64 {
	if ti.per >= 1 {
		if n > math.MaxInt64/int64(ti.per) {
			return -1
		}
		return n * int64(ti.per)
	}
	k := int64(-ti.per)
	return n/k + boolInt(n%k != 0)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
