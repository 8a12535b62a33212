package main

import (
	"fmt"
	"math"
	"strconv"

	"github.com/qnas/qnas/internal/data"
)

// floatFlag is a float flag's value and the range it must lie in.
type floatFlag struct {
	flag string
	v    float64
	kind floatRange
}

// floatRange is a range a float flag may take; every range excludes NaN and ±Inf.
type floatRange int

const (
	positive    floatRange = iota // (0, ∞)
	nonNegative                   // [0, ∞)
	fraction                      // [0, 1]
	belowOne                      // [0, 1)
)

func (r floatRange) holds(v float64) bool {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return false
	}
	switch r {
	case positive:
		return v > 0
	case nonNegative:
		return v >= 0
	case fraction:
		return v >= 0 && v <= 1
	}
	return v >= 0 && v < 1
}

func (r floatRange) String() string {
	return [...]string{"a positive finite number", "a finite number ≥ 0", "a number in [0, 1]", "a number in [0, 1)"}[r]
}

// checkFloats returns a usage error naming the first flag whose value lies outside its
// range (NaN and ±Inf never lie inside).
func checkFloats(flags ...floatFlag) error {
	for _, f := range flags {
		if !f.kind.holds(f.v) {
			return usageError{fmt.Errorf("%s %s: want %s", f.flag, strconv.FormatFloat(f.v, 'g', -1, 64), f.kind)}
		}
	}
	return nil
}

// checkBatch refuses a --batch larger than the training data: no step would run, and the
// buffers of a huge batch could exhaust the memory.
func checkBatch(batch int, train *data.Dataset) error {
	if batch > train.N {
		return usageError{fmt.Errorf("--batch %d is more than the %d training samples of %s", batch, train.N, train.Source)}
	}
	return nil
}
