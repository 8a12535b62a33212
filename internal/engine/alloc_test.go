package engine_test

import (
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/testenv"
)

// An inference plan shares memory between activations of different sizes whose lifetimes
// do not overlap, so it needs a fraction of what keeping every activation takes (a
// MobileNetV2 at 224×224 evaluated in batches of 256 needed 11 GiB when only activations of
// equal size shared), and Observe hands out every activation as it is computed, equal to
// what a plan that keeps them all holds after the pass. The memory is checked on the
// MobileNetV2 fixtures at 112×112, where activations outweigh the kernels' scratch.
func TestInferencePlanSharesMemoryAndObserves(t *testing.T) {
	for _, path := range fixtureModels(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			g := loadCanonical(t, path, false)
			large := strings.HasPrefix(filepath.Base(path), "mbv2")
			if large {
				s := g.Shapes[g.Inputs[0]]
				g.Shapes[g.Inputs[0]] = graph.Shape{s[0], s[1], 112, 112}
				if err := g.InferShapes(); err != nil {
					t.Fatal(err)
				}
			}
			const batch = 4
			keepAll := map[string]bool{}
			for _, n := range g.Nodes {
				for _, o := range n.Outputs {
					keepAll[o] = true
				}
			}
			full, err := engine.Compile(g, batch, engine.Options{Inference: true, Keep: keepAll})
			if err != nil {
				t.Fatal(err)
			}
			p, err := engine.Compile(g, batch, engine.Options{Inference: true})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(5, 6))
			in := full.Value(g.Inputs[0]).Data
			for i := range in {
				in[i] = float32(r.NormFloat64())
			}
			copy(p.Value(g.Inputs[0]).Data, in)

			seen := map[string][]float32{}
			var names []string
			for name, v := range p.Values {
				if v.Kind == engine.Activation || v.Kind == engine.Input {
					names = append(names, name)
					if err := p.Observe(name, func(x []float32) { seen[name] = slices.Clone(x) }); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := p.Observe("no such value", func([]float32) {}); err == nil {
				t.Error("Observe accepted a name the plan has no value of")
			}
			full.Forward(false)
			p.Forward(false)
			for _, name := range names {
				if !slices.Equal(seen[name], full.Value(name).Data) {
					t.Fatalf("observed %q differs from the value a plan keeping every activation computes", name)
				}
			}
			if out := g.Outputs[0]; !slices.Equal(p.Value(out).Data, full.Value(out).Data) {
				t.Fatalf("output %q differs", out)
			}
			shared, kept := p.Bytes(), full.Bytes()
			t.Logf("%d bytes shared, %d kept", shared, kept)
			if large && 3*shared > kept {
				t.Errorf("inference plan allocates %d bytes, more than a third of the %d a plan keeping every activation does", shared, kept)
			}
		})
	}
}

// A large plan compiled after another was dropped reuses the dropped plan's memory (Compile
// collects it first) instead of adding to it, as a command's phases compile one plan after
// another, whenever the collector would otherwise have run: with automatic collection off,
// a ResNet-20 training plan at batch 256 (about 430 MiB) compiled after another one was
// dropped leaves less than 1.5 plans' worth allocated.
func TestCompileReusesDroppedPlans(t *testing.T) {
	g := loadCanonical(t, testenv.Path("testdata", "models", "resnet20_bn.onnx"), false)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	compile := func() int64 {
		p, err := engine.Compile(g, 256, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		p.Forward(true) // use it
		return p.Bytes()
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	base := m.HeapAlloc
	compile() // then dropped
	size := compile()
	runtime.ReadMemStats(&m)
	if m.HeapAlloc > base+uint64(size)*3/2 {
		t.Errorf("a plan of %d MiB compiled after another was dropped: %d MiB allocated", size>>20, (m.HeapAlloc-base)>>20)
	}
}
