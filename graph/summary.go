package graph

// Summary is the machine-readable cost table of a model (`qnas inspect --json`).
// Shapes are per sample (without the batch dimension); MACs and BOPs are per sample.
type Summary struct {
	Params   int64          `json:"params"`
	MACs     int64          `json:"macs"`
	BOPsW8A8 int64          `json:"bops_w8a8"`
	Inputs   []ValueSummary `json:"inputs"`
	Outputs  []ValueSummary `json:"outputs"`
	Layers   []LayerSummary `json:"layers"`
}

// ValueSummary names a graph input or output and its per-sample shape.
type ValueSummary struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
}

// LayerSummary is one row of Summary.
type LayerSummary struct {
	Name        string `json:"name"`
	Op          string `json:"op"`
	OutputShape []int  `json:"output_shape"`
	Params      int64  `json:"params"`
	MACs        int64  `json:"macs"`
	BOPsW8A8    int64  `json:"bops_w8a8"`
}

// Summarize builds the cost table of a graph whose shapes are inferred.
func Summarize(g *Graph) Summary {
	var s Summary
	for _, in := range g.Inputs {
		s.Inputs = append(s.Inputs, ValueSummary{in, perSample(g.Shapes[in])})
	}
	for _, o := range g.Outputs {
		s.Outputs = append(s.Outputs, ValueSummary{o, perSample(g.Shapes[o])})
	}
	s.Layers = []LayerSummary{}
	for _, l := range g.Layers() {
		s.Layers = append(s.Layers, LayerSummary{l.Name, l.Op, perSample(l.OutputShape), l.Params, l.MACs, l.BOPs(8, 8)})
		s.Params = satAdd(s.Params, l.Params) // sums saturate: a hostile model cannot wrap them
		s.MACs = satAdd(s.MACs, l.MACs)
		s.BOPsW8A8 = satAdd(s.BOPsW8A8, l.BOPs(8, 8))
	}
	return s
}

func perSample(s Shape) []int {
	out := []int(s.PerSample())
	if out == nil {
		return []int{}
	}
	return out
}
