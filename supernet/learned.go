package supernet

import (
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
)

// OpLearned marks a constant as a parameter of the model that the op reading it does not
// declare as a weight (Space.ChannelParams: a MatMul's bias Add, a layer scale):
//
//	Learned(c) → c, dc = dy
//
// so that the engine trains it with the weights. Export reads the constant directly.
const OpLearned = "Learned"

// Names of what a training graph adds for a channel parameter P: the node P/Learned and its
// output P/learned.
const (
	SuffixLearnedNode = "/Learned"
	SuffixLearned     = "/learned"
)

func init() {
	engine.RegisterOp(&graph.OpDef{
		Op: OpLearned, Domain: Domain, Internal: true, Doc: "a constant that trains with the weights: y = c",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1, Weights: []int{0},
		Infer: func(c *graph.Ctx) ([]graph.Shape, error) { return []graph.Shape{c.In[0]}, nil },
	}, buildLearned)
}

type learned struct {
	c, y *engine.Value
	dc   *engine.GradDst
}

func buildLearned(b *engine.Build) (engine.Kernel, error) {
	return &learned{c: b.In[0], y: b.Out[0], dc: b.InGrad(0)}, nil
}

func (k *learned) Forward(bool) { copy(k.y.Data, k.c.Data) }

func (k *learned) Backward() {
	if k.dc != nil {
		copy(k.dc.Buf, k.y.Grad)
	}
}

// learnChannelParams makes the space's channel parameters trainable in g, a rewrite of the
// space's graph that keeps its names: every node reading one reads it through a Learned
// node, placed first.
func (s *Space) learnChannelParams(g *graph.Graph) {
	var added []*graph.Node
	for _, name := range s.ChannelParams {
		if _, ok := g.Consts[name]; !ok {
			continue // pruned away
		}
		q := &graph.Node{Name: name + SuffixLearnedNode, Op: OpLearned, Domain: Domain,
			Inputs: []string{name}, Outputs: []string{name + SuffixLearned}}
		for _, n := range g.Nodes {
			for i, in := range n.Inputs {
				if in == name {
					n.Inputs[i] = q.Outputs[0]
				}
			}
		}
		added = append(added, q)
	}
	g.Nodes = append(added, g.Nodes...)
}

// InlineLearned removes the Learned nodes of a trained graph in place: their readers read
// the constants again.
func InlineLearned(g *graph.Graph) {
	alias := map[string]string{}
	for _, n := range g.Nodes {
		if n.Op == OpLearned {
			alias[n.Outputs[0]] = n.Inputs[0]
		}
	}
	if len(alias) == 0 {
		return
	}
	var out []*graph.Node
	for _, n := range g.Nodes {
		if n.Op == OpLearned {
			delete(g.Shapes, n.Outputs[0])
			continue
		}
		for i, in := range n.Inputs {
			if c, ok := alias[in]; ok {
				n.Inputs[i] = c
			}
		}
		out = append(out, n)
	}
	g.Nodes = out
}
