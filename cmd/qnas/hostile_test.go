package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	"github.com/qnas/qnas/internal/testenv"
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
	copyFile(t, killedCheckpoint(t, ftArgs(f.model, filepath.Join(scratch, "ft.onnx"), "--wbits", "3", "--abits", "4", "--epochs", "50"),
		filepath.Join(scratch, "ft.onnx.ckpt")), f.ftCkpt)
	f.searchCkpt = filepath.Join(f.dir, "other-search.ckpt")
	copyFile(t, killedCheckpoint(t, searchArgs(f.model, filepath.Join(scratch, "s.onnx"), "--search-epochs", "50"),
		filepath.Join(scratch, "s.onnx.search.ckpt")), f.searchCkpt)
}

// ftArgs and searchArgs are quantize and optimize on less data: the runs whose
// checkpoints the suite takes, and the runs that try to resume them.
func ftArgs(model, out string, extra ...string) []string {
	return quantizeArgs(model, out, append([]string{"--limit-train", "128"}, extra...)...)
}

func searchArgs(model, out string, extra ...string) []string {
	return optimizeArgs(model, out, append([]string{"--limit-train", "320"}, extra...)...)
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
		if fi.Mode().IsRegular() && fi.Size() > 64<<20 { // big sparse files: size and time
			v = fmt.Sprint(fi.Size(), fi.ModTime())
		} else if fi.Mode().IsRegular() {
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
	start := time.Now()
	status, stdout, stderr := runCLI(t, args...)
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("%s: refused after %.0f s: the check must come before the work", name, el.Seconds())
	}
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
		{"qonnx-weight-renamed", f.qonnx, layer1(func(l map[string]any) { l["weight"] = "_quantized" }), []string{conv2, "_quantized"}},
		{"qonnx-weight-of-another-layer", f.qonnx, layer1(func(l map[string]any) { l["weight"] = "conv1.weight_quantized" }), []string{conv2}},
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
	// Normalization metadata that is not finite is refused by every command that reads it.
	for _, v := range []string{"NaN", "1e400", "0.5,x"} {
		p := f.editModel(t, f.model, "mean-"+v+".onnx", func(g *graph.Graph) { g.Meta["qnas.mean"] = v })
		f.refuse(t, "eval with qnas.mean "+v, []string{"eval", p, "--data", "embedded", "--limit", "10"}, "mean-"+v+".onnx", "qnas.mean")
		f.refuse(t, "train with qnas.mean "+v, []string{"train", p, "--data", "embedded", "--limit-train", "64", "--batch", "32", "-o", filepath.Join(f.dir, "t.onnx")},
			"mean-"+v+".onnx", "qnas.mean")
		f.refuse(t, "quantize with qnas.mean "+v, quantizeArgs(p, filepath.Join(f.dir, "t.onnx"), "--wbits", "4", "--abits", "4"), "mean-"+v+".onnx", "qnas.mean")
	}
	// The unedited models still convert.
	for _, p := range []string{f.qdq, f.qonnx} {
		out := filepath.Join(t.TempDir(), "ok.onnx")
		if status, _, stderr := runCLI(t, "export", p, "-o", out); status != 0 {
			t.Errorf("export %s: %s", p, stderr)
		}
	}
}

// Every output path that is not a regular file or a new path in an existing folder, and
// every output that would replace an input, another output, a sidecar, a checkpoint or
// the report, is refused before any work, by every command that writes.
func TestHostileOutputPaths(t *testing.T) {
	f := newHostileFixture(t)
	inputs := map[string]string{"quantize": f.model, "optimize": f.model, "export": f.qdq, "train": f.model, "inspect": f.model}
	commands := map[string]func(out string) []string{
		"quantize": func(out string) []string {
			return quantizeArgs(f.model, out, "--wbits", "4", "--abits", "4", "--epochs", "1")
		},
		"optimize": func(out string) []string { return optimizeArgs(f.model, out) },
		"export":   func(out string) []string { return []string{"export", f.qdq, "-o", out} },
		"train":    func(out string) []string { return trainArgs(f.model, out) },
		"inspect":  func(out string) []string { return []string{"inspect", f.model, "--supernet", "-o", out} },
	}
	for cmd, args := range commands {
		in := inputs[cmd]
		hard, sym := filepath.Join(f.dir, "hard-"+cmd+".onnx"), filepath.Join(f.dir, "sym-"+cmd+".onnx")
		if err := os.Link(in, hard); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Base(in), sym); err != nil {
			t.Fatal(err)
		}
		bad := append(slices.Clone(f.specials), specialfile.File{Name: "the input model", Path: in},
			specialfile.File{Name: "a hard link to the input", Path: hard}, specialfile.File{Name: "a symbolic link to the input", Path: sym},
			specialfile.File{Name: "a path in a missing folder", Path: filepath.Join(f.dir, "no", "such", "out.onnx")},
			specialfile.File{Name: "a path under a file", Path: filepath.Join(in, "out.onnx")})
		for _, b := range bad {
			f.refuse(t, cmd+" -o "+b.Name, args(b.Path), filepath.Base(b.Path))
		}
	}
	// A sidecar that would land on a special file or the input.
	out := filepath.Join(f.dir, "fresh.onnx")
	for _, sidecar := range []string{"fresh.encodings.json", "fresh.arch.json"} {
		p := filepath.Join(f.dir, sidecar)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"quantize", "optimize", "export"} {
			f.refuse(t, cmd+": "+sidecar+" is a directory", commands[cmd](out), sidecar)
		}
		os.Remove(p)
	}
	asSidecar := filepath.Join(f.dir, "s.arch.json") // a model named like the sidecar of -o s.onnx
	copyFile(t, f.qdq, asSidecar)
	f.refuse(t, "export over its input as sidecar", []string{"export", asSidecar, "-o", filepath.Join(f.dir, "s.onnx")}, "s.arch.json", "refusing to overwrite")
	// The report against every other file of the run.
	for _, cmd := range []string{"quantize", "optimize"} {
		for name, report := range map[string]string{
			"-o": out, "the encodings sidecar": filepath.Join(f.dir, "fresh.encodings.json"),
			"the architecture sidecar": filepath.Join(f.dir, "fresh.arch.json"), "the input model": f.model,
			"the checkpoint": out + ".ckpt", "a FIFO": f.specials[0].Path,
		} {
			f.refuse(t, cmd+" --report = "+name, append(commands[cmd](out), "--report", report), filepath.Base(report))
		}
	}
	f.refuse(t, "optimize --report = its search checkpoint", append(commands["optimize"](out), "--report", out+".search.ckpt"), "fresh.onnx.search.ckpt")
	f.refuse(t, "quantize --report = --arch", quantizeArgs(f.model, out, "--arch", f.arch, "--report", f.arch), "q.arch.json")
	// A checkpoint of the run that would be the input: the model named OUT.onnx.ckpt or
	// OUT.onnx.search.ckpt (optimize once deleted its input so).
	for _, c := range []struct{ cmd, name string }{{"quantize", "m.onnx.ckpt"}, {"optimize", "m.onnx.search.ckpt"}, {"optimize", "m.onnx.ckpt"}, {"train", "m.onnx.ckpt"}} {
		in := filepath.Join(f.dir, c.name)
		copyFile(t, f.model, in)
		args := map[string][]string{
			"quantize": quantizeArgs(in, filepath.Join(f.dir, "m.onnx"), "--wbits", "4", "--abits", "4", "--epochs", "1"),
			"optimize": optimizeArgs(in, filepath.Join(f.dir, "m.onnx")),
			"train":    trainArgs(in, filepath.Join(f.dir, "m.onnx")),
		}[c.cmd]
		f.refuse(t, c.cmd+" with its checkpoint as input", args, c.name, "refusing to overwrite")
		os.Remove(in)
	}
	f.refuse(t, "train --checkpoint FIFO", append(trainArgs(f.model, out), "--checkpoint", f.specials[0].Path), "fifo")
	f.refuse(t, "train --checkpoint = input", append(trainArgs(f.model, out), "--checkpoint", f.model), "model.onnx")
	f.refuse(t, "train --checkpoint = -o", append(trainArgs(f.model, out), "--checkpoint", out), "fresh.onnx")
}

// --resume FILE continues FILE or refuses it: a missing, foreign, garbage or special
// file, and a checkpoint of another run (other bits, data, flags, model or kind), each
// with one line naming the file and the first difference, leaving the checkpoint as it
// was.
func TestHostileCheckpoints(t *testing.T) {
	f := newHostileFixture(t)
	f.makeCheckpoints(t)
	out := filepath.Join(f.dir, "r.onnx")
	garbage := filepath.Join(f.dir, "garbage.ckpt")
	os.WriteFile(garbage, []byte("qnas checkpoint\n\xff\xff\xff\x7fjunk"), 0o644)
	truncated := filepath.Join(f.dir, "truncated.ckpt")
	b, _ := os.ReadFile(f.ftCkpt)
	os.WriteFile(truncated, b[:len(b)/2], 0o644)
	other := filepath.Join(f.dir, "resnet20.onnx")
	copyFile(t, testenv.Path("testdata", "models", "resnet20_bn.onnx"), other)
	q := func(extra ...string) []string {
		return ftArgs(f.model, out, append([]string{"--wbits", "3", "--abits", "4", "--epochs", "50", "--resume", f.ftCkpt}, extra...)...)
	}
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing", ftArgs(f.model, out, "--wbits", "3", "--abits", "4", "--epochs", "2", "--resume", filepath.Join(f.dir, "none.ckpt")), []string{"--resume", "none.ckpt"}},
		{"a model", ftArgs(f.model, out, "--wbits", "3", "--abits", "4", "--epochs", "2", "--resume", f.qdq), []string{"q.onnx", "not a qnas checkpoint"}},
		{"garbage", ftArgs(f.model, out, "--wbits", "3", "--abits", "4", "--epochs", "2", "--resume", garbage), []string{"garbage.ckpt"}},
		{"truncated", ftArgs(f.model, out, "--wbits", "3", "--abits", "4", "--epochs", "50", "--resume", truncated), []string{"truncated.ckpt"}},
		{"/dev/zero", ftArgs(f.model, out, "--wbits", "3", "--abits", "4", "--epochs", "2", "--resume", "/dev/zero"), []string{"/dev/zero"}},
		{"a FIFO", ftArgs(f.model, out, "--wbits", "3", "--abits", "4", "--epochs", "2", "--resume", f.specials[0].Path), []string{"fifo"}},
		{"other wbits", ftArgs(f.model, out, "--wbits", "4", "--abits", "4", "--epochs", "50", "--resume", f.ftCkpt), []string{"other-run.ckpt", "architecture was"}},
		{"other limit-train", append(q(), "--limit-train", "256"), []string{"other-run.ckpt", "training data was 128 samples"}},
		{"other lr", append(q(), "--lr", "0.02"), []string{"other-run.ckpt", "lr was 0.01, now 0.02"}},
		{"other epochs", ftArgs(f.model, out, "--wbits", "3", "--abits", "4", "--epochs", "7", "--resume", f.ftCkpt), []string{"other-run.ckpt", "fine-tuning epochs was 50, now 7"}},
		{"other seed", append(q(), "--seed", "9"), []string{"other-run.ckpt", "seed was 5, now 9"}},
		{"other calib", append(q(), "--calib", "3"), []string{"other-run.ckpt", "calibration batches was 2, now 3"}},
		{"other threads", append(q(), "--threads", "1"), []string{"other-run.ckpt", "threads was 2, now 1"}},
		{"other model", ftArgs(other, out, "--wbits", "3", "--abits", "4", "--epochs", "50", "--resume", f.ftCkpt), []string{"other-run.ckpt", "model was"}},
		{"epochs 0", ftArgs(f.model, out, "--wbits", "3", "--abits", "4", "--epochs", "0", "--resume", f.ftCkpt), []string{"--resume", "--epochs 0"}},
		{"search checkpoint to quantize", ftArgs(f.model, out, "--wbits", "3", "--abits", "4", "--epochs", "2", "--resume", f.searchCkpt), []string{"other-search.ckpt", "search"}},
		{"fine-tuning checkpoint to train", append(trainArgs(f.model, out), "--resume", f.ftCkpt), []string{"other-run.ckpt"}},
		{"search checkpoint to train", append(trainArgs(f.model, out), "--resume", f.searchCkpt), []string{"other-search.ckpt", "search"}},
		{"optimize other budget", searchArgs(f.model, out, "--search-epochs", "50", "--budget", "0.3", "--resume", f.searchCkpt), []string{"other-search.ckpt", "budget was"}},
		{"optimize other space", searchArgs(f.model, out, "--search-epochs", "50", "--wbits", "2,4,8", "--resume", f.searchCkpt), []string{"other-search.ckpt", "search wbits was [2 3 4 6 8], now [2 4 8]"}},
		{"optimize other model", searchArgs(other, out, "--search-epochs", "50", "--resume", f.searchCkpt), []string{"other-search.ckpt", "model was"}},
		{"optimize fine-tuning without its search", searchArgs(f.model, out, "--resume", f.ftCkpt), []string{"other-run.ckpt", "r.onnx.search.ckpt"}},
		{"optimize --ft-epochs 0 with a fine-tuning checkpoint", searchArgs(f.model, out, "--ft-epochs", "0", "--resume", f.ftCkpt), []string{"other-run.ckpt", "--ft-epochs 0"}},
		{"resume is -o", ftArgs(f.model, f.ftCkpt, "--wbits", "3", "--abits", "4", "--epochs", "50", "--resume", f.ftCkpt), []string{"other-run.ckpt"}},
	} {
		f.refuse(t, c.name, c.args, c.want...)
	}
}

// Side inputs are bounded and checked, and numbers that are not finite, or a budget
// beyond the model, are refused: each with one line naming the flag or file.
func TestHostileNumbersAndSideInputs(t *testing.T) {
	f := newHostileFixture(t)
	out := filepath.Join(f.dir, "n.onnx")
	big := filepath.Join(f.dir, "big.json")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 1<<30); err != nil { // sparse: refused by its size, never read
		t.Fatal(err)
	}
	huge := filepath.Join(f.dir, "huge-target.json")
	os.WriteFile(huge, []byte(`{"format": "qnas.target/1", "name": "huge", "pairs": [{"wbits": 8, "abits": 8, "cost": 1e308}, {"wbits": 4, "abits": 8, "cost": 1e307}, {"wbits": 4, "abits": 4, "cost": 1e307}]}`), 0o644)
	q := func(extra ...string) []string {
		return quantizeArgs(f.model, out, append([]string{"--wbits", "4", "--abits", "4"}, extra...)...)
	}
	o := func(extra ...string) []string { return optimizeArgs(f.model, out, extra...) }
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"--arch /dev/zero", quantizeArgs(f.model, out, "--arch", "/dev/zero"), []string{"/dev/zero", "limit"}},
		{"--arch a FIFO", quantizeArgs(f.model, out, "--arch", f.specials[0].Path), []string{"fifo"}},
		{"--arch a 1 GiB file", quantizeArgs(f.model, out, "--arch", big), []string{"big.json", "limit"}},
		{"--arch a directory", quantizeArgs(f.model, out, "--arch", f.dir), []string{"directory"}},
		{"inspect --arch /dev/zero", []string{"inspect", f.model, "--arch", "/dev/zero"}, []string{"/dev/zero"}},
		{"--target /dev/zero", q("--target", "/dev/zero"), []string{"/dev/zero", "limit"}},
		{"--target a 1 GiB file", q("--target", big), []string{"big.json", "limit"}},
		{"inspect --target /dev/zero", []string{"inspect", f.model, "--arch", f.arch, "--target", "/dev/zero"}, []string{"/dev/zero"}},
		{"quantize --target overflowing", q("--target", huge), []string{"--target huge", "finite"}},
		{"inspect --target overflowing", []string{"inspect", f.model, "--arch", f.arch, "--target", huge}, []string{"--target huge", "finite"}},
		{"optimize --target overflowing", o("--target", huge), []string{"--target huge", "finite"}},
		{"--lr NaN", q("--lr", "NaN"), []string{"--lr"}},
		{"--lr Inf", q("--lr", "Inf"), []string{"--lr"}},
		{"--momentum NaN", q("--momentum", "NaN"), []string{"--momentum"}},
		{"--momentum 1", q("--momentum", "1"), []string{"--momentum"}},
		{"--wd NaN", q("--wd", "NaN"), []string{"--wd"}},
		{"--wd -1", q("--wd", "-1"), []string{"--wd"}},
		{"--mean NaN", q("--mean", "NaN"), []string{"--mean"}},
		{"--mean abc", q("--mean", "abc"), []string{"--mean"}},
		{"--mean Inf", q("--mean", "0.5,Inf"), []string{"--mean"}},
		{"--std 0", q("--std", "0"), []string{"--std"}},
		{"--std -Inf", q("--std", "-Inf"), []string{"--std"}},
		{"--mean of 3 for 1 channel", q("--mean", "0.1,0.2,0.3"), []string{"--mean", "channel"}},
		{"optimize --arch-lr NaN", o("--arch-lr", "NaN"), []string{"--arch-lr"}},
		{"optimize --warmup NaN", o("--warmup", "NaN"), []string{"--warmup"}},
		{"optimize --init-spread 0", o("--init-spread", "0"), []string{"--init-spread"}},
		{"optimize --init-logits zeros", o("--init-logits", "zeros"), []string{"--init-logits", "zeros", "uniform", "sensitivity"}},
		{"optimize --width-prices exact", o("--width-prices", "exact"), []string{"--width-prices", "exact", "measured", "gradient"}},
		{"optimize --final-check always", o("--final-check", "always"), []string{"--final-check", "always", "search", "derive", "off"}},
		{"optimize --prune --sampling soft", o("--prune", "--sampling", "soft"), []string{"--width-prices", "--sampling", "gradient"}},
		{"optimize --momentum NaN", o("--momentum", "NaN"), []string{"--momentum"}},
		{"optimize --wd NaN", o("--wd", "NaN"), []string{"--wd"}},
		{"optimize --budget NaN", o("--budget", "NaN"), []string{"--budget"}},
		{"optimize --budget Inf", o("--budget", "InfT"), []string{"--budget"}},
		{"optimize --budget 5T", o("--budget", "5T"), []string{"--budget 5T", "no compression"}},
		{"optimize --widths NaN", o("--prune", "--widths", "0.5,NaN"), []string{"--widths"}},
		{"optimize --widths without --prune", o("--widths", "0.5,1"), []string{"--widths", "--prune"}},
		{"optimize --granularity group:1000", o("--granularity", "group:1000"), []string{"--granularity group:1000", "64"}},
		{"optimize --limit-train 512", o("--limit-train", "512", "--batch", "128"), []string{"--limit-train 512", "10%", "1280"}},
		{"quantize --batch 1e9", q("--batch", "1000000000"), []string{"--batch 1000000000"}},
		{"optimize --batch 1e9", o("--batch", "1000000000"), []string{"--batch 1000000000"}},
		{"train --batch 1e9", append(trainArgs(f.model, out), "--batch", "1000000000"), []string{"--batch 1000000000"}},
		{"train --lr NaN", append(trainArgs(f.model, out), "--lr", "NaN"), []string{"--lr"}},
		{"train --momentum NaN", append(trainArgs(f.model, out), "--momentum", "NaN"), []string{"--momentum"}},
		{"train --mean NaN", append(trainArgs(f.model, out), "--mean", "NaN"), []string{"--mean"}},
		{"eval --mean NaN", []string{"eval", f.model, "--data", "embedded", "--mean", "NaN"}, []string{"--mean"}},
		{"inspect --supernet --widths without --prune", []string{"inspect", f.model, "--supernet", "--widths", "0.5", "-o", out}, []string{"--widths"}},
	} {
		f.refuse(t, c.name, c.args, c.want...)
	}
	// --mean abc and --mean NaN are both usage errors.
	s1, _, _ := runCLI(t, q("--mean", "abc")...)
	s2, _, _ := runCLI(t, q("--mean", "NaN")...)
	if s1 != 2 || s2 != 2 {
		t.Errorf("--mean abc exits %d, --mean NaN %d; want 2 for both", s1, s2)
	}
}

// Mutated architecture files (truncated, bit-flipped, edited values) get one line naming
// the file from quantize --arch and inspect --arch, and write nothing.
func TestHostileArchFiles(t *testing.T) {
	f := newHostileFixture(t)
	good, err := os.ReadFile(f.arch)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(f.dir, "a.onnx")
	var files []string
	add := func(name string, b []byte) {
		p := filepath.Join(f.dir, name)
		os.WriteFile(p, b, 0o644)
		files = append(files, p)
	}
	for i := 1; i < 12; i++ {
		add("cut"+strings.Repeat("x", i)+".json", good[:len(good)*i/12])
	}
	for i, edit := range []struct{ from, to string }{
		{`"wbits": 4`, `"wbits": 9`}, {`"wbits": 4`, `"wbits": [4, 4, 4]`}, {`"wbits": 4`, `"wbits": []`}, {`"abits": 4`, `"abits": 1`},
		{`"abits": 4`, `"abits": 4.5`}, {`"abits": 4`, `"abits": "4"`}, {`"abits": 4`, `"abits": 1e400`}, {`"wbits": 4`, `"wbits": -4`},
		{`"wbits": 4`, `"wbits": [4, 32]`}, {`"format": "qnas.arch/1"`, `"format": "qnas.arch/2"`}, {`"layers": {`, `"extra": 1, "layers": {`},
		{`"/conv1/Conv"`, `"/conv9/Conv"`}, {`"abits": 4}`, `"abits": 4, "keep": 0}`}, {`"abits": 4}`, `"abits": 4, "keep": [0, 0]}`},
		{`"abits": 4}`, `"abits": 4, "keep": [99]}`}, {`"abits": 4}`, `"abits": 4, "keep": 1e9}`}, {`"abits": 4}`, `"abits": 4, "keep": [-1]}`},
		{`}}`, `}} trailing`}, {`{"format"`, `[{"format"`},
	} {
		b := strings.Replace(string(good), edit.from, edit.to, 1)
		if b == string(good) {
			t.Fatalf("edit %d changes nothing", i)
		}
		add("edit"+strings.Repeat("x", i)+".json", []byte(b))
	}
	for i := 0; i < len(good); i += max(1, len(good)/25) {
		b := slices.Clone(good)
		b[i] ^= 0x5a
		add("flip"+strings.Repeat("x", i%50)+hex.EncodeToString([]byte{byte(i)})+".json", b)
	}
	refused := 0
	for _, p := range files {
		name := filepath.Base(p)
		if status, _, _ := runCLI(t, "inspect", f.model, "--arch", p); status == 0 {
			continue // a flip inside a number, say, can leave a valid architecture
		}
		refused++
		f.refuse(t, "quantize --arch "+name, quantizeArgs(f.model, out, "--arch", p, "--mean", "0.286", "--std", "0.353"), name)
		f.refuse(t, "inspect --arch "+name, []string{"inspect", f.model, "--arch", p}, name)
	}
	if refused < len(files)/2 {
		t.Errorf("only %d of %d mutated files are invalid", refused, len(files))
	}
}
