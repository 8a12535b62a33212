package qnas

import (
	"math"
	"strconv"
	"strings"

	"github.com/qnas/qnas/internal/field"
	"github.com/qnas/qnas/supernet"
)

// Budget is the cost a model may have: a Ratio in (0, 1] of its cost at the reference
// pair (w8a8 for the built-in cost models), or, with Ratio 0, an absolute Cost in the cost
// model's unit. It is resolved once, against the model, into a supernet.Budget that the
// search, the derivation and the report read.
type Budget struct {
	Ratio float64
	Cost  float64
}

// ParseBudget reads a budget as the command line writes it: a ratio ("0.25"), or a cost
// with a unit suffix k, M, G or T ("1.2G"). Errors name the field Budget.
func ParseBudget(s string) (Budget, error) {
	mult := 1.0
	t := strings.TrimSpace(s)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult = 1e3
		case 'M':
			mult = 1e6
		case 'G':
			mult = 1e9
		case 'T':
			mult = 1e12
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	switch {
	case err != nil || math.IsNaN(v) || math.IsInf(v, 0):
		return Budget{}, field.Errorf("Budget", " %q: want a ratio in (0, 1] or a cost with a unit (1.2G)", s)
	case v <= 0:
		return Budget{}, field.Errorf("Budget", " %s: must be positive", s)
	case mult == 1 && v > 1:
		return Budget{}, field.Errorf("Budget", " %s: a ratio is at most 1 (for an absolute cost give a unit: k, M, G or T)", s)
	case mult == 1:
		return Budget{Ratio: v}, nil
	}
	return Budget{Cost: v * mult}, nil
}

// String writes the budget as ParseBudget reads it.
func (b Budget) String() string {
	if b.Ratio != 0 {
		return strconv.FormatFloat(b.Ratio, 'g', -1, 64)
	}
	return strconv.FormatFloat(b.Cost, 'g', -1, 64)
}

// DefaultBudget is a quarter of the model's cost at w8a8: about what uniform 4-bit weights
// and activations cost, the budget of the demo and of `qnas bench --mode search`.
var DefaultBudget = Budget{Ratio: 0.25}

// Resolve resolves the budget for the supernet sn under cm (supernet.NewBudget): the value
// the search, the derivation and the report read.
func (b Budget) Resolve(sn *supernet.Supernet, cm supernet.CostModel) (supernet.Budget, error) {
	return supernet.NewBudget(sn, cm, b.Ratio, b.Cost)
}
