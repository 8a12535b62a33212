package engine

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/kernels"
	"github.com/qnas/qnas/internal/testenv"
)

// TestConvBNLinkSameGradients trains ResNet-20 (BatchNorm kept) one step with and
// without the Conv → BatchNormalization links (shared moments, lazy input gradients) and
// checks that the loss and every parameter gradient agree.
func TestConvBNLinkSameGradients(t *testing.T) {
	g, err := graph.Load(testenv.Path("testdata", "models", "resnet20_bn.onnx"), graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Canonicalize(graph.CanonicalOptions{}); err != nil {
		t.Fatal(err)
	}
	const batch = 6
	run := func(link bool) (float64, map[string][]float32, [2]int) {
		old := linkConvBNEnabled
		linkConvBNEnabled = link
		defer func() { linkConvBNEnabled = old }()
		p, err := Compile(g, batch, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var n [2]int // links, lazy ones
		for _, l := range p.convBN {
			n[0]++
			if l.lazy {
				n[1]++
			}
		}
		randomInputs(p)
		labels := []int32{0, 1, 2, 3, 4, 5}
		p.Forward(true)
		loss, _ := p.SoftmaxCrossEntropy(g.Outputs[0], labels)
		p.Backward()
		grads := map[string][]float32{}
		for _, v := range p.Params {
			grads[v.Name] = append([]float32(nil), v.Grad...)
		}
		return loss, grads, n
	}
	l1, g1, n1 := run(true)
	l0, g0, n0 := run(false)
	// ResNet-20 has 21 Conv → BatchNormalization pairs (19 3×3 and 2 1×1 shortcuts), all
	// computing their input gradient lazily where the direct convolution paths run.
	wantLazy := 0
	if (kernels.ConvShape{N: 1, C: 16, H: 28, W: 28, OC: 16, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}).Direct() {
		wantLazy = 21
	}
	if n1 != [2]int{21, wantLazy} || n0 != [2]int{} {
		t.Fatalf("links (all, lazy): %v with linking on, want [21 %d]; %v with it off", n1, wantLazy, n0)
	}
	if math.Abs(l1-l0) > 1e-5 {
		t.Errorf("loss %g linked, %g unlinked", l1, l0)
	}
	for name, a := range g0 {
		b := g1[name]
		for i := range a {
			if d := math.Abs(float64(a[i] - b[i])); d > 1e-4*(1+math.Abs(float64(a[i]))) {
				t.Errorf("%s[%d]: %g linked, %g unlinked", name, i, b[i], a[i])
				break
			}
		}
	}
}

// TestFuseBatchNormClip checks which activations fuse into the BatchNormalization they
// follow: a Relu, and a Clip to [0, max] with max > 0 (ReLU6), carrying max; not a Clip
// with another lower bound; after an Add only a Relu; nothing after an op that absorbs no
// ReLU.
func TestFuseBatchNormClip(t *testing.T) {
	f := func(v float32) *graph.Attr { return &graph.Attr{Kind: graph.AttrFloat, F: v} }
	for _, c := range []struct {
		op, act  string
		lo, hi   float32
		fused    bool
		reluMax  float32
		hasBound bool
	}{
		{"BatchNormalization", "Relu", 0, 0, true, 0, false},
		{"BatchNormalization", "Clip", 0, 6, true, 6, true},
		{"BatchNormalization", "Clip", 0, float32(math.Inf(1)), true, 0, true},
		{"BatchNormalization", "Clip", -1, 6, false, 0, true},
		{"BatchNormalization", "Clip", 0, 0, false, 0, true},
		{"Add", "Clip", 0, 6, false, 0, true},
		{"Add", "Relu", 0, 0, true, 0, false},
		{"Mul", "Relu", 0, 0, false, 0, false},
	} {
		g := graph.New("fuse")
		act := &graph.Node{Name: "act", Op: c.act, Inputs: []string{"mid"}, Outputs: []string{"y"}}
		if c.hasBound {
			act.Attrs = map[string]*graph.Attr{"min": f(c.lo), "max": f(c.hi)}
		}
		g.Nodes = []*graph.Node{{Name: "n", Op: c.op, Inputs: []string{"x"}, Outputs: []string{"mid"}}, act}
		g.Outputs = []string{"y"}
		nodes := fuse(g, Options{})
		if got := len(nodes) == 1; got != c.fused {
			t.Errorf("%s → %s(%g, %g): fused %v, want %v", c.op, c.act, c.lo, c.hi, got, c.fused)
			continue
		}
		if !c.fused {
			continue
		}
		if f := nodes[0]; f.node.Outputs[0] != "y" || f.node.Op != c.op || !f.relu {
			t.Errorf("%s → %s: fused node %s → %v, ReLU %v", c.op, c.act, f.node.Op, f.node.Outputs, f.relu)
		}
		if m := nodes[0].reluMax; m != c.reluMax {
			t.Errorf("%s → %s(%g, %g): max %g, want %g", c.op, c.act, c.lo, c.hi, m, c.reluMax)
		}
	}
}

// TestDeferredBNSameBits trains ResNet-20 (BatchNorm kept) one step with and without the
// deferred BatchNormalizations (the Conv or Add+Relu that reads one's output reading its
// input through its map instead) and the Convs adding their input gradients into a block
// input's gradient (instead of through a temporary), and checks that the loss, the logits, every parameter gradient and the running
// statistics are the same bits, and then that an inference forward on the same plans (the
// BatchNormalization writing its output again) gives the same logits.
func TestDeferredBNSameBits(t *testing.T) {
	const batch = 6
	type result struct {
		loss          float64
		logits, infer []float32
		vals          map[string][]float32
		links         int
		lanes         int // BatchNormalizations whose sums a Conv records (attachBNLanes)
		recorded      int // and of those, the ones that took them in Backward
	}
	run := func(model string, link bool) result {
		old, oldAdd := linkDeferredEnabled, addIntoEnabled
		linkDeferredEnabled, addIntoEnabled = link, link
		defer func() { linkDeferredEnabled, addIntoEnabled = old, oldAdd }()
		// A graph of its own: the running statistics are updated in place.
		g, err := graph.Load(testenv.Path("testdata", "models", model), graph.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Canonicalize(graph.CanonicalOptions{}); err != nil {
			t.Fatal(err)
		}
		p, err := Compile(g, batch, Options{})
		if err != nil {
			t.Fatal(err)
		}
		res := result{links: len(p.deferred), vals: map[string][]float32{}}
		randomInputs(p)
		labels := []int32{0, 1, 2, 3, 4, 5}
		p.Forward(true)
		res.loss, _ = p.SoftmaxCrossEntropy(g.Outputs[0], labels)
		res.logits = slices.Clone(p.Value(g.Outputs[0]).Data)
		p.Backward()
		for _, s := range p.steps {
			if bn, ok := s.kernel.(*batchNorm); ok && bn.out != nil && bn.out.bn != nil {
				res.lanes++
				res.recorded += bn.lanesTaken
			}
		}
		for _, v := range p.Values {
			switch v.Kind {
			case Param:
				res.vals[v.Name+".grad"] = slices.Clone(v.Grad)
			case State:
				res.vals[v.Name] = slices.Clone(v.Data)
			}
		}
		p.Forward(false)
		res.infer = slices.Clone(p.Value(g.Outputs[0]).Data)
		return res
	}
	direct := (kernels.ConvShape{N: 1, C: 16, H: 28, W: 28, OC: 16, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}).MapsInput()
	for _, c := range []struct {
		model            string
		onDirect, always int // links where the direct convolution paths run, and where not
		lanes            int // BatchNormalizations read by a direct Conv alone, where those run
	}{
		// Each of ResNet-20's nine blocks has one BatchNormalization+Relu read by a 3×3
		// Conv alone, and one BatchNormalization (two in the blocks with a 1×1 shortcut)
		// read by the Add+Relu alone; the stem's has two readers.
		{"resnet20_bn.onnx", 20, 11, 9},
		// The MobileNetV2 fixture's 19 BatchNormalizations (+ReLU6): 12 feed a depthwise
		// or pointwise Conv alone and 3 a residual Add alone; the stem's and two blocks'
		// outputs have two readers, the head's a pooling.
		{"mbv2_bn.onnx", 15, 3, 12},
		// The Inception fixture: parallel branches joined by Concat; four of its
		// BatchNormalizations feed a 3×3 Conv of their branch alone.
		{"inception_bn.onnx", 4, 0, 4},
	} {
		on, off := run(c.model, true), run(c.model, false)
		want := c.always
		if direct {
			want = c.onDirect
		}
		if on.links != want || off.links != 0 {
			t.Fatalf("%s links: %d with linking on (want %d), %d with it off", c.model, on.links, want, off.links)
		}
		// The BatchNormalizations whose output gradient a Conv writes take their sums from it.
		wantLanes := 0
		if direct && kernels.BNLanesAvailable() {
			wantLanes = c.lanes
		}
		if on.lanes != wantLanes || on.recorded != wantLanes || off.lanes != 0 {
			t.Fatalf("%s: %d BatchNormalizations given sums by their Conv (want %d), %d took them, %d with linking off",
				c.model, on.lanes, wantLanes, on.recorded, off.lanes)
		}
		if on.loss != off.loss {
			t.Errorf("%s loss %g linked, %g unlinked", c.model, on.loss, off.loss)
		}
		if !slices.Equal(on.logits, off.logits) || !slices.Equal(on.infer, off.infer) {
			t.Errorf("%s logits differ: training %v / %v, inference %v / %v", c.model, on.logits[:4], off.logits[:4], on.infer[:4], off.infer[:4])
		}
		if len(on.vals) != len(off.vals) {
			t.Fatalf("%s: %d gradients and statistics linked, %d unlinked", c.model, len(on.vals), len(off.vals))
		}
		for name, a := range off.vals {
			if !slices.Equal(a, on.vals[name]) {
				t.Errorf("%s: %s differs with the links", c.model, name)
			}
		}
	}
}

// randomInputs fills the plan's inputs with the same normal values every time.
func randomInputs(p *Plan) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, v := range p.Values {
		if v.Kind == Input {
			for i := range v.Data {
				v.Data[i] = float32(r.NormFloat64())
			}
		}
	}
}

// TestBNLanesInterleaved runs two branches whose BatchNormalizations and Convs interleave in
// the plan (Conv a, Conv b, BatchNorm a, BatchNorm b, Conv a′, Conv b′): the sums of both
// BatchNormalizations would share one buffer between their Convs' backward passes and their
// own, so only one of them takes its sums from its Conv, and every gradient has the bits of
// the plan without links.
func TestBNLanesInterleaved(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	g := graph.New("interleaved")
	g.Opset = 13
	g.Inputs = []string{"x"}
	g.Shapes["x"] = graph.Shape{4, 4, 6, 6}
	randConst := func(name string, shape []int, scale, shift float64) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(shift + scale*r.NormFloat64())
		}
		g.Consts[name] = graph.NewFloat(shape, v)
	}
	pads := map[string]*graph.Attr{"pads": {Kind: graph.AttrInts, Ints: []int64{1, 1, 1, 1}}}
	conv := func(name, in, out string, oc int) *graph.Node {
		randConst(name+".w", []int{oc, 4, 3, 3}, 0.3, 0)
		return &graph.Node{Name: name, Op: "Conv", Inputs: []string{in, name + ".w"}, Outputs: []string{out}, Attrs: pads}
	}
	bn := func(name, in, out string) *graph.Node {
		randConst(name+".g", []int{4}, 0.2, 1)
		randConst(name+".b", []int{4}, 0.2, 0)
		randConst(name+".m", []int{4}, 0, 0)
		randConst(name+".v", []int{4}, 0, 1)
		return &graph.Node{Name: name, Op: "BatchNormalization", Inputs: []string{in, name + ".g", name + ".b", name + ".m", name + ".v"}, Outputs: []string{out}}
	}
	g.Nodes = []*graph.Node{
		conv("convA", "x", "a1", 4), conv("convB", "x", "b1", 4),
		bn("bnA", "a1", "a2"), bn("bnB", "b1", "b2"),
		conv("convA2", "a2", "a3", 3), conv("convB2", "b2", "b3", 3),
		{Name: "add", Op: "Add", Inputs: []string{"a3", "b3"}, Outputs: []string{"s"}},
		{Name: "gap", Op: "GlobalAveragePool", Inputs: []string{"s"}, Outputs: []string{"pooled"}},
		{Name: "flat", Op: "Flatten", Inputs: []string{"pooled"}, Outputs: []string{"logits"}},
	}
	g.Outputs = []string{"logits"}
	if err := g.InferShapes(); err != nil {
		t.Fatal(err)
	}
	run := func(link bool) (map[string][]float32, int) {
		old := linkDeferredEnabled
		linkDeferredEnabled = link
		defer func() { linkDeferredEnabled = old }()
		p, err := Compile(g, 4, Options{})
		if err != nil {
			t.Fatal(err)
		}
		randomInputs(p)
		p.Forward(true)
		p.SoftmaxCrossEntropy("logits", []int32{0, 1, 2, 0})
		p.Backward()
		vals, taken := map[string][]float32{}, 0
		for _, v := range p.Values {
			if v.Kind == Param {
				vals[v.Name] = slices.Clone(v.Grad)
			}
		}
		for _, s := range p.steps {
			if k, ok := s.kernel.(*batchNorm); ok {
				taken += k.lanesTaken
			}
		}
		return vals, taken
	}
	on, taken := run(true)
	off, _ := run(false)
	want := 0
	if kernels.BNLanesAvailable() && (kernels.ConvShape{N: 4, C: 4, H: 6, W: 6, OC: 3, KH: 3, KW: 3, PT: 1, PL: 1, PB: 1, PR: 1}).MapsInput() {
		want = 1
	}
	if taken != want {
		t.Errorf("%d BatchNormalizations took their sums from their Conv, want %d", taken, want)
	}
	for name, a := range off {
		if !slices.Equal(a, on[name]) {
			t.Errorf("%s differs with the links", name)
		}
	}
}
