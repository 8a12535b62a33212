package supernet

// Bracket returns the uniform models that bracket a budget, given their costs sorted in
// increasing order and whether each has equal weight and input bits: the index of the
// dearest w=a model at or below the budget, of the dearest model of any bit pair at or
// below it, and of the cheapest w=a model above it (-1 where there is none). These are the
// baselines a searched model is compared with (the last is the budget's nominal uniform
// model, such as w4a4 for 0.25, whose 8-bit network input puts it just above).
func Bracket(costs []float64, same []bool, budget float64) (sameBelow, anyBelow, sameAbove int) {
	sameBelow, anyBelow, sameAbove = -1, -1, -1
	for i, c := range costs {
		switch {
		case c <= budget:
			anyBelow = i
			if same[i] {
				sameBelow = i
			}
		case same[i] && sameAbove < 0:
			sameAbove = i
		}
	}
	return sameBelow, anyBelow, sameAbove
}

// UniformCost is a uniform model of a space (every layer at WBits weight bits and ABits
// input bits) priced by a cost model.
type UniformCost struct {
	WBits, ABits int
	Cost         float64 // in the cost model's unit
	CostRatio    float64 // of the model at the cost model's reference pair
}

// UniformCosts prices the uniform models of every pair of wbits × abits, in that order (the
// weight bits outer). A pair the space cannot apply or the cost model cannot price (a
// device profile that does not run it) is left out.
func UniformCosts(space *Space, m CostModel, wbits, abits []int) []UniformCost {
	ref := m.Reference(space)
	var out []UniformCost
	for _, w := range wbits {
		for _, a := range abits {
			r, err := space.Resolve(&Arch{Default: &LayerSpec{WBits: []int{w}, ABits: a}})
			if err != nil {
				continue
			}
			c, err := m.Cost(r)
			if err != nil {
				continue
			}
			out = append(out, UniformCost{WBits: w, ABits: a, Cost: c, CostRatio: c / ref})
		}
	}
	return out
}
