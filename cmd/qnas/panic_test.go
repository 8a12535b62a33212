package main

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/kernels"
	"github.com/qnas/qnas/internal/testenv"
	"github.com/qnas/qnas/onnxio"
)

// TestWorkerPanic (domain test) passes its input through, but its kernel's parallel
// tasks panic: a stand-in for a kernel bug that shows on a worker goroutine.
func init() {
	engine.RegisterOp(&graph.OpDef{
		Op: "TestWorkerPanic", Domain: "test", Doc: "y = x; every task but the first panics (test op)",
		MinInputs: 1, MaxInputs: 1, MinOutputs: 1, MaxOutputs: 1,
		Infer: func(c *graph.Ctx) ([]graph.Shape, error) { return []graph.Shape{c.In[0]}, nil },
	}, func(b *engine.Build) (engine.Kernel, error) {
		return &workerPanic{x: b.In[0], y: b.Out[0]}, nil
	})
}

type workerPanic struct{ x, y *engine.Value }

func (k *workerPanic) Forward(bool) {
	copy(k.y.Data, k.x.Data)
	kernels.ParFor(1<<12, 1<<12, func(lo, hi int) {
		if lo > 0 {
			panic("test: a kernel task failed")
		}
	})
}

func (k *workerPanic) Backward() {}

// A panic in a kernel's worker goroutine ends the command with one line and exit status 1,
// not a goroutine trace.
func TestWorkerPanicIsOneLine(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	g, err := graph.Load(testenv.Path("testdata", "models", "resnet8_bn.onnx"), graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := g.Outputs[0]
	nodes := append(g.Nodes, &graph.Node{Name: "panic", Op: "TestWorkerPanic", Domain: "test", Inputs: []string{out}, Outputs: []string{out + ".checked"}})
	g.Outputs[0] = out + ".checked"
	if err := g.Rebuild(nodes); err != nil {
		t.Fatal(err)
	}
	m, err := g.ToONNX(graph.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "panics.onnx")
	if err := onnxio.Save(path, m); err != nil {
		t.Fatal(err)
	}
	status, stdout, stderr := runCLI(t, "eval", path, "--data", "embedded", "--limit", "256", "--mean", "0.286", "--std", "0.353")
	if status != 1 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	if last := lastLine(strings.TrimSpace(stderr)); !strings.HasPrefix(last, "qnas: internal error: test: a kernel task failed") || strings.Contains(stderr, "goroutine") {
		t.Errorf("stderr %q, want one line naming the panic", stderr)
	}
}
