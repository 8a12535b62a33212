package sweep

import (
	"fmt"
	"sort"

	"github.com/qnas/qnas/supernet"
)

// Vertex is a uniform model on the frontier: its bits and its cost ratio and accuracy
// (means over the seeds that finished).
type Vertex struct {
	WBits     int     `json:"wbits"`
	ABits     int     `json:"abits"`
	CostRatio float64 `json:"cost_ratio"`
	Accuracy  float64 `json:"accuracy"`
}

func (v Vertex) label() string { return fmt.Sprintf("w%da%d", v.WBits, v.ABits) }

// Frontier is the upper envelope of the uniform models in increasing cost: the models no
// cheaper-or-equal model beats in accuracy. Between two vertices the frontier is linear in
// cost (what mixing the two models' layers could be expected to reach).
type Frontier []Vertex

// UniformFrontier returns the frontier of the uniform rows, each (wbits, abits) averaged
// over its seeds.
func UniformFrontier(rows []Row) Frontier {
	type acc struct {
		v Vertex
		n int
	}
	byBits := map[Bits]*acc{}
	var order []Bits
	for _, r := range rows {
		if r.Kind != Uniform {
			continue
		}
		k := Bits{r.WBits, r.ABits}
		a, ok := byBits[k]
		if !ok {
			a = &acc{v: Vertex{WBits: r.WBits, ABits: r.ABits}}
			byBits[k] = a
			order = append(order, k)
		}
		a.v.CostRatio += r.CostRatio
		a.v.Accuracy += r.Accuracy
		a.n++
	}
	all := make([]Vertex, 0, len(order))
	for _, k := range order {
		a := byBits[k]
		a.v.CostRatio /= float64(a.n)
		a.v.Accuracy /= float64(a.n)
		all = append(all, a.v)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].CostRatio != all[j].CostRatio {
			return all[i].CostRatio < all[j].CostRatio
		}
		return all[i].Accuracy > all[j].Accuracy
	})
	var f Frontier
	for _, v := range all {
		if len(f) == 0 || v.Accuracy > f[len(f)-1].Accuracy {
			f = append(f, v)
		}
	}
	return f
}

// At returns the frontier's accuracy at a cost ratio. Outside the frontier's range the
// comparison is its nearest end (the cheapest or the dearest uniform model), and note says
// so; inside it note is empty. An empty frontier returns ok false.
func (f Frontier) At(cost float64) (acc float64, note string, ok bool) {
	if len(f) == 0 {
		return 0, "", false
	}
	first, last := f[0], f[len(f)-1]
	switch {
	case cost < first.CostRatio:
		return first.Accuracy, fmt.Sprintf("below the cheapest uniform model (%s at %.4g): compared with it", first.label(), first.CostRatio), true
	case cost > last.CostRatio:
		return last.Accuracy, fmt.Sprintf("above the dearest uniform model on the frontier (%s at %.4g): compared with it", last.label(), last.CostRatio), true
	}
	for i := 1; i < len(f); i++ {
		a, b := f[i-1], f[i]
		if cost <= b.CostRatio {
			t := (cost - a.CostRatio) / (b.CostRatio - a.CostRatio)
			return a.Accuracy + t*(b.Accuracy-a.Accuracy), "", true
		}
	}
	return first.Accuracy, "", true // a one-vertex frontier at exactly its cost
}

// UniformCost is a uniform model priced by the cost model, as a ratio of the model at w8a8.
type UniformCost struct {
	Bits
	CostRatio float64
}

// ChooseUniform picks the uniform models a sweep trains as its baselines, so that its
// frontier brackets every budget: for each budget, the dearest w=a model at or below it,
// the dearest model of any bit pair at or below it, and the cheapest w=a model above it.
// They come in increasing cost.
func ChooseUniform(cands []UniformCost, budgets []float64) []Bits {
	c := append([]UniformCost(nil), cands...)
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
				picked[c[i].Bits] = true
			}
		}
	}
	var out []Bits
	for _, u := range c {
		if picked[u.Bits] {
			out = append(out, u.Bits)
			delete(picked, u.Bits)
		}
	}
	return out
}
