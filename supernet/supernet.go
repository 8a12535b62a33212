package supernet

import (
	"fmt"
	"github.com/qnas/qnas/internal/field"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/quant"
)

// SearchOptions is the search space: the choices every layer and channel group offers.
type SearchOptions struct {
	WBits []int // weight bits a choice unit may take
	ABits []int // bits a layer's input may take (the network input stays at 8)
	// Granularity of the weight bits: "layer", "group:G" (G groups of consecutive filters
	// per layer; fewer when G does not divide the filter count) or "filter".
	Granularity string
	Prune       bool      // search the width of every prunable group too
	Widths      []float64 // the width fractions a group may keep
	// PinFirst and PinLast keep the layers that read the network input, and those whose
	// output is the network's, at 8-bit weights and inputs.
	PinFirst, PinLast bool
}

// DefaultSearchOptions are the defaults of `qnas optimize` (docs/method.md).
func DefaultSearchOptions() SearchOptions {
	return SearchOptions{WBits: []int{2, 3, 4, 6, 8}, ABits: []int{2, 3, 4, 6, 8}, Granularity: "group:4",
		Widths: []float64{0.25, 0.5, 0.75, 1}}
}

// Check validates the options; errors name the field at fault.
func (o SearchOptions) Check() error {
	for _, f := range []struct {
		name string
		v    []int
	}{{"SearchOptions.WBits", o.WBits}, {"SearchOptions.ABits", o.ABits}} {
		if len(f.v) == 0 {
			return field.Errorf(f.name, " is empty: give at least one bitwidth")
		}
		for _, b := range f.v {
			if b < quant.MinBits || b > quant.MaxBits {
				return field.Errorf(f.name, " %d: bitwidths are %d..%d", b, quant.MinBits, quant.MaxBits)
			}
		}
	}
	if _, err := parseGranularity(o.Granularity, 16); err != nil {
		return err
	}
	if o.Prune && len(o.Widths) == 0 {
		return field.Errorf("SearchOptions.Widths", " is empty: give at least one width in (0, 1]")
	}
	for _, w := range o.Widths {
		if !(w > 0 && w <= 1) {
			return field.Errorf("SearchOptions.Widths", " %g: a width is a fraction of the filters in (0, 1]", w)
		}
	}
	return nil
}

// For returns the options restricted to the bits the cost model runs: weight bits that
// run with some input option (or the network input's 8 bits), input bits that run with some
// weight option. It is an error when nothing is left.
func (o SearchOptions) For(m CostModel) (SearchOptions, error) {
	abits := append(slices.Clone(o.ABits), 8)
	var w, a []int
	for _, wb := range o.WBits {
		if slices.ContainsFunc(abits, func(ab int) bool { return m.Runs(wb, ab) }) {
			w = append(w, wb)
		}
	}
	for _, ab := range o.ABits {
		if slices.ContainsFunc(w, func(wb int) bool { return m.Runs(wb, ab) }) {
			a = append(a, ab)
		}
	}
	if len(w) == 0 || len(a) == 0 {
		return o, field.Errorf("SearchOptions.WBits", " %s: %s runs none of these weight bits with any of the input bits %s (it runs %s)", joinInts(o.WBits), m.Name(), joinInts(o.ABits), m.pairList())
	}
	o.WBits, o.ABits = w, a
	return o, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// parseGranularity returns the number of choice units of a layer of the given filters.
func parseGranularity(g string, filters int) (int, error) {
	switch {
	case g == "layer":
		return 1, nil
	case g == "filter":
		return filters, nil
	case strings.HasPrefix(g, "group:"):
		n, err := strconv.Atoi(g[len("group:"):])
		if err != nil || n < 1 {
			return 0, field.Errorf("SearchOptions.Granularity", " %q: want layer, group:G (G ≥ 1) or filter", g)
		}
		// The largest divisor of the filter count not above G.
		for d := min(n, filters); d >= 1; d-- {
			if filters%d == 0 {
				return d, nil
			}
		}
	}
	return 0, field.Errorf("SearchOptions.Granularity", " %q: want layer, group:G or filter", g)
}

// checkGroups refuses a group:G granularity whose G exceeds every layer's filter count:
// such a G would silently mean one group per filter.
func (s *Space) checkGroups(g string) error {
	if !strings.HasPrefix(g, "group:") {
		return nil
	}
	n, _ := strconv.Atoi(g[len("group:"):])
	most := 0
	for _, l := range s.Layers {
		most = max(most, l.Filters)
	}
	if most > 0 && n > most {
		return field.Errorf("SearchOptions.Granularity", " %s: no layer of the model has more than %d filters; give G ≤ %d, or filter for one choice per filter", g, most, most)
	}
	return nil
}

// Supernet is a graph rewritten for the search and the meaning of each of its choices.
type Supernet struct {
	Space  *Space
	Opts   SearchOptions
	Graph  *graph.Graph
	Layers []*LayerChoices // in Space order
	Groups []*GroupChoices // the groups whose width is searched
}

// LayerChoices are one layer's choices. A choice with one option is fixed.
type LayerChoices struct {
	Layer   *Layer
	WBits   []int  // options of each unit's weight bits
	Units   int    // choice units: groups of Filters/Units consecutive filters
	WLogits string // the logits constant [Units, len(WBits)] ("" when fixed)
	ABits   []int  // options of the input's bits
	ALogits string // the logits constant [1, len(ABits)] ("" when fixed)
	Clips   string // the clips constant: [len(ABits)] for a mixed input, [1] for a fixed one
}

// GroupChoices is the width choice of one channel group.
type GroupChoices struct {
	Group  *Group
	Widths []float64
	Keep   []int // channels kept under each option
	Order  []int // the channels, most important first
	Logits string
}

// Names of what the rewrite adds for layer L and group G: L/MixedWeight, L/MixedAct (or
// L/QuantWeight, L/QuantAct when a choice is fixed), the constants L/wbits_logits,
// L/abits_logits, L/input_clips, and V/WidthMask after each value V a group's producer
// writes, with G/width_logits.
const (
	SuffixWLogits     = "/wbits_logits"
	SuffixALogits     = "/abits_logits"
	SuffixClips       = "/input_clips"
	SuffixWidthLogits = "/width_logits"
)

// NewSupernet rewrites the space's graph for the search: every layer's weight read through
// a MixedWeight over its unit's weight-bit options, its input through a MixedAct over the
// input-bit options (each with its own clip, 1 until calibrated), every channel parameter
// through a Learned node, and, with Prune, a WidthMask after every producer of each
// prunable group. Logits start at 0 (uniform).
func (s *Space) NewSupernet(opts SearchOptions) (*Supernet, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	if err := s.checkGroups(opts.Granularity); err != nil {
		return nil, err
	}
	opts.WBits, opts.ABits = sortedUnique(opts.WBits), sortedUnique(opts.ABits)
	opts.Widths = slices.Clone(opts.Widths)
	sort.Float64s(opts.Widths)
	opts.Widths = slices.Compact(opts.Widths)
	g := s.Graph.Clone()
	sn := &Supernet{Space: s, Opts: opts, Graph: g}
	byName := map[string]*graph.Node{}
	for _, n := range g.Nodes {
		byName[n.Name] = n
	}
	before := map[*graph.Node][]*graph.Node{}
	for _, l := range s.Layers {
		n := byName[l.Name]
		lc := &LayerChoices{Layer: l, WBits: opts.WBits, ABits: opts.ABits}
		if pinned := opts.PinFirst && l.First || opts.PinLast && l.Last; pinned {
			lc.WBits, lc.ABits = []int{8}, []int{8}
		}
		if l.First {
			lc.ABits = []int{8}
		}
		units, err := parseGranularity(opts.Granularity, l.Filters)
		if err != nil {
			return nil, err
		}
		lc.Units = units
		if len(lc.WBits) == 1 {
			q := &graph.Node{Name: l.Name + SuffixQuantWeight, Op: OpQuantWeight, Domain: Domain,
				Inputs: []string{n.Inputs[1]}, Outputs: []string{l.Name + SuffixWeightQuant}}
			q.SetInts("bits", []int64{int64(lc.WBits[0])})
			q.SetInt("axis", int64(l.WAxis))
			n.Inputs[1] = q.Outputs[0]
			before[n] = append(before[n], q)
			lc.Units = 1
		} else {
			lc.WLogits = l.Name + SuffixWLogits
			g.Consts[lc.WLogits] = graph.NewFloat([]int{units, len(lc.WBits)}, make([]float32, units*len(lc.WBits)))
			q := &graph.Node{Name: l.Name + "/MixedWeight", Op: OpMixedWeight, Domain: Domain,
				Inputs: []string{n.Inputs[1], lc.WLogits}, Outputs: []string{l.Name + SuffixWeightQuant}}
			q.SetInts("bits", toInt64s(lc.WBits))
			q.SetInt("axis", int64(l.WAxis))
			q.SetInt("units", int64(units))
			n.Inputs[1] = q.Outputs[0]
			before[n] = append(before[n], q)
		}
		lc.Clips = l.Name + SuffixClips
		var q *graph.Node
		if len(lc.ABits) == 1 {
			g.Consts[lc.Clips] = graph.NewFloat([]int{1}, []float32{1})
			q = &graph.Node{Name: l.Name + SuffixQuantAct, Op: OpQuantAct, Domain: Domain,
				Inputs: []string{n.Inputs[0], lc.Clips}, Outputs: []string{l.Name + SuffixInputQuant}}
			q.SetInt("bits", int64(lc.ABits[0]))
		} else {
			lc.ALogits = l.Name + SuffixALogits
			g.Consts[lc.ALogits] = graph.NewFloat([]int{1, len(lc.ABits)}, make([]float32, len(lc.ABits)))
			clips := make([]float32, len(lc.ABits))
			for i := range clips {
				clips[i] = 1
			}
			g.Consts[lc.Clips] = graph.NewFloat([]int{len(lc.ABits)}, clips)
			q = &graph.Node{Name: l.Name + "/MixedAct", Op: OpMixedAct, Domain: Domain,
				Inputs: []string{n.Inputs[0], lc.ALogits, lc.Clips}, Outputs: []string{l.Name + SuffixInputQuant}}
			q.SetInts("bits", toInt64s(lc.ABits))
		}
		if l.SignedInput {
			q.SetInt("signed", 1)
		}
		n.Inputs[0] = q.Outputs[0]
		before[n] = append(before[n], q)
		sn.Layers = append(sn.Layers, lc)
	}
	after := map[string]*graph.Node{} // masks, by the value they follow
	if opts.Prune {
		consumers := g.Consumers()
		for _, gr := range s.Groups {
			if !gr.Prunable || len(opts.Widths) == 1 && opts.Widths[0] == 1 {
				continue
			}
			gc := &GroupChoices{Group: gr, Widths: opts.Widths, Order: s.Importance(gr), Logits: gr.Name() + SuffixWidthLogits}
			for _, w := range opts.Widths {
				gc.Keep = append(gc.Keep, KeptChannels(w, gr.Channels))
			}
			g.Consts[gc.Logits] = graph.NewFloat([]int{1, len(gc.Widths)}, make([]float32, len(gc.Widths)))
			for _, p := range gr.Producers {
				// After the BatchNormalization or bias Add that follows (maskPoint), and
				// after a ReLU that alone reads that (the mask is non-negative, so it
				// commutes with the ReLU and the engine's BatchNorm+ReLU fusion survives).
				v := s.maskPoint(p, consumers)
				if cs := consumers[v]; len(cs) == 1 && cs[0].Op == "Relu" && !g.IsOutput(v) {
					v = cs[0].Outputs[0]
				}
				m := &graph.Node{Name: v + "/WidthMask", Op: OpWidthMask, Domain: Domain, Inputs: []string{v + "/unmasked", gc.Logits},
					Outputs: []string{v}}
				m.SetFloats("widths", toFloat32s(gc.Widths))
				m.SetInts("order", toInt64s(gc.Order))
				if axis := s.chans[v].axis; axis != 1 {
					m.SetInt("axis", int64(axis))
				}
				after[v] = m
			}
			sn.Groups = append(sn.Groups, gc)
		}
	}
	var out []*graph.Node
	for _, n := range g.Nodes {
		out = append(out, before[n]...)
		out = append(out, n)
		for i, o := range n.Outputs {
			if m := after[o]; m != nil {
				n.Outputs[i] = o + "/unmasked"
				out = append(out, m)
			}
		}
	}
	g.Nodes = out
	s.learnChannelParams(g)
	if err := g.Rebuild(g.Nodes); err != nil {
		return nil, fmt.Errorf("supernet: %w", err)
	}
	return sn, nil
}

func sortedUnique(v []int) []int {
	out := slices.Clone(v)
	slices.Sort(out)
	return slices.Compact(out)
}

func toFloat32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// softmax returns the softmax of v.
func softmax(v []float32) []float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, float64(x))
	}
	out := make([]float64, len(v))
	sum := 0.0
	for i, x := range v {
		out[i] = math.Exp(float64(x) - m)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// AddExpectationGrad adds to da the gradient of the expectation Σ_k p_k·v_k under
// p = softmax(a) with respect to the logits a.
func AddExpectationGrad(a []float32, v []float64, da []float32) { softmaxGrad(softmax(a), v, da) }

// softmaxGrad adds to da the gradient through softmax p of dp: p_k·(dp_k − Σ p·dp).
func softmaxGrad(p, dp []float64, da []float32) {
	dot := 0.0
	for k := range p {
		dot += p[k] * dp[k]
	}
	for k := range p {
		da[k] += float32(p[k] * (dp[k] - dot))
	}
}

// ExpectedCost returns the expected cost of the architecture the logits describe (the
// probabilities of every choice are the softmax of its logits) and adds its gradient with
// respect to each logits constant, scaled by scale, to grads (keyed by constant name; nil
// to skip). logits maps the constant names to their values. Width choices enter as the
// expected fraction of channels a group keeps. Pairs a target profile does not run are
// priced at its most expensive pair.
func (sn *Supernet) ExpectedCost(m CostModel, logits map[string][]float32, grads map[string][]float32, scale float64) float64 {
	var sink func(name string, off int, p, dp []float64)
	if grads != nil {
		sink = func(name string, off int, p, dp []float64) {
			for i := range dp {
				dp[i] *= scale
			}
			softmaxGrad(p, dp, grads[name][off:off+len(p)])
		}
	}
	return sn.expectedCost(m, logits, sink)
}

// expectedCost computes the expected cost and, when sink is not nil, calls it for every
// choice (a row of a logits constant: its name, the row's offset) with the choice's
// probabilities and the cost's derivatives with respect to them.
func (sn *Supernet) expectedCost(m CostModel, logits map[string][]float32, sink func(name string, off int, p, dp []float64)) float64 {
	frac := map[*Group]float64{}    // expected kept fraction
	dfrac := map[*Group]float64{}   // ∂cost/∂fraction
	probs := map[*Group][]float64{} // width probabilities
	for _, gc := range sn.Groups {
		p := softmax(logits[gc.Logits])
		probs[gc.Group] = p
		f := 0.0
		for k, n := range gc.Keep {
			f += p[k] * float64(n) / float64(gc.Group.Channels)
		}
		frac[gc.Group] = f
	}
	fracOf := func(g *Group) float64 {
		if f, ok := frac[g]; ok {
			return f
		}
		return 1
	}
	total := 0.0
	for _, lc := range sn.Layers {
		l := lc.Layer
		fin, fout := 1.0, fracOf(l.Out)
		if !l.Depthwise && l.In != nil {
			fin = l.inFraction(fracOf)
		}
		fan := float64(l.FanIn) * fin
		q := []float64{1}
		if lc.ALogits != "" {
			q = softmax(logits[lc.ALogits])
		}
		// c[i][j]: one filter's cost at WBits[i], ABits[j]; dc: its derivative in fan.
		c := make([][]float64, len(lc.WBits))
		dc := make([][]float64, len(lc.WBits))
		for i, wb := range lc.WBits {
			c[i], dc[i] = make([]float64, len(lc.ABits)), make([]float64, len(lc.ABits))
			for j, ab := range lc.ABits {
				c[i][j], _ = m.FilterCost(l, wb, ab, fan) // a pair the device does not run at its price
				dc[i][j] = m.FilterCostDFan(l, wb, ab, fan)
			}
		}
		per := float64(l.Filters) / float64(lc.Units)
		var wl []float32
		if lc.WLogits != "" {
			wl = logits[lc.WLogits]
		}
		dq := make([]float64, len(q))
		layer, dfan := 0.0, 0.0
		for u := 0; u < lc.Units; u++ {
			p := []float64{1}
			if wl != nil {
				p = softmax(wl[u*len(lc.WBits) : (u+1)*len(lc.WBits)])
			}
			dp := make([]float64, len(p))
			for i := range p {
				for j := range q {
					v := per * fout * c[i][j]
					layer += p[i] * q[j] * v
					dp[i] += q[j] * v
					dq[j] += p[i] * v
					dfan += p[i] * q[j] * per * fout * dc[i][j]
				}
			}
			if sink != nil && wl != nil {
				sink(lc.WLogits, u*len(lc.WBits), p, dp)
			}
		}
		if sink != nil && lc.ALogits != "" {
			sink(lc.ALogits, 0, q, dq)
		}
		if fout > 0 {
			dfrac[l.Out] += layer / fout
		}
		if !l.Depthwise && l.In != nil {
			// fin is Σ C_g·frac_g / Σ C_g over the input's groups.
			all := float64(l.inChannels())
			for _, g := range l.In {
				dfrac[g] += dfan * float64(l.FanIn) * float64(g.Channels) / all
			}
		}
		total += layer
	}
	if sink != nil {
		for _, gc := range sn.Groups {
			p := probs[gc.Group]
			dp := make([]float64, len(p))
			for k, n := range gc.Keep {
				dp[k] = dfrac[gc.Group] * float64(n) / float64(gc.Group.Channels)
			}
			sink(gc.Logits, 0, p, dp)
		}
	}
	return total
}

// Project tilts the logits so that the expected cost equals the budget: every choice's
// logits move by −μ times the cost's derivative with respect to each of its options'
// probabilities (divided by the budget), with the one scalar μ that makes the expected
// cost equal the budget (bisection on a bracket that widens as needed). Of the
// distributions that meet the budget this is, to first order, the closest to the current
// one, and expensive choices give up the most. It returns μ and the expected cost after the
// tilt. A budget above what even the dearest tilt reaches leaves the logits as they are
// (μ = 0: the budget does not bind); a budget that no tilt gets down to is a
// *ProjectionError, the logits left as they were.
func (sn *Supernet) Project(m CostModel, logits map[string][]float32, budget float64) (mu, cost float64, err error) {
	type row struct {
		name string
		off  int
		c    []float64
	}
	var rows []row
	sn.expectedCost(m, logits, func(name string, off int, p, dp []float64) {
		c := make([]float64, len(dp))
		for i, v := range dp {
			c[i] = v / budget
		}
		rows = append(rows, row{name, off, c})
	})
	base := map[string][]float32{}
	for k, v := range logits {
		base[k] = slices.Clone(v)
	}
	at := func(mu float64) float64 {
		for _, r := range rows {
			b, v := base[r.name][r.off:], logits[r.name][r.off:]
			for i, c := range r.c {
				v[i] = b[i] - float32(mu*c)
			}
		}
		return sn.expectedCost(m, logits, nil)
	}
	const widest = 1e6
	lo, hi := -100.0, 100.0
	for at(lo) <= budget {
		if lo *= 10; lo < -widest { // the budget is above every reachable expected cost
			return 0, at(0), nil
		}
	}
	for at(hi) > budget {
		if hi *= 10; hi > widest {
			c := at(hi)
			at(0)
			return 0, c, &ProjectionError{Budget: budget, Cheapest: c}
		}
	}
	for range 60 {
		mid := (lo + hi) / 2
		if at(mid) > budget {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi, at(hi), nil
}

// ProjectionError is a budget the projection cannot reach: even the strongest tilt toward
// cheap options leaves the expected cost at Cheapest.
type ProjectionError struct{ Budget, Cheapest float64 }

func (e *ProjectionError) Error() string {
	return fmt.Sprintf("the budget projection cannot bring the expected cost (%.4g at its strongest tilt) down to the budget (%.4g): the logits are too far from it", e.Cheapest, e.Budget)
}

// ArchParams lists the logits constants of the supernet.
func (sn *Supernet) ArchParams() []string {
	var names []string
	for _, lc := range sn.Layers {
		if lc.WLogits != "" {
			names = append(names, lc.WLogits)
		}
		if lc.ALogits != "" {
			names = append(names, lc.ALogits)
		}
	}
	for _, gc := range sn.Groups {
		names = append(names, gc.Logits)
	}
	return names
}
