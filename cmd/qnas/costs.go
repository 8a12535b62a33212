package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/qnas/qnas/supernet"
)

// checkCosts refuses costs that are not finite positive numbers: a target profile whose
// cost per MAC is huge makes a model's cost overflow to +Inf, and every ratio NaN.
func checkCosts(cm supernet.CostModel, costs ...float64) error {
	for _, v := range costs {
		if !(v > 0) || math.IsInf(v, 0) {
			what := "--cost " + cm.Name()
			if t, ok := strings.CutPrefix(cm.Name(), "target:"); ok {
				what = "--target " + t
			}
			return fmt.Errorf("%s: the model's cost under this cost model is %g %s; costs must be finite and positive (a target profile's costs must keep the model's total finite)", what, v, cm.Unit())
		}
	}
	return nil
}

// budgetCost turns --budget (parsed by parseBudget) into a cost in the cost model's unit,
// given the model's reference cost. A budget above the reference is refused: the model
// at 8-bit weights and activations already fits, so there is nothing to search for.
func budgetCost(flag string, v float64, ratio bool, ref float64, cm supernet.CostModel) (float64, error) {
	if err := checkCosts(cm, ref); err != nil {
		return 0, err
	}
	if ratio {
		return v * ref, nil
	}
	if v > ref {
		return 0, usageError{fmt.Errorf("--budget %s is more than the model costs at 8-bit weights and activations (%s %s): no compression is needed; give a lower cost, or a ratio ≤ 1", flag, humanF(ref), cm.Unit())}
	}
	return v, nil
}

// checkArchCost checks, before any work, that the architecture r has a finite cost under
// cm, as has the model at w8a8 (the reference of every ratio).
func checkArchCost(cm supernet.CostModel, r *supernet.Resolved) error {
	cost, err := cm.Cost(r)
	if err != nil {
		return err
	}
	return checkCosts(cm, cost, cm.Reference(r.Space))
}
