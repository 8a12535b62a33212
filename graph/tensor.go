package graph

import (
	"fmt"
	"math"
	"slices"
)

// DType is the element type of a constant tensor. Activations are always float32.
type DType uint8

// Element types of constants. Integer tensors hold their values in Tensor.I whatever their
// width; the narrow types exist so that quantized weights and zero points keep the ONNX type
// they are read with or written as.
const (
	Float32 DType = iota + 1
	Int64
	Int8
	Uint8
	Int4
	Uint4
	Int32
)

// String names the type as ONNX does.
func (d DType) String() string {
	switch d {
	case Float32:
		return "float"
	case Int64:
		return "int64"
	case Int8:
		return "int8"
	case Uint8:
		return "uint8"
	case Int4:
		return "int4"
	case Uint4:
		return "uint4"
	case Int32:
		return "int32"
	}
	return fmt.Sprintf("dtype(%d)", d)
}

// IsInt reports whether tensors of the type hold integers (in Tensor.I).
func (d DType) IsInt() bool { return d >= Int64 && d <= Int32 }

// Range returns the smallest and largest value of an integer type.
func (d DType) Range() (lo, hi int64) {
	switch d {
	case Int8:
		return -128, 127
	case Uint8:
		return 0, 255
	case Int4:
		return -8, 7
	case Uint4:
		return 0, 15
	case Int32:
		return math.MinInt32, math.MaxInt32
	}
	return math.MinInt64, math.MaxInt64
}

// Tensor is a constant: weights, biases, BatchNorm parameters, or shape vectors. Float
// tensors hold F, integer tensors hold I.
type Tensor struct {
	DType DType
	Shape []int
	F     []float32
	I     []int64
}

// SymBatch stands for the symbolic batch size inside a constant-folded shape vector (the
// output of Shape on an activation, and what is computed from it).
const SymBatch int64 = -1 << 62

// NewFloat returns a float32 tensor; data is not copied.
func NewFloat(shape []int, data []float32) *Tensor {
	return &Tensor{DType: Float32, Shape: slices.Clone(shape), F: data}
}

// NewInt returns an int64 tensor; data is not copied.
func NewInt(shape []int, data []int64) *Tensor {
	return &Tensor{DType: Int64, Shape: slices.Clone(shape), I: data}
}

// NewInts returns an integer tensor of type dt (Int8, Uint8, …); data is not copied.
func NewInts(dt DType, shape []int, data []int64) *Tensor {
	return &Tensor{DType: dt, Shape: slices.Clone(shape), I: data}
}

// Len returns the number of elements.
func (t *Tensor) Len() int {
	if t.DType.IsInt() {
		return len(t.I)
	}
	return len(t.F)
}

// Clone returns a deep copy.
func (t *Tensor) Clone() *Tensor {
	return &Tensor{DType: t.DType, Shape: slices.Clone(t.Shape), F: slices.Clone(t.F), I: slices.Clone(t.I)}
}

// Ints returns the values as int64, converting floats (used for shape-like inputs).
func (t *Tensor) Ints() []int64 {
	if t.DType.IsInt() {
		return t.I
	}
	out := make([]int64, len(t.F))
	for i, v := range t.F {
		out[i] = int64(v)
	}
	return out
}

// Floats returns the values as float32, converting integers.
func (t *Tensor) Floats() []float32 {
	if t.DType == Float32 {
		return t.F
	}
	out := make([]float32, len(t.I))
	for i, v := range t.I {
		out[i] = float32(v)
	}
	return out
}
