package search

import (
	"math/rand/v2"

	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/supernet"
)

// widthPrices are the measured loss prices of the width options (SearchConfig.MeasureWidths):
// for every prunable group and width option, a running mean of the held-out loss with the
// group at that option minus the loss with it at its widest, each difference taken on one
// batch and one sample of every other choice.
type widthPrices struct {
	Names []string    // the groups' logits constants, in Supernet.Groups order
	Delta [][]float64 // per group and option: loss at the option minus loss at the widest
	Count [][]int     // the probes behind each entry
	Next  int         // the group the next architecture step probes
	Swept bool        // the first step's probes of every width are done
}

// WidthPrice is one group's measured width prices: per width, the running mean of the
// held-out loss change from the group's widest width to it, and the probes behind it.
type WidthPrice struct {
	Group  string    `json:"name"`
	Widths []float64 `json:"widths"`
	Loss   []float64 `json:"widths_loss"`
	Probes []int     `json:"probes"`
}

// widthPriceRate is the weight of a new probe in a running mean once it has that many
// before it: the prices follow the weights, which keep training.
const widthPriceRate = 0.2

func newWidthPrices(sn *supernet.Supernet) *widthPrices {
	wp := &widthPrices{}
	for _, gc := range sn.Groups {
		wp.Names = append(wp.Names, gc.Logits)
		wp.Delta = append(wp.Delta, make([]float64, len(gc.Widths)))
		wp.Count = append(wp.Count, make([]int, len(gc.Widths)))
	}
	return wp
}

func (wp *widthPrices) record(g, k int, d float64) {
	wp.Count[g][k]++
	rate := max(1/float64(wp.Count[g][k]), widthPriceRate)
	wp.Delta[g][k] += rate * (d - wp.Delta[g][k])
}

// probeWidths measures width prices on the architecture step's batch (in the plan's input,
// labels y) after its forward and backward passes, whose loss was loss. The first step
// probes every option of every group; later steps one group each, in turn: if the group's
// sampled width is not its widest, the loss at the widest; otherwise at a random narrower
// option. Each probe is one forward pass with that one choice pinned and every other choice
// as sampled.
func (t *Trainer) probeWidths(y []int32, it int, tau, loss float64) {
	wp := t.prices
	if len(wp.Names) == 0 {
		return
	}
	step := uint64(2*it + 1)
	probe := func(name string, option int) float64 {
		t.draw(engine.StepState{Step: step, Temperature: tau, Hard: true, Pin: engine.Pin{Logits: name, Option: option}})
		t.Plan.Forward(true)
		l, _ := t.Plan.SoftmaxCrossEntropy(t.sn.Graph.Outputs[0], y)
		return l
	}
	if !wp.Swept { // the first step: every width of every group
		wp.Swept = true
		for g, name := range wp.Names {
			w := len(wp.Delta[g]) - 1
			lw := probe(name, w)
			for k := 0; k < w; k++ {
				wp.record(g, k, probe(name, k)-lw)
			}
		}
		return
	}
	g := wp.Next
	wp.Next = (g + 1) % len(wp.Names)
	name, w := wp.Names[g], len(wp.Delta[g])-1
	if w == 0 {
		return
	}
	if s := supernet.Sampled(t.Plan, name)[0]; s != w { // read before any pinned pass
		wp.record(g, s, loss-probe(name, w))
		return
	}
	j := rand.New(rand.NewPCG(t.cfg.Seed^0x77696474, step)).IntN(w)
	wp.record(g, j, probe(name, j)-loss)
}

// widthGrads writes the width logits' gradients from the measured prices: the gradient of
// the expected loss Σ_k p_k·Δ_k under p = softmax(α), the distribution hard samples are
// drawn from, divided by the temperature as the straight-through gradients of the bit
// choices are.
func (t *Trainer) widthGrads(tau float64) {
	for g, name := range t.prices.Names {
		grad, d := t.Plan.Value(name).Grad, make([]float64, len(t.prices.Delta[g]))
		for k, v := range t.prices.Delta[g] {
			d[k] = v / tau
		}
		clear(grad)
		supernet.AddExpectationGrad(t.logits[name], d, grad)
	}
}
