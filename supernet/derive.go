package supernet

import (
	"fmt"
	"math"
	"slices"
)

// Derivation is a discrete architecture of a supernet: an option index for every choice.
type Derivation struct {
	sn *Supernet
	m  CostModel
	W  [][]int // per layer, per unit: index into WBits
	A  []int   // per layer: index into ABits
	G  []int   // per searched group: index into Widths

	pw   [][][]float64 // probabilities (softmax of the logits) of every option
	pa   [][]float64
	pg   [][]float64
	cost []float64 // per layer, at the current choices
}

// Derive takes the most probable option of every choice, then repairs toward the budget
// (docs/method.md, "Derivation"): while the cost is above it, it lowers the choice that
// loses the least log-probability per cost saved; then, while a raise still fits, it
// raises the choice that gains the most log-probability per cost added. Under a target profile no step
// leaves a pair the device does not run. The result costs at most b.Cost (NewBudget has
// checked that the cheapest architecture fits).
func (sn *Supernet) Derive(m CostModel, logits map[string][]float32, b Budget) (*Derivation, error) {
	d := sn.Argmax(m, logits)
	budget := b.Cost
	if !d.lower(budget, nil) {
		return nil, &BudgetError{Budget: budget, Min: sn.MinCost(m)}
	}
	d.raise(budget)
	// Single raises may all overshoot while a raise paid for by lowerings elsewhere fits (a
	// group's width up, some bits down): below b.Fill(), try the overshooting raises, best
	// first, each followed by lowering (never that choice) and raising again, and keep the
	// first that ends closer to the budget.
	for round := 0; round < 100 && d.Cost() < b.Fill(); round++ {
		improved := false
		for _, mv := range d.overshooting(budget) {
			snap, before := d.snapshot(), d.Cost()
			d.apply(mv)
			if d.lower(budget, &mv) {
				d.raise(budget)
				if d.Cost() > before*(1+1e-12) {
					improved = true
					break
				}
			}
			d.restore(snap)
		}
		if !improved {
			break
		}
	}
	// Coarse choices (widths alone) can leave every such repair short: then try each
	// overshooting raise with each single lowering elsewhere, and take the pair that ends
	// highest within the budget, as long as one raises the cost.
	for round := 0; round < 100 && d.Cost() < b.Fill(); round++ {
		if !d.pairStep(budget) {
			break
		}
		d.raise(budget)
	}
	if d.Cost() < b.Fill() {
		d.exhaust(b.Fill(), budget)
	}
	return d, nil
}

// exhaustLimit bounds the architectures exhaust enumerates.
const exhaustLimit = 1 << 16

// exhaust, in a space of at most exhaustLimit architectures (widths alone, a few layers),
// takes the most probable architecture whose cost lies in [fill, budget], if any: what no
// sequence of single steps may reach when every choice is coarse.
func (d *Derivation) exhaust(fill, budget float64) {
	type slot struct {
		at *int
		p  []float64
	}
	var slots []slot
	total := 1
	add := func(at *int, p []float64) bool {
		if len(p) > 1 {
			slots = append(slots, slot{at, p})
			total *= len(p)
		}
		return total <= exhaustLimit
	}
	for i := range d.sn.Layers {
		for u := range d.W[i] {
			if !add(&d.W[i][u], d.pw[i][u]) {
				return
			}
		}
		if !add(&d.A[i], d.pa[i]) {
			return
		}
	}
	for i := range d.sn.Groups {
		if !add(&d.G[i], d.pg[i]) {
			return
		}
	}
	orig := make([]int, len(slots))
	for j, sl := range slots {
		orig[j] = *sl.at
	}
	best := orig
	bestLogp := math.Inf(-1)
	idx := make([]int, len(slots))
	for n := 0; n < total; n++ {
		logp := 0.0
		for j, sl := range slots {
			*sl.at = idx[j]
			logp += math.Log(sl.p[idx[j]] + 1e-12)
		}
		if logp > bestLogp {
			cost := 0.0
			for l := range d.cost {
				cost += d.layerCost(l)
			}
			if cost >= fill && cost <= budget {
				best, bestLogp = slices.Clone(idx), logp
			}
		}
		for j := range idx { // the next architecture, odometer order
			if idx[j]++; idx[j] < len(slots[j].p) {
				break
			}
			idx[j] = 0
		}
	}
	for j, sl := range slots { // the best found, or back to where it was
		*sl.at = best[j]
	}
	for l := range d.cost {
		d.cost[l] = d.layerCost(l)
	}
}

// pairStep applies the overshooting raise and lowering of another choice (in a space of
// few choices, or two lowerings) that together end at the highest cost within the
// budget, above the current one (ties: the larger log-probability); false when none does.
func (d *Derivation) pairStep(budget float64) bool {
	cost := d.Cost()
	var bestUp, bestDown move
	bestCost, bestLogp, found := cost*(1+1e-12), math.Inf(-1), false
	var bestThird *move
	for _, up := range d.overshooting(budget) {
		snap := d.snapshot()
		d.apply(up)
		after := d.Cost()
		downs := d.candidates(false)
		for i, down := range downs {
			if down.same(&up) {
				continue
			}
			delta, ok := d.try(down)
			if !ok {
				continue
			}
			c, lp := after+delta, up.dlogp+down.dlogp
			if c <= budget && (c > bestCost || c == bestCost && found && lp > bestLogp) {
				bestUp, bestDown, bestThird, bestCost, bestLogp, found = up, down, nil, c, lp, true
			}
			if len(downs) > pairStepThirds || c <= budget {
				continue
			}
			// A space of few choices: a second lowering of another choice.
			inner := d.snapshot()
			d.apply(down)
			for _, third := range downs[i+1:] {
				if third.same(&up) || third.same(&down) {
					continue
				}
				delta3, ok := d.try(third)
				if !ok {
					continue
				}
				c3, lp3 := c+delta3, lp+third.dlogp
				if c3 <= budget && (c3 > bestCost || c3 == bestCost && found && lp3 > bestLogp) {
					t := third
					bestUp, bestDown, bestThird, bestCost, bestLogp, found = up, down, &t, c3, lp3, true
				}
			}
			d.restore(inner)
		}
		d.restore(snap)
	}
	if found {
		d.apply(bestUp)
		d.apply(bestDown)
		if bestThird != nil {
			d.apply(*bestThird)
		}
	}
	return found
}

// pairStepThirds bounds the lowerings for which pairStep also tries a second lowering.
const pairStepThirds = 64

// LossLogits turns estimated loss increases into the logits Derive takes, so that Derive
// minimizes the architecture's total estimated increase under the budget: increase holds,
// for every logits constant (laid out as the logits), each option's increase of the loss
// over the most precise architecture. Derive maximizes Σ log p(chosen option) = Σ α(chosen)
// − Σ (each choice's log-normalizer, the same whatever is chosen), so the logits
// α = −increase/T make it minimize Σ increase(chosen); one T for all choices keeps them
// comparable, and T = (largest |increase|)/LossLogitSpread keeps every probability far above
// the 1e-12 Derive adds before taking logarithms.
func LossLogits(increase map[string][]float64) map[string][]float32 {
	top := 0.0
	for _, v := range increase {
		for _, d := range v {
			top = max(top, math.Abs(d))
		}
	}
	scale := 1.0
	if top > 0 {
		scale = LossLogitSpread / top
	}
	out := make(map[string][]float32, len(increase))
	for name, v := range increase {
		l := make([]float32, len(v))
		for i, d := range v {
			l[i] = float32(-d * scale)
		}
		out[name] = l
	}
	return out
}

// LossLogitSpread is the widest logit difference LossLogits makes: the softmax keeps every
// option's probability above e^−10/K, where log(p + 1e-12) differs from log p by < 1e-6.
const LossLogitSpread = 10

// lower makes the best lowering step until the cost fits (never the choice of keep, when
// not nil); false when no step is left.
func (d *Derivation) lower(budget float64, keep *move) bool {
	for d.Cost() > budget {
		mv, ok := d.best(false, budget, keep)
		if !ok {
			return false
		}
		d.apply(mv)
	}
	return true
}

// raise makes the best raising step while one fits.
func (d *Derivation) raise(budget float64) {
	for {
		mv, ok := d.best(true, budget, nil)
		if !ok {
			return
		}
		d.apply(mv)
	}
}

// overshooting returns the raises that do not fit, best score first (at most 30).
func (d *Derivation) overshooting(budget float64) []move {
	cost := d.Cost()
	var out []move
	var scores []float64
	for _, mv := range d.candidates(true) {
		delta, ok := d.try(mv)
		if !ok || delta <= 0 || cost+delta <= budget {
			continue
		}
		out = append(out, mv)
		scores = append(scores, mv.dlogp/delta)
	}
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return 0
	})
	var sorted []move
	for _, i := range idx[:min(len(idx), 30)] {
		sorted = append(sorted, out[i])
	}
	return sorted
}

type snapshot struct {
	w    [][]int
	a, g []int
	cost []float64
}

func (d *Derivation) snapshot() snapshot {
	s := snapshot{a: slices.Clone(d.A), g: slices.Clone(d.G), cost: slices.Clone(d.cost)}
	for _, w := range d.W {
		s.w = append(s.w, slices.Clone(w))
	}
	return s
}

func (d *Derivation) restore(s snapshot) {
	d.W, d.A, d.G, d.cost = s.w, s.a, s.g, s.cost
}

// Argmax returns the architecture of the most probable option of every choice (under a
// target profile, moved to pairs the device runs), before any repair toward a budget.
func (sn *Supernet) Argmax(m CostModel, logits map[string][]float32) *Derivation {
	d := &Derivation{sn: sn, m: m}
	for _, lc := range sn.Layers {
		var units [][]float64
		for u := 0; u < lc.Units; u++ {
			p := []float64{1}
			if lc.WLogits != "" {
				k := len(lc.WBits)
				p = softmax(logits[lc.WLogits][u*k : (u+1)*k])
			}
			units = append(units, p)
		}
		d.pw = append(d.pw, units)
		pa := []float64{1}
		if lc.ALogits != "" {
			pa = softmax(logits[lc.ALogits])
		}
		d.pa = append(d.pa, pa)
	}
	for _, gc := range sn.Groups {
		d.pg = append(d.pg, softmax(logits[gc.Logits]))
	}
	argmax := func(p []float64) int {
		best := 0
		for i, v := range p {
			if v > p[best] {
				best = i
			}
		}
		return best
	}
	d.W = make([][]int, len(sn.Layers))
	d.A = make([]int, len(sn.Layers))
	for i := range sn.Layers {
		d.W[i] = make([]int, len(d.pw[i]))
		for u, p := range d.pw[i] {
			d.W[i][u] = argmax(p)
		}
		d.A[i] = argmax(d.pa[i])
	}
	d.G = make([]int, len(sn.Groups))
	for i, p := range d.pg {
		d.G[i] = argmax(p)
	}
	d.legalize()
	d.cost = make([]float64, len(sn.Layers))
	for i := range sn.Layers {
		d.cost[i] = d.layerCost(i)
	}
	return d
}

// Cost returns the derivation's cost.
func (d *Derivation) Cost() float64 {
	t := 0.0
	for _, c := range d.cost {
		t += c
	}
	return t
}

// change sets one choice: kind 'w' (layer i, unit u), 'a' (layer i) or 'g' (group i) to
// option to.
type change struct {
	kind byte
	i, u int
	to   int
}

// move is one step of the repair: one choice moved to its neighbouring option, with the
// changes that keep its layer on pairs the device runs (under a target profile, lowering a
// layer's input bits can take weight bits along, and raising a unit's weight bits the
// input's).
type move struct {
	changes []change
	delta   float64 // cost change
	dlogp   float64 // change of the log-probability of the architecture
}

// same reports whether the move's first change is keep's (the same choice).
func (mv move) same(keep *move) bool {
	a, b := mv.changes[0], keep.changes[0]
	return a.kind == b.kind && a.i == b.i && a.u == b.u
}

// layersOf returns the layers whose cost a move changes.
func (d *Derivation) layersOf(mv move) []int {
	var out []int
	for _, c := range mv.changes {
		if c.kind != 'g' {
			if !slices.Contains(out, c.i) {
				out = append(out, c.i)
			}
			continue
		}
		g := d.sn.Groups[c.i].Group
		for li, lc := range d.sn.Layers {
			if (lc.Layer.Out == g || slices.Contains(lc.Layer.In, g)) && !slices.Contains(out, li) {
				out = append(out, li)
			}
		}
	}
	return out
}

// set makes the changes and returns those that undo them (to apply in reverse order).
func (d *Derivation) set(cs []change) (undo []change) {
	for _, c := range cs {
		switch c.kind {
		case 'w':
			undo = append(undo, change{kind: 'w', i: c.i, u: c.u, to: d.W[c.i][c.u]})
			d.W[c.i][c.u] = c.to
		case 'a':
			undo = append(undo, change{kind: 'a', i: c.i, to: d.A[c.i]})
			d.A[c.i] = c.to
		case 'g':
			undo = append(undo, change{kind: 'g', i: c.i, to: d.G[c.i]})
			d.G[c.i] = c.to
		}
	}
	slices.Reverse(undo)
	return undo
}

// try returns the cost change of a move, and false when it leaves a pair a target does not
// run.
func (d *Derivation) try(mv move) (float64, bool) {
	undo := d.set(mv.changes)
	defer d.set(undo)
	delta := 0.0
	for _, li := range d.layersOf(mv) {
		c := d.layerCost(li)
		if math.IsInf(c, 1) {
			return 0, false
		}
		delta += c - d.cost[li]
	}
	return delta, true
}

func (d *Derivation) apply(mv move) {
	d.set(mv.changes)
	for _, li := range d.layersOf(mv) {
		d.cost[li] = d.layerCost(li)
	}
}

// candidates lists every one-step raise (up) or lowering of a choice, with the changes
// that keep its layer on pairs the device runs and the change of log-probability.
func (d *Derivation) candidates(up bool) []move {
	step := -1
	if up {
		step = 1
	}
	var out []move
	// The nearest option in the step's direction that the layer can take (options its
	// device does not run at all are stepped over).
	next := func(c change, from, n int) {
		for c.to = from + step; c.to >= 0 && c.to < n; c.to += step {
			if mv, ok := d.legalMove(c, step); ok {
				out = append(out, mv)
				return
			}
		}
	}
	for i, lc := range d.sn.Layers {
		for u := range d.W[i] {
			next(change{kind: 'w', i: i, u: u}, d.W[i][u], len(lc.WBits))
		}
		next(change{kind: 'a', i: i}, d.A[i], len(lc.ABits))
	}
	for i, gc := range d.sn.Groups {
		if to := d.G[i] + step; to >= 0 && to < len(gc.Widths) {
			c := change{kind: 'g', i: i, to: to}
			out = append(out, move{changes: []change{c}, dlogp: d.dlogp(c)})
		}
	}
	return out
}

// dlogp is the change of log-probability of setting one choice.
func (d *Derivation) dlogp(c change) float64 {
	var p []float64
	var from int
	switch c.kind {
	case 'w':
		p, from = d.pw[c.i][c.u], d.W[c.i][c.u]
	case 'a':
		p, from = d.pa[c.i], d.A[c.i]
	case 'g':
		p, from = d.pg[c.i], d.G[c.i]
	}
	return math.Log(p[c.to]+1e-12) - math.Log(p[from]+1e-12)
}

// legalMove completes the change of a layer's weight or input bits (in direction step)
// with the changes its layer needs to stay on pairs the cost model runs: after an input
// change, every unit whose weight bits do not run with it moves to the nearest that do
// (in the step's direction first); after a unit's change, the input moves to the nearest
// bits that run with it, and then the other units as above. ok is false when no such
// completion exists.
func (d *Derivation) legalMove(c change, step int) (move, bool) {
	lc := d.sn.Layers[c.i]
	runs := func(wi, ai int) bool { return d.m.Runs(lc.WBits[wi], lc.ABits[ai]) }
	w := slices.Clone(d.W[c.i])
	a := d.A[c.i]
	if c.kind == 'a' {
		a = c.to
	} else {
		w[c.u] = c.to
		if !runs(w[c.u], a) {
			na, ok := nearest(len(lc.ABits), a, step, func(k int) bool { return runs(w[c.u], k) })
			if !ok {
				return move{}, false
			}
			a = na
		}
	}
	mv := move{changes: []change{c}}
	if c.kind == 'w' && a != d.A[c.i] {
		mv.changes = append(mv.changes, change{kind: 'a', i: c.i, to: a})
	}
	for u := range w {
		if runs(w[u], a) {
			continue
		}
		if c.kind == 'w' && u == c.u {
			return move{}, false
		}
		nw, ok := nearest(len(lc.WBits), w[u], step, func(k int) bool { return runs(k, a) })
		if !ok {
			return move{}, false
		}
		mv.changes = append(mv.changes, change{kind: 'w', i: c.i, u: u, to: nw})
	}
	for _, ch := range mv.changes {
		mv.dlogp += d.dlogp(ch)
	}
	return mv, true
}

// nearest returns the option nearest to from (of n) for which ok holds, looking in the
// direction step first on ties.
func nearest(n, from, step int, ok func(int) bool) (int, bool) {
	for dist := 0; dist < n; dist++ {
		for _, k := range []int{from + dist*step, from - dist*step} {
			if k >= 0 && k < n && ok(k) {
				return k, true
			}
		}
	}
	return 0, false
}

// best returns the move to make (never one of the choice of keep, when not nil): the one
// with the largest change of log-probability per cost moved, raising (up) among the raises
// that fit, lowering among all. Both are the greedy steps of the knapsack that maximizes
// the architecture's log-probability under the budget: a raise gaining probability comes
// first, a lowering losing none; ties in loss go to the larger cost.
func (d *Derivation) best(up bool, budget float64, keep *move) (move, bool) {
	cost := d.Cost()
	var best move
	bestScore, found := math.Inf(-1), false
	for _, mv := range d.candidates(up) {
		if keep != nil && mv.same(keep) {
			continue
		}
		delta, ok := d.try(mv)
		if !ok {
			continue
		}
		var score float64
		if up {
			if delta <= 0 || cost+delta > budget {
				continue
			}
			score = mv.dlogp / delta
		} else {
			if delta >= 0 {
				continue
			}
			score = mv.dlogp / -delta
		}
		if score > bestScore {
			best, bestScore, found = mv, score, true
			best.delta = delta
		}
	}
	return best, found
}

// legalize moves every unit whose pair the cost model does not run to the nearest weight
// bits it runs with the layer's input bits, or else the input to the bits with which most
// of the layer's weight options run.
func (d *Derivation) legalize() {
	for i, lc := range d.sn.Layers {
		runs := func(w, a int) bool { return d.m.Runs(w, a) }
		for {
			bad := false
			for u := range d.W[i] {
				if runs(lc.WBits[d.W[i][u]], lc.ABits[d.A[i]]) {
					continue
				}
				bad = true
				if k, ok := nearest(len(lc.WBits), d.W[i][u], -1, func(k int) bool { return runs(lc.WBits[k], lc.ABits[d.A[i]]) }); ok {
					d.W[i][u] = k
				}
			}
			if !bad {
				break
			}
			// Some unit has no partner at this input width: take the input width with the
			// most partners and try again.
			bestA, most := d.A[i], -1
			for k, a := range lc.ABits {
				n := 0
				for _, w := range lc.WBits {
					if runs(w, a) {
						n++
					}
				}
				if n > most {
					bestA, most = k, n
				}
			}
			if bestA == d.A[i] {
				break
			}
			d.A[i] = bestA
		}
	}
}

// keep returns the kept channels of searched group i at width option k (nil: all).
func (d *Derivation) keep(i, k int) []int {
	gc := d.sn.Groups[i]
	n := gc.Keep[k]
	if n >= gc.Group.Channels {
		return nil
	}
	kept := slices.Clone(gc.Order[:n])
	slices.Sort(kept)
	return kept
}

// layerCost is the exact cost of layer i under the current choices (+Inf for a pair a
// target does not run).
func (d *Derivation) layerCost(i int) float64 {
	lc := d.sn.Layers[i]
	l := lc.Layer
	kept := func(g *Group) int {
		for gi, gc := range d.sn.Groups {
			if gc.Group == g {
				return gc.Keep[d.G[gi]]
			}
		}
		return g.Channels
	}
	keptOut, keptIn := kept(l.Out), l.keptInputs(kept)
	// The kept filters are the group's most important; their bits are their units'.
	bits := make([]int, 0, keptOut)
	per := l.Filters / lc.Units
	order := d.orderOf(l.Out)
	for _, f := range order[:keptOut] {
		bits = append(bits, lc.WBits[d.W[i][f/per]])
	}
	c, err := d.m.LayerCost(l, bits, lc.ABits[d.A[i]], keptIn)
	if err != nil {
		return math.Inf(1)
	}
	return c
}

// orderOf returns a group's channels by importance (identity for a group not searched).
func (d *Derivation) orderOf(g *Group) []int {
	for _, gc := range d.sn.Groups {
		if gc.Group == g {
			return gc.Order
		}
	}
	order := make([]int, g.Channels)
	for i := range order {
		order[i] = i
	}
	return order
}

// Resolved returns the derivation as a resolved architecture of the space.
func (d *Derivation) Resolved() *Resolved {
	s := d.sn.Space
	r := &Resolved{Space: s, Choices: make([]Choice, len(s.Layers))}
	keeps := map[*Group][]int{}
	for gi, gc := range d.sn.Groups {
		keeps[gc.Group] = d.keep(gi, d.G[gi])
	}
	for i, lc := range d.sn.Layers {
		l := lc.Layer
		c := Choice{WBits: make([]int, l.Filters), ABits: lc.ABits[d.A[i]], Keep: keeps[l.Out]}
		per := l.Filters / lc.Units
		for f := range c.WBits {
			c.WBits[f] = lc.WBits[d.W[i][f/per]]
		}
		r.Choices[l.Index] = c
	}
	return r
}

// AtFullWidth returns sn without its width choices: the same layers, bit options and
// logits, every channel group at its full width. Deriving from it gives the bits-only
// architecture of a joint search's logits.
func (sn *Supernet) AtFullWidth() *Supernet {
	c := *sn
	c.Groups = nil
	return &c
}

// CoarseLogits maps logits of sn onto coarse, a supernet of the same space and choices
// whose weight bits are chosen per coarser unit (a coarser Granularity): each unit of
// coarse takes the mean of the logits of sn's units it covers (the normalized geometric
// mean of their probabilities); input-bit and width logits are copied. Every unit of
// coarse must cover whole units of sn.
func (sn *Supernet) CoarseLogits(logits map[string][]float32, coarse *Supernet) (map[string][]float32, error) {
	if coarse.Space != sn.Space || len(coarse.Layers) != len(sn.Layers) {
		return nil, fmt.Errorf("supernet: coarse logits need a supernet of the same space")
	}
	out := map[string][]float32{}
	for name, v := range logits {
		out[name] = slices.Clone(v)
	}
	for i, lc := range sn.Layers {
		cc := coarse.Layers[i]
		if lc.WLogits == "" || cc.WLogits == "" || cc.Units == lc.Units {
			continue
		}
		if !slices.Equal(cc.WBits, lc.WBits) || lc.Units%cc.Units != 0 {
			return nil, fmt.Errorf("supernet: %s: %d units of %v bits do not map onto %d of %v", lc.Layer.Name, lc.Units, lc.WBits, cc.Units, cc.WBits)
		}
		k, per, fine := len(lc.WBits), lc.Units/cc.Units, logits[lc.WLogits]
		c := make([]float32, cc.Units*k)
		for u := range lc.Units {
			for j := range k {
				c[(u/per)*k+j] += fine[u*k+j] / float32(per)
			}
		}
		out[cc.WLogits] = c
	}
	return out, nil
}

// MinCost returns the cost of the cheapest architecture of the search space: every choice
// at its cheapest option (under a target profile, each layer at its cheapest pair it runs).
func (sn *Supernet) MinCost(m CostModel) float64 {
	total := 0.0
	for _, lc := range sn.Layers {
		l := lc.Layer
		kept := func(g *Group) int {
			for _, gc := range sn.Groups {
				if gc.Group == g {
					return gc.Keep[0]
				}
			}
			return g.Channels
		}
		keptOut, keptIn := kept(l.Out), l.keptInputs(kept)
		best := math.Inf(1)
		for _, wb := range lc.WBits {
			for _, ab := range lc.ABits {
				if c, ok := m.FilterCost(l, wb, ab, float64(l.FanInKept(keptIn))); ok {
					best = min(best, c*float64(keptOut))
				}
			}
		}
		total += best
	}
	return total
}
