package graph_test

import (
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qnas/qnas/graph"
)

func TestDefaultLimits(t *testing.T) {
	d := graph.DefaultLimits()
	if d.MaxActivationElems != 1<<31 || d.MaxConstFoldElems != 1<<26 || d.MaxConstFoldTotal != 1<<28 {
		t.Fatalf("defaults: %+v", d)
	}
}

func opsOf(g *graph.Graph) []string {
	var ops []string
	for _, n := range g.Nodes {
		ops = append(ops, n.Op)
	}
	return ops
}

// ImportOptions.GraphLimits reaches shape inference at import and in Canonicalize (the
// graph keeps its limits, clones too).
func TestActivationLimitAdjustable(t *testing.T) {
	m := newModel(13).input("x", -1, 1, 8, 8).floats("w", []int64{4, 1, 1, 1}, make([]float32, 4)).
		node("Conv", "c", []string{"x", "w"}, []string{"y"}).output("y").build()
	if _, err := importCanonical(m, graph.ImportOptions{}, false); err != nil {
		t.Fatal(err)
	}
	_, err := importCanonical(m, graph.ImportOptions{GraphLimits: graph.Limits{MaxActivationElems: 255}}, false)
	if err == nil || !strings.Contains(err.Error(), `node "c" (Conv)`) || !strings.Contains(err.Error(), "more than 255 elements") {
		t.Fatalf("got %v", err)
	}
	// The input alone is over a limit of 63.
	_, err = importCanonical(m, graph.ImportOptions{GraphLimits: graph.Limits{MaxActivationElems: 63}}, false)
	if err == nil || !strings.Contains(err.Error(), `graph.input["x"]`) {
		t.Fatalf("got %v", err)
	}
	g, err := graph.FromONNX(m, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.Limits.MaxActivationElems = 255
	if err := g.Clone().Canonicalize(graph.CanonicalOptions{}); err == nil {
		t.Fatal("a clone lost the graph's limits")
	}
}

func TestConstFoldLimitsAdjustable(t *testing.T) {
	// k = ConstantOfShape([10, 10]); a = k + k; b = a + a; y = x + b
	m := newModel(13).input("x", -1, 10, 10).ints("shp", 10, 10).
		node("ConstantOfShape", "k", []string{"shp"}, []string{"k"}).
		node("Add", "a", []string{"k", "k"}, []string{"a"}).
		node("Add", "b", []string{"a", "a"}, []string{"b"}).
		node("Add", "y", []string{"x", "b"}, []string{"y"}).output("y").build()
	// The total budget is per folding run: FromONNX runs one, Canonicalize another.
	for _, c := range []struct {
		lim             graph.Limits
		imported, canon []string
	}{
		{graph.Limits{}, []string{"Add"}, []string{"Add"}},
		{graph.Limits{MaxConstFoldElems: 99}, []string{"ConstantOfShape", "Add", "Add", "Add"}, []string{"ConstantOfShape", "Add", "Add", "Add"}},
		{graph.Limits{MaxConstFoldTotal: 100}, []string{"Add", "Add", "Add"}, []string{"Add", "Add"}},
		{graph.Limits{MaxConstFoldTotal: 200}, []string{"Add", "Add"}, []string{"Add"}},
	} {
		g, err := graph.FromONNX(m, graph.ImportOptions{GraphLimits: c.lim})
		if err != nil {
			t.Fatal(err)
		}
		if got := opsOf(g); !slices.Equal(got, c.imported) {
			t.Errorf("limits %+v: imported nodes %v, want %v", c.lim, got, c.imported)
		}
		if err := g.Canonicalize(graph.CanonicalOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := opsOf(g); !slices.Equal(got, c.canon) {
			t.Errorf("limits %+v: canonical nodes %v, want %v", c.lim, got, c.canon)
		}
	}
}

// A ConstantOfShape of 2^27 elements is within the activation limit but over the folding
// limit: it stays a node, and importing allocates nothing like its 512 MiB.
func TestBigConstantOfShapeNotAllocated(t *testing.T) {
	m := newModel(13).input("x", -1, 1<<13, 1<<14).ints("shp", 1<<13, 1<<14).
		node("ConstantOfShape", "k", []string{"shp"}, []string{"k"}).
		node("Add", "y", []string{"x", "k"}, []string{"y"}).output("y").build()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	g, err := importCanonical(m, graph.ImportOptions{}, false)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if got := opsOf(g); !slices.Equal(got, []string{"ConstantOfShape", "Add"}) {
		t.Errorf("nodes %v", got)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 || elapsed > time.Second {
		t.Errorf("allocated %d MiB in %v", alloc>>20, elapsed)
	}
}

// Folding a broadcast gives numpy's result.
func TestFoldBroadcast(t *testing.T) {
	a := make([]float32, 6) // shape [2, 1, 3]
	for i := range a {
		a[i] = float32(i)
	}
	b := []float32{10, 20, 30, 40} // shape [4, 1]
	m := newModel(13).input("x", -1, 2, 4, 3).floats("a", []int64{2, 1, 3}, a).floats("b", []int64{4, 1}, b).
		node("Sub", "s", []string{"a", "b"}, []string{"s"}).
		node("Add", "y", []string{"x", "s"}, []string{"y"}).output("y").build()
	g, err := importCanonical(m, graph.ImportOptions{}, false)
	if err != nil {
		t.Fatal(err)
	}
	s := g.Consts["s"]
	if s == nil || !slices.Equal(s.Shape, []int{2, 4, 3}) {
		t.Fatalf("s = %+v", s)
	}
	for i := range 2 {
		for j := range 4 {
			for k := range 3 {
				if got, want := s.F[(i*4+j)*3+k], a[i*3+k]-b[j]; got != want {
					t.Fatalf("s[%d,%d,%d] = %v, want %v", i, j, k, got, want)
				}
			}
		}
	}
}

// A node whose outputs are all unnamed ("") or without an inferred shape is not folded:
// folding is bounded by output shapes, and such a node has none to check (FuzzBuild found
// a ConstantOfShape writing "" that folded to 2^26 elements).
func TestUnnamedOutputNotFolded(t *testing.T) {
	m := newModel(13).input("x", -1, 2).ints("shp", 1<<13, 1<<13).
		node("ConstantOfShape", "k", []string{"shp"}, []string{""}).
		node("Relu", "y", []string{"x"}, []string{"y"}).output("y").build()
	writeFuzzSeed(t, m)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := importCanonical(m, graph.ImportOptions{}, false); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("allocated %d MiB", alloc>>20)
	}
}
