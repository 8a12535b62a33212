package supernet

import (
	"fmt"
	"sort"
)

// Vertex is a uniform model (every layer at WBits weight bits and ABits input bits) with
// its cost, as a ratio of the reference cost, and its accuracy.
type Vertex struct {
	WBits     int     `json:"wbits"`
	ABits     int     `json:"abits"`
	CostRatio float64 `json:"cost_ratio"`
	Accuracy  float64 `json:"accuracy"`
}

func (v Vertex) label() string { return fmt.Sprintf("w%da%d", v.WBits, v.ABits) }

// Frontier is the upper envelope of uniform models in increasing cost: the models no
// cheaper-or-equal model beats in accuracy. Between two vertices the frontier is linear in
// cost (what mixing the two models' layers could be expected to reach).
type Frontier []Vertex

// NewFrontier returns the frontier of the uniform models measured, each bit pair's cost
// ratio and accuracy averaged over the measurements of it (its seeds) in the order given.
func NewFrontier(measured []Vertex) Frontier {
	type sum struct {
		v Vertex
		n int
	}
	type pair struct{ w, a int }
	byPair := map[pair]*sum{}
	var order []pair
	for _, m := range measured {
		k := pair{m.WBits, m.ABits}
		s, ok := byPair[k]
		if !ok {
			s = &sum{v: Vertex{WBits: m.WBits, ABits: m.ABits}}
			byPair[k] = s
			order = append(order, k)
		}
		s.v.CostRatio += m.CostRatio
		s.v.Accuracy += m.Accuracy
		s.n++
	}
	all := make([]Vertex, 0, len(order))
	for _, k := range order {
		s := byPair[k]
		s.v.CostRatio /= float64(s.n)
		s.v.Accuracy /= float64(s.n)
		all = append(all, s.v)
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
