package graph

import (
	"fmt"
	"math"
)

// Limits bounds the resources that shape inference and constant folding may commit to
// on behalf of a model. ONNX files come from strangers: a few bytes can declare an
// activation of 2^60 elements or a ConstantOfShape that would fill gigabytes, so every
// limit is checked before memory proportional to it is allocated, and exceeding one is
// an error naming the node (or, for constant folding, a reason not to fold).
//
// A zero or negative field means "use the default" (see DefaultLimits). Limits travel
// with the graph (Graph.Limits) so that Canonicalize and later passes apply the same
// bounds as the import did; set them through ImportOptions.GraphLimits.
type Limits struct {
	// MaxActivationElems is the largest element count of one value per sample (the
	// product of its dimensions without the batch), for graph inputs and for every
	// inferred node output. Default 2^31 (8 GiB of float32 per sample). Larger shapes
	// are refused with an error naming the node or input; products that would overflow
	// int64 are refused the same way.
	MaxActivationElems int64
	// MaxConstFoldElems is the largest tensor constant folding creates. A node whose
	// output would be larger is left in the graph unfolded. Default 2^26.
	MaxConstFoldElems int64
	// MaxConstFoldTotal bounds the elements all constants created by one constant-folding
	// run (FoldConstants: FromONNX runs one, Canonicalize another) add up to; once it is
	// spent, further nodes are left unfolded. It stops a chain of nodes that each stay
	// under MaxConstFoldElems from adding up to gigabytes. Default 2^28.
	MaxConstFoldTotal int64
}

// Default values of Limits.
const (
	DefaultMaxActivationElems int64 = 1 << 31
	DefaultMaxConstFoldElems  int64 = 1 << 26
	DefaultMaxConstFoldTotal  int64 = 1 << 28
)

// DefaultLimits returns the default limits: 2^31 elements per activation and sample,
// 2^26 elements per folded constant and 2^28 folded elements in all.
func DefaultLimits() Limits {
	return Limits{
		MaxActivationElems: DefaultMaxActivationElems,
		MaxConstFoldElems:  DefaultMaxConstFoldElems,
		MaxConstFoldTotal:  DefaultMaxConstFoldTotal,
	}
}

// orDefault returns lim with every unset (zero or negative) field replaced by its default.
func (lim Limits) orDefault() Limits {
	d := DefaultLimits()
	if lim.MaxActivationElems <= 0 {
		lim.MaxActivationElems = d.MaxActivationElems
	}
	if lim.MaxConstFoldElems <= 0 {
		lim.MaxConstFoldElems = d.MaxConstFoldElems
	}
	if lim.MaxConstFoldTotal <= 0 {
		lim.MaxConstFoldTotal = d.MaxConstFoldTotal
	}
	return lim
}

// limits returns the graph's limits with defaults filled in.
func (g *Graph) limits() Limits { return g.Limits.orDefault() }

// checkedElems returns the element count of a per-sample shape (the caller strips a
// leading batch), or an error if a dimension is negative (a batch dimension anywhere
// else included), a single dimension exceeds limit (even next to a zero one: an empty
// tensor may not claim 2^40×0 either) or the count exceeds limit. Unlike Shape.Elems it
// never overflows.
func checkedElems(s Shape, limit int64) (int64, error) {
	zero := false
	for _, d := range s {
		if d < 0 {
			return 0, fmt.Errorf("shape %v has the negative dimension %d", []int(s), d)
		}
		if int64(d) > limit {
			return 0, fmt.Errorf("shape %v has a dimension of more than %d", []int(s), limit)
		}
		zero = zero || d == 0
	}
	if zero {
		return 0, nil
	}
	n := int64(1)
	for _, d := range s {
		if n > limit/int64(d) {
			return 0, fmt.Errorf("shape %v has more than %d elements per sample", []int(s), limit)
		}
		n *= int64(d)
	}
	return n, nil
}

// satMul returns a·b for non-negative a and b, saturating at math.MaxInt64.
func satMul(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// satAdd returns a+b for non-negative a and b, saturating at math.MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
