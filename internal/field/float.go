package field

import (
	"math"
	"strconv"
)

// Range is a range a float setting may take; every range excludes NaN and ±Inf.
type Range int

const (
	Positive    Range = iota // (0, ∞)
	NonNegative              // [0, ∞)
	Fraction                 // [0, 1]
	BelowOne                 // [0, 1)
)

// Holds reports whether v lies in the range.
func (r Range) Holds(v float64) bool {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return false
	}
	switch r {
	case Positive:
		return v > 0
	case NonNegative:
		return v >= 0
	case Fraction:
		return v >= 0 && v <= 1
	}
	return v >= 0 && v < 1
}

func (r Range) String() string {
	return [...]string{"a positive finite number", "a finite number ≥ 0", "a number in [0, 1]", "a number in [0, 1)"}[r]
}

// Float is a float setting's name, value and the range it must lie in.
type Float struct {
	Name  string
	Value float64
	Range Range
}

// CheckFloats returns an error naming the first setting whose value lies outside its
// range (NaN and ±Inf never lie inside).
func CheckFloats(fs ...Float) error {
	for _, f := range fs {
		if !f.Range.Holds(f.Value) {
			return Errorf(f.Name, " %s: want %s", strconv.FormatFloat(f.Value, 'g', -1, 64), f.Range)
		}
	}
	return nil
}
