package graph

import "fmt"

// valueNames is the set of value names a graph uses, for passes that add values: built
// once per pass, so naming n new values costs O(n), not O(n·graph).
type valueNames struct {
	used map[string]bool
	next map[string]int // per base, the first suffix worth trying
}

// valueNames collects the names of g's constants, node outputs and inputs.
func (g *Graph) valueNames() *valueNames {
	u := &valueNames{used: make(map[string]bool, len(g.Consts)+len(g.Nodes)+len(g.Inputs)), next: map[string]int{}}
	for k := range g.Consts {
		u.used[k] = true
	}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			u.used[o] = true
		}
	}
	for _, in := range g.Inputs {
		u.used[in] = true
	}
	return u
}

// unique returns base, or base with a numeric suffix, unused so far, and marks it used.
func (u *valueNames) unique(base string) string {
	name := base
	if u.used[name] {
		k := max(u.next[base], 2)
		for ; u.used[fmt.Sprintf("%s_%d", base, k)]; k++ {
		}
		name = fmt.Sprintf("%s_%d", base, k)
		u.next[base] = k + 1
	}
	u.used[name] = true
	return name
}

// outputSet returns the graph outputs as a set.
func (g *Graph) outputSet() map[string]bool {
	m := make(map[string]bool, len(g.Outputs))
	for _, o := range g.Outputs {
		m[o] = true
	}
	return m
}
