package supernet

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
)

// FrozenBatchNorm is y = a·x + shift per channel on fixed statistics; its backward gives
// dx = a·dy, dβ = Σ dy and dγ = Σ dy·(x − μ)/√(σ² + ε) (the shift's rounding passes the
// gradient straight through), the same to the bit with one thread or two. Large enough
// that two threads split the channels.
func TestFrozenBatchNormGradients(t *testing.T) {
	const ch, eps = 24, 1e-5
	r := rand.New(rand.NewPCG(7, 11))
	vec := func(lo, hi float64) []float32 {
		v := make([]float32, ch)
		for i := range v {
			v[i] = float32(lo + (hi-lo)*r.Float64())
		}
		return v
	}
	w := make([]float32, ch*8*3*3)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	gamma, beta, mu, vr := vec(0.5, 1.5), vec(-0.5, 0.5), vec(-0.3, 0.3), vec(0.5, 2)
	consts := map[string]*graph.Tensor{
		"gamma": graph.NewFloat([]int{ch}, gamma), "beta": graph.NewFloat([]int{ch}, beta),
		"mu": graph.NewFloat([]int{ch}, mu), "var": graph.NewFloat([]int{ch}, vr),
		"w": graph.NewFloat([]int{ch, 8, 3, 3}, w), "clip": graph.NewFloat([]int{1}, []float32{2}),
	}
	n := &graph.Node{Name: "bn", Op: OpFrozenBatchNorm, Domain: Domain,
		Inputs: []string{"x", "gamma", "beta", "mu", "var", "w", "clip"}, Outputs: []string{"y"}}
	n.SetInts("wbits", slices.Repeat([]int64{4}, ch))
	n.SetInt("abits", 4)
	n.SetFloat("epsilon", eps)
	g := oneNode(t, n, graph.Shape{graph.Batch, ch, 16, 16}, consts)
	const batch = 32
	x := make([]float32, batch*ch*16*16)
	dy := make([]float32, len(x))
	for i := range x {
		x[i], dy[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
	}
	type grads struct{ y, dx, dgamma, dbeta []float32 }
	run := func(procs int) grads {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		p, err := engine.Compile(g, batch, engine.Options{InputGrads: true})
		if err != nil {
			t.Fatal(err)
		}
		copy(p.Value("x").Data, x)
		p.Forward(false)
		copy(p.Value("y").Grad, dy)
		p.Backward()
		return grads{slices.Clone(p.Value("y").Data), slices.Clone(p.Value("x").Grad),
			slices.Clone(p.Value("gamma").Grad), slices.Clone(p.Value("beta").Grad)}
	}
	one, two := run(1), run(2)
	for name, pair := range map[string][2][]float32{"y": {one.y, two.y}, "dx": {one.dx, two.dx},
		"dgamma": {one.dgamma, two.dgamma}, "dbeta": {one.dbeta, two.dbeta}} {
		if !slices.Equal(pair[0], pair[1]) {
			t.Errorf("%s differs between one thread and two", name)
		}
	}
	hw := 16 * 16
	for c := 0; c < ch; c++ {
		is := 1 / math.Sqrt(float64(vr[c])+eps)
		a := float64(gamma[c]) * is
		var sd, sdx float64
		for b := 0; b < batch; b++ {
			for i := 0; i < hw; i++ {
				k := (b*ch+c)*hw + i
				sd += float64(dy[k])
				sdx += float64(dy[k]) * float64(x[k]-mu[c])
				if got := float64(two.dx[k]); math.Abs(got-a*float64(dy[k])) > 1e-6*math.Max(1, math.Abs(got)) {
					t.Fatalf("dx[%d] = %v, want a·dy = %v", k, got, a*float64(dy[k]))
				}
			}
		}
		if got := float64(two.dbeta[c]); math.Abs(got-sd) > 1e-4*math.Max(1, math.Abs(sd)) {
			t.Errorf("channel %d: dβ = %v, want %v", c, got, sd)
		}
		if got, want := float64(two.dgamma[c]), sdx*is; math.Abs(got-want) > 1e-4*math.Max(1, math.Abs(want)) {
			t.Errorf("channel %d: dγ = %v, want %v", c, got, want)
		}
		// y is affine in x with slope a: the difference of two outputs of a channel.
		k0, k1 := c*hw, c*hw+1
		if dx := float64(x[k1] - x[k0]); math.Abs(dx) > 0.1 {
			slope := float64(two.y[k1]-two.y[k0]) / dx
			if math.Abs(slope-a) > 1e-3*math.Abs(a) {
				t.Errorf("channel %d: slope of y %v, want a = %v", c, slope, a)
			}
		}
	}
}
