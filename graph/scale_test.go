package graph_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/onnxio/onnxpb"
)

// Graph passes must stay near-linear in the size of the graph: a small file can hold
// hundreds of thousands of nodes, and a quadratic pass over them is a hang.
func TestLargeGraphsImportInLinearTime(t *testing.T) {
	const n = 60000
	chain := func(op string, sameName bool) *onnxpb.ModelProto {
		b := newModel(13).input("x", -1, 2, 2, 2).ints("t", 0, 8)
		prev := "x"
		for i := range n {
			name := fmt.Sprintf("n%d", i)
			if sameName {
				name = "same"
			}
			out := fmt.Sprintf("v%d", i)
			in := []string{prev}
			if op == "Reshape" {
				in = append(in, "t")
			}
			b.node(op, name, in, []string{out})
			prev = out
		}
		return b.output(prev).build()
	}
	fan := func() *onnxpb.ModelProto {
		b := newModel(13).input("x", -1, 2)
		for i := range n {
			out := fmt.Sprintf("v%d", i)
			b.node("Relu", fmt.Sprintf("r%d", i), []string{"x"}, []string{out})
			b.node("Identity", fmt.Sprintf("i%d", i), []string{out}, []string{out + "i"})
			b.output(out + "i")
		}
		return b.build()
	}
	shared := func() *onnxpb.ModelProto {
		// One 2^20-element weight read by 4000 nodes: scanned once, not 4000 times.
		b := newModel(13).input("x", -1, 1<<20).floats("w", []int64{1 << 20}, make([]float32, 1<<20))
		prev := "x"
		for i := range 4000 {
			out := fmt.Sprintf("v%d", i)
			b.node("Mul", fmt.Sprintf("m%d", i), []string{prev, "w"}, []string{out})
			prev = out
		}
		return b.output(prev).build()
	}
	cases := map[string]*onnxpb.ModelProto{
		"weight shared by many nodes": shared(),
		"chain of Relu with one name": chain("Relu", true),
		"chain of Reshape":            chain("Reshape", false),
		"chain of Identity":           chain("Identity", false),
		"fan-out to many outputs":     fan(),
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			start := cpuTime(t)
			for _, fold := range []bool{false, true} {
				g, err := graph.FromONNX(m, graph.ImportOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if err := g.Canonicalize(graph.CanonicalOptions{FoldBN: fold}); err != nil {
					t.Fatal(err)
				}
				graph.Summarize(g)
			}
			// CPU time, not wall time: other jobs on the machine do not count.
			if d := cpuTime(t) - start; d > 10*time.Second { // quadratic passes took 20 s and more
				t.Errorf("%d nodes took %v of CPU time", n, d)
			} else {
				t.Logf("%v of CPU time", d)
			}
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
