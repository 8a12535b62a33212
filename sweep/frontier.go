package sweep

import (
	"sort"

	"github.com/qnas/qnas/supernet"
)

// UniformFrontier returns the frontier of the uniform rows (supernet.NewFrontier: each
// (wbits, abits) averaged over its seeds).
func UniformFrontier(rows []Row) supernet.Frontier {
	var measured []supernet.Vertex
	for _, r := range rows {
		if r.Kind == Uniform {
			measured = append(measured, supernet.Vertex{WBits: r.WBits, ABits: r.ABits, CostRatio: r.CostRatio, Accuracy: r.Accuracy})
		}
	}
	return supernet.NewFrontier(measured)
}

// ChooseUniform picks, from the uniform models priced by supernet.UniformCosts, the ones a
// sweep trains as its baselines, so that its frontier brackets every budget: for each
// budget, the dearest w=a model at or below it, the dearest model of any bit pair at or
// below it, and the cheapest w=a model above it. They come in increasing cost.
func ChooseUniform(cands []supernet.UniformCost, budgets []float64) []Bits {
	c := append([]supernet.UniformCost(nil), cands...)
	sort.SliceStable(c, func(i, j int) bool { return c[i].CostRatio < c[j].CostRatio })
	costs, same := make([]float64, len(c)), make([]bool, len(c))
	for i, u := range c {
		costs[i], same[i] = u.CostRatio, u.WBits == u.ABits
	}
	picked := map[Bits]bool{}
	for _, b := range budgets {
		sameBelow, anyBelow, sameAbove := supernet.Bracket(costs, same, b)
		for _, i := range []int{sameBelow, anyBelow, sameAbove} {
			if i >= 0 {
				picked[Bits{c[i].WBits, c[i].ABits}] = true
			}
		}
	}
	var out []Bits
	for _, u := range c {
		if k := (Bits{u.WBits, u.ABits}); picked[k] {
			out = append(out, k)
			delete(picked, k)
		}
	}
	return out
}
