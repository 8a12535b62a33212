package supernet

import (
	"fmt"
	"math"
	"strings"

	"github.com/qnas/qnas/internal/field"
)

// FillFraction is how close to its budget a derived architecture should come: below
// FillFraction × Budget.Cost the derivation keeps trying combined moves (docs/method.md,
// "Derivation").
const FillFraction = 0.98

// Budget is a cost limit resolved once against a model and a cost model: the search's
// projection, the derivation and the reports all read this value.
type Budget struct {
	Cost      float64 // the most an architecture may cost, in the cost model's unit
	Reference float64 // the model's cost at the reference pair (CostModel.Reference)
	Min       float64 // the cheapest architecture of the search space
}

// Ratio returns the budget as a fraction of the reference cost.
func (b Budget) Ratio() float64 { return b.Cost / b.Reference }

// Fill returns the cost below which a derivation is not yet close enough to the budget.
func (b Budget) Fill() float64 { return FillFraction * b.Cost }

// NewBudget resolves a budget for the supernet sn under m: a ratio of the reference cost
// (0 < ratio ≤ 1), or, when ratio is 0, an absolute cost in m's unit. Errors name the
// field Budget: a budget that is not finite and positive, an absolute cost above the
// reference (nothing to compress), or one below the cheapest architecture of the space
// (a *BudgetError).
func NewBudget(sn *Supernet, m CostModel, ratio, cost float64) (Budget, error) {
	b := Budget{Reference: m.Reference(sn.Space), Min: sn.MinCost(m)}
	if err := CheckCosts(m, b.Reference); err != nil {
		return b, err
	}
	switch {
	case ratio != 0 && cost != 0:
		return b, field.Errorf("Budget", ": give a ratio or a cost, not both")
	case ratio != 0:
		if !(ratio > 0 && ratio <= 1) {
			return b, field.Errorf("Budget", " %g: a ratio is in (0, 1]", ratio)
		}
		b.Cost = ratio * b.Reference
	default:
		if !(cost > 0) || math.IsInf(cost, 0) {
			return b, field.Errorf("Budget", " %g: want a positive finite cost", cost)
		}
		if cost > b.Reference {
			return b, field.Errorf("Budget", " %s is more than the model costs at %s (%s %s): no compression is needed; give a lower cost, or a ratio ≤ 1",
				FormatCost(cost), m.referencePairName(), FormatCost(b.Reference), m.Unit())
		}
		b.Cost = cost
	}
	if b.Cost < b.Min*(1-1e-9) {
		e := field.Errorf("Budget", " %.4g: the cheapest architecture of the search space costs %.4f of the model at the reference pair (%s %s); raise the budget, or widen the search space",
			b.Ratio(), b.Min/b.Reference, FormatCost(b.Min), m.Unit())
		e.Err = &BudgetError{Budget: b.Cost, Min: b.Min}
		return b, e
	}
	return b, nil
}

// BudgetError is a budget below the cheapest architecture of the search space.
type BudgetError struct{ Budget, Min float64 }

func (e *BudgetError) Error() string {
	return fmt.Sprintf("the budget %.4g is below the cheapest architecture of the search space (%.4g)", e.Budget, e.Min)
}

// CheckCosts refuses costs that are not finite positive numbers: a target profile whose
// cost per MAC is huge makes a model's cost overflow to +Inf, and every ratio NaN. The
// error names the cost model (field CostModel, or Target for a profile).
func CheckCosts(m CostModel, costs ...float64) error {
	for _, v := range costs {
		if !(v > 0) || math.IsInf(v, 0) {
			name, what := "CostModel", m.Name()
			if t, ok := strings.CutPrefix(m.Name(), "target:"); ok {
				name, what = "Target", t
			}
			return field.Errorf(name, " %s: the model's cost under this cost model is %g %s; costs must be finite and positive (a target profile's costs must keep the model's total finite)", what, v, m.Unit())
		}
	}
	return nil
}

// referencePairName names the reference pair ("w8a8").
func (m CostModel) referencePairName() string {
	wb, ab := m.ReferencePair()
	return fmt.Sprintf("w%da%d", wb, ab)
}

// FormatCost writes a cost with a k/M/G/T suffix ("1.234G").
func FormatCost(v float64) string {
	for _, u := range []struct {
		div float64
		s   string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if v >= u.div {
			return fmt.Sprintf("%.4g%s", v/u.div, u.s)
		}
	}
	return fmt.Sprintf("%.4g", v)
}
