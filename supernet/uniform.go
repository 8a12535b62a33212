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
