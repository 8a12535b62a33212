package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/specialfile"
	"github.com/qnas/qnas/onnxio"
)

// The hostile-input suite of quantize, export, optimize, train and inspect: edited
// metadata of exported models, mutated architecture and profile files, every kind of
// output path, checkpoints of other runs and non-finite numbers. Every case must end with
// exit status 1 or 2 and one line naming the file or flag at fault, having written
// nothing and left the inputs and every special file as they were (docs/robustness.md).

// hostileFixture is the folder the cases run in and the files they start from.
type hostileFixture struct {
	dir        string
	model      string // the float model (ResNet-8 with BatchNorm)
	qdq        string // quantize --wbits 4 --abits 4 of it
	qonnx      string // its QONNX export
	arch       string // a valid architecture file
	ftCkpt     string // a fine-tuning checkpoint of quantize --wbits 3 --abits 4 --epochs 50
	searchCkpt string // a search checkpoint of optimize --search-epochs 50
	specials   []specialfile.File
}

func newHostileFixture(t *testing.T) *hostileFixture {
	t.Helper()
	f := &hostileFixture{dir: t.TempDir()}
	f.model = copyModel(t, f.dir)
	f.qdq = filepath.Join(f.dir, "q.onnx")
	if status, _, stderr := runCLI(t, quantizeArgs(f.model, f.qdq, "--wbits", "4", "--abits", "4", "--mean", "0.286", "--std", "0.353")...); status != 0 {
		t.Fatalf("quantize: %s", stderr)
	}
	f.qonnx = filepath.Join(f.dir, "qq.onnx")
	if status, _, stderr := runCLI(t, "export", f.qdq, "--format", "qonnx", "-o", f.qonnx); status != 0 {
		t.Fatalf("export: %s", stderr)
	}
	f.arch = filepath.Join(f.dir, "q.arch.json")
	f.specials = specialfile.Make(t, f.dir)
	return f
}

// makeCheckpoints adds to the fixture a checkpoint of a fine-tuning and one of a search,
// each saved by a run killed after its first epoch.
func (f *hostileFixture) makeCheckpoints(t *testing.T) {
	t.Helper()
	scratch := t.TempDir()
	f.ftCkpt = filepath.Join(f.dir, "other-run.ckpt")
	copyFile(t, killedCheckpoint(t, quantizeArgs(f.model, filepath.Join(scratch, "ft.onnx"), "--wbits", "3", "--abits", "4", "--epochs", "50"),
		filepath.Join(scratch, "ft.onnx.ckpt")), f.ftCkpt)
	f.searchCkpt = filepath.Join(f.dir, "other-search.ckpt")
	copyFile(t, killedCheckpoint(t, optimizeArgs(f.model, filepath.Join(scratch, "s.onnx"), "--search-epochs", "50"),
		filepath.Join(scratch, "s.onnx.search.ckpt")), f.searchCkpt)
}

// killedCheckpoint starts a qnas run, waits until it has saved its checkpoint ckpt (after
// its first epoch), kills it, and returns the checkpoint's path.
func killedCheckpoint(t *testing.T, args []string, ckpt string) string {
	t.Helper()
	cmd := qnasCmd(args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(ckpt); err == nil {
			cmd.Process.Kill()
			return ckpt
		}
	}
	t.Fatalf("%v saved no checkpoint %s", args, ckpt)
	return ""
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshot records every path under dir: its type and, for a regular file, a hash of
// its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		v := fi.Mode().Type().String()
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			h := sha256.Sum256(b)
			v = hex.EncodeToString(h[:8])
		}
		out[p] = v
		return nil
	})
	return out
}

// refuse runs one hostile command line and checks the contract: status 1 or 2, nothing
// on stdout, one line on stderr naming every want, and the folder as it was.
func (f *hostileFixture) refuse(t *testing.T, name string, args []string, want ...string) {
	t.Helper()
	before := snapshot(t, f.dir)
	status, stdout, stderr := runCLI(t, args...)
	if status != 1 && status != 2 {
		t.Errorf("%s: exit status %d, want 1 or 2 (stderr %q)", name, status, stderr)
	}
	if stdout != "" {
		t.Errorf("%s: stdout %q", name, stdout)
	}
	line := strings.TrimSpace(stderr)
	t.Logf("%s: exit %d: %s", name, status, line)
	if strings.Contains(line, "\n") || !strings.HasPrefix(line, "qnas: ") {
		t.Errorf("%s: stderr is not one qnas line: %q", name, stderr)
	}
	if strings.Contains(line, "panic") || strings.Contains(line, "internal error") || strings.Contains(line, "goroutine") {
		t.Errorf("%s: crashed: %q", name, line)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("%s: %q does not name %q", name, line, w)
		}
	}
	after := snapshot(t, f.dir)
	for p, v := range after {
		if before[p] != v {
			t.Errorf("%s: %s was written or changed", name, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s: %s was removed", name, p)
		}
	}
	specialfile.Check(t, f.specials)
}

// editModel writes to name in the fixture's folder a copy of the model at src changed by
// edit (its graph: metadata, constants).
func (f *hostileFixture) editModel(t *testing.T, src, name string, edit func(g *graph.Graph)) string {
	t.Helper()
	g, err := graph.Load(src, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	edit(g)
	m, err := g.ToONNX(graph.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.dir, name)
	if err := onnxio.Save(p, m); err != nil {
		t.Fatal(err)
	}
	return p
}

// editLayers changes the qnas.layers metadata of a graph through its JSON.
func editLayers(edit func(layers []map[string]any) []map[string]any) func(g *graph.Graph) {
	return func(g *graph.Graph) {
		var layers []map[string]any
		json.Unmarshal([]byte(g.Meta["qnas.layers"]), &layers)
		b, _ := json.Marshal(edit(layers))
		g.Meta["qnas.layers"] = string(b)
	}
}

// layer1 edits the second layer (a Conv with 16 filters at 4 bits).
func layer1(edit func(l map[string]any)) func(g *graph.Graph) {
	return editLayers(func(ls []map[string]any) []map[string]any { edit(ls[1]); return ls })
}

const conv2 = "/layer1/layer1.0/conv1/Conv" // the layer layer1 edits

func ints(n, v int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// weightOf returns the name of a layer's integer weight in g's metadata.
func weightOf(g *graph.Graph, layer string) string {
	var layers []struct{ Name, Weight string }
	json.Unmarshal([]byte(g.Meta["qnas.layers"]), &layers)
	for _, l := range layers {
		if l.Name == layer {
			return l.Weight
		}
	}
	return ""
}

// export refuses, naming the file and the layer, every model whose metadata contradicts
// itself or the graph, in QDQ and in QONNX form; inspect refuses them too.
func TestHostileEditedMetadata(t *testing.T) {
	f := newHostileFixture(t)
	nan := float32(math.NaN())
	type edit struct {
		name string
		src  string
		edit func(g *graph.Graph)
		want []string // besides the file
	}
	cases := []edit{
		{"wbits-short", f.qdq, layer1(func(l map[string]any) { l["wbits"] = ints(15, 4) }), []string{conv2, "15"}},
		{"wbits-long", f.qdq, layer1(func(l map[string]any) { l["wbits"] = ints(40, 4) }), []string{conv2, "40"}},
		{"wbits-empty", f.qdq, layer1(func(l map[string]any) { l["wbits"] = []int{} }), []string{conv2}},
		{"waxis-1-on-conv", f.qdq, layer1(func(l map[string]any) { l["w_axis"] = 1 }), []string{conv2, "w_axis"}},
		{"waxis-7", f.qdq, layer1(func(l map[string]any) { l["w_axis"] = 7 }), []string{conv2, "w_axis"}},
		{"waxis-negative", f.qdq, layer1(func(l map[string]any) { l["w_axis"] = -1 }), []string{conv2, "w_axis"}},
		{"bits-below-integers", f.qdq, layer1(func(l map[string]any) { l["wbits"] = ints(16, 2) }), []string{conv2, "2-bit"}},
		{"bits-9", f.qdq, layer1(func(l map[string]any) { l["wbits"] = ints(16, 9) }), []string{conv2, "9"}},
		{"bits-float-with-integers", f.qdq, layer1(func(l map[string]any) { l["wbits"] = ints(16, 32) }), []string{conv2}},
		{"abits-9", f.qdq, layer1(func(l map[string]any) { l["abits"] = 9 }), []string{conv2, "abits"}},
		{"abits-contradict-grid", f.qdq, layer1(func(l map[string]any) { l["abits"] = 8 }), []string{conv2}},
		{"clip-negative", f.qdq, layer1(func(l map[string]any) { l["a_clip"] = -1.5 }), []string{conv2, "a_clip"}},
		{"clip-zero", f.qdq, layer1(func(l map[string]any) { delete(l, "a_clip") }), []string{conv2, "a_clip"}},
		{"clip-other", f.qdq, layer1(func(l map[string]any) { l["a_clip"] = 123.0 }), []string{conv2}},
		{"signed-flipped", f.qdq, layer1(func(l map[string]any) { l["a_signed"] = true }), []string{conv2}},
		{"filters-0", f.qdq, layer1(func(l map[string]any) { l["filters"] = 0 }), []string{conv2, "filters"}},
		{"filters-below-bits", f.qdq, layer1(func(l map[string]any) { l["filters"] = 3 }), []string{conv2}},
		{"filters-above-bits", f.qdq, layer1(func(l map[string]any) { l["filters"] = 99 }), []string{conv2}},
		{"kept-out-of-range", f.qdq, layer1(func(l map[string]any) {
			l["filters"] = 32
			l["kept"] = append(slices.Collect(func(yield func(int) bool) {
				for i := 0; i < 15; i++ {
					yield(i)
				}
			}), 99)
		}), []string{conv2, "kept"}},
		{"kept-descending", f.qdq, layer1(func(l map[string]any) {
			l["filters"] = 32
			k := make([]int, 16)
			for i := range k {
				k[i] = 31 - i
			}
			l["kept"] = k
		}), []string{conv2, "kept"}},
		{"kept-wrong-length", f.qdq, layer1(func(l map[string]any) { l["filters"], l["kept"] = 32, []int{0, 1} }), []string{conv2}},
		{"kept-contradicts-arch", f.qdq, layer1(func(l map[string]any) {
			k := make([]int, 16)
			for i := range k {
				k[i] = 2 * i
			}
			l["filters"], l["kept"] = 32, k
		}), []string{conv2, "qnas.arch"}},
		{"no-layers", f.qdq, editLayers(func([]map[string]any) []map[string]any { return []map[string]any{} }), []string{"qnas.layers", "no layers"}},
		{"unknown-layer", f.qdq, layer1(func(l map[string]any) { l["name"] = "/nope/Conv" }), []string{"/nope/Conv"}},
		{"layer-twice", f.qdq, editLayers(func(ls []map[string]any) []map[string]any { return append(ls, ls[1]) }), []string{conv2, "twice"}},
		{"op-mismatch", f.qdq, layer1(func(l map[string]any) { l["op"] = "Gemm" }), []string{conv2, "Gemm"}},
		{"weight-elsewhere", f.qdq, layer1(func(l map[string]any) { l["weight"] = "nope_quantized" }), []string{conv2, "nope_quantized"}},
		{"weight-dropped", f.qdq, layer1(func(l map[string]any) { delete(l, "weight") }), []string{conv2}},
		{"input-elsewhere", f.qdq, layer1(func(l map[string]any) { l["input"] = "elsewhere" }), []string{conv2, "elsewhere"}},
		{"layers-not-json", f.qdq, func(g *graph.Graph) { g.Meta["qnas.layers"] = "[{" }, []string{"qnas.layers"}},
		{"layers-wrong-types", f.qdq, func(g *graph.Graph) { g.Meta["qnas.layers"] = `[{"name": 5}]` }, []string{"qnas.layers"}},
		{"arch-not-json", f.qdq, func(g *graph.Graph) { g.Meta["qnas.arch"] = "rm -rf /" }, []string{"qnas.arch"}},
		{"arch-missing", f.qdq, func(g *graph.Graph) { delete(g.Meta, "qnas.arch") }, []string{"qnas.arch"}},
		{"arch-contradicts-abits", f.qdq, func(g *graph.Graph) {
			g.Meta["qnas.arch"] = strings.Replace(g.Meta["qnas.arch"], `"abits": 4`, `"abits": 2`, 1)
		}, []string{"qnas.arch", conv2}},
		{"arch-contradicts-wbits", f.qdq, func(g *graph.Graph) {
			g.Meta["qnas.arch"] = strings.Replace(g.Meta["qnas.arch"], `"wbits": 4`, `"wbits": 8`, 2)
		}, []string{"qnas.arch"}},
		{"arch-extra-layer", f.qdq, func(g *graph.Graph) {
			g.Meta["qnas.arch"] = strings.Replace(g.Meta["qnas.arch"], `"layers": {`, `"layers": {"/ghost/Conv": {"wbits": 4, "abits": 4},`, 1)
		}, []string{"qnas.arch", "/ghost/Conv"}},
		{"opset-garbage", f.qdq, func(g *graph.Graph) { g.Meta["qnas.opset"] = "x" }, []string{"qnas.opset"}},
		{"scale-nan", f.qdq, func(g *graph.Graph) {
			g.Consts[strings.TrimSuffix(weightOf(g, conv2), "_quantized")+"_scale"].F[3] = nan
		}, []string{conv2, "NaN"}},
		{"scale-zero", f.qdq, func(g *graph.Graph) {
			g.Consts[strings.TrimSuffix(weightOf(g, conv2), "_quantized")+"_scale"].F[0] = 0
		}, []string{conv2, "scale"}},
		{"scale-negative", f.qdq, func(g *graph.Graph) {
			g.Consts[strings.TrimSuffix(weightOf(g, conv2), "_quantized")+"_scale"].F[0] = -0.1
		}, []string{conv2, "scale"}},
		{"zero-point-nonzero", f.qdq, func(g *graph.Graph) {
			g.Consts[strings.TrimSuffix(weightOf(g, conv2), "_quantized")+"_zero_point"].I[0] = 3
		}, []string{conv2, "zero point"}},
		{"integer-beyond-bits", f.qdq, func(g *graph.Graph) { g.Consts[weightOf(g, conv2)].I[5] = 100 }, []string{conv2, "100"}},
		{"act-scale-edited", f.qdq, func(g *graph.Graph) { g.Consts[conv2+"/input_scale"].F[0] *= 2 }, []string{conv2, "scale"}},
		{"act-scale-nan", f.qdq, func(g *graph.Graph) { g.Consts[conv2+"/input_scale"].F[0] = nan }, []string{conv2}},
		{"act-clip-edited", f.qdq, func(g *graph.Graph) { g.Consts[conv2+"/input_clip_max"].F[0] *= 3 }, []string{conv2, "clip"}},
		{"qonnx-wbits-short", f.qonnx, layer1(func(l map[string]any) { l["wbits"] = ints(15, 4) }), []string{conv2}},
		{"qonnx-waxis-7", f.qonnx, layer1(func(l map[string]any) { l["w_axis"] = 7 }), []string{conv2, "w_axis"}},
		{"qonnx-bits-below-weights", f.qonnx, layer1(func(l map[string]any) { l["wbits"] = ints(16, 2) }), []string{conv2}},
		{"qonnx-bitwidth-edited", f.qonnx, func(g *graph.Graph) {
			g.Consts[strings.TrimSuffix(weightOf(g, conv2), "_quantized")+"_bitwidth"].F[0] = 8
		}, []string{conv2, "bitwidth"}},
		{"qonnx-scale-nan", f.qonnx, func(g *graph.Graph) {
			g.Consts[strings.TrimSuffix(weightOf(g, conv2), "_quantized")+"_scale"].F[2] = nan
		}, []string{conv2, "NaN"}},
		{"qonnx-act-bitwidth-edited", f.qonnx, func(g *graph.Graph) { g.Consts[conv2+"/input_bitwidth"].F[0] = 3 }, []string{conv2, "bitwidth"}},
		{"qonnx-act-scale-edited", f.qonnx, func(g *graph.Graph) { g.Consts[conv2+"/input_scale"].F[0] *= 2 }, []string{conv2, "scale"}},
	}
	for _, c := range cases {
		p := f.editModel(t, c.src, c.name+".onnx", c.edit)
		out := filepath.Join(f.dir, "out-"+c.name+".onnx")
		want := append([]string{c.name + ".onnx"}, c.want...)
		f.refuse(t, c.name, []string{"export", p, "-o", out}, want...)
		f.refuse(t, c.name+" (qonnx)", []string{"export", p, "--format", "qonnx", "-o", out}, want...)
		f.refuse(t, c.name+" (inspect)", []string{"inspect", p}, c.name+".onnx") // canonicalization may name the node first
	}
	// The unedited models still convert.
	for _, p := range []string{f.qdq, f.qonnx} {
		out := filepath.Join(t.TempDir(), "ok.onnx")
		if status, _, stderr := runCLI(t, "export", p, "-o", out); status != 0 {
			t.Errorf("export %s: %s", p, stderr)
		}
	}
}
