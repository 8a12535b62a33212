package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qnas/qnas"
	"github.com/qnas/qnas/internal/testenv"
	"github.com/qnas/qnas/supernet"
)

func optimizeArgs(model, out string, extra ...string) []string {
	args := []string{"optimize", model, "--budget", "0.25", "--data", "embedded", "--limit-train", "800", "--limit-test", "200",
		"--calib", "2", "--batch", "32", "--search-epochs", "1", "--ft-epochs", "1", "--method", "search", "--seed", "3", "--threads", "2", "--mean", "0.286", "--std", "0.353", "-o", out}
	return append(args, extra...)
}

// optimize lands in [0.98, 1] × budget, writes the model and its sidecars, reports what the
// contract lists, is reproducible to the byte, and its architecture file reproduces its
// cost through quantize --arch.
func TestOptimizeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	model := copyModel(t, dir)
	out := filepath.Join(dir, "o.onnx")
	report := filepath.Join(dir, "report.json")
	status, stdout, stderr := runCLI(t, optimizeArgs(model, out, "--report", report)...)
	if status != 0 {
		t.Fatalf("optimize: %s", stderr)
	}
	if !strings.Contains(stdout, "wrote "+out) {
		t.Errorf("stdout %q", stdout)
	}
	var rep map[string]any
	b, _ := os.ReadFile(report)
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cost_model", "cost", "reference_cost", "cost_ratio", "accuracy", "float_accuracy", "seed", "layers", "budget", "phases"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	if r := rep["cost_ratio"].(float64); r > 0.25 || r < 0.245 {
		t.Errorf("cost ratio %.4f for a budget of 0.25", r)
	}
	names := map[string]bool{}
	for _, p := range rep["phases"].([]any) {
		names[p.(map[string]any)["name"].(string)] = true
	}
	for _, n := range []string{"calibrate", "warm-up", "search", "derive", "fine-tune", "export"} {
		if !names[n] {
			t.Errorf("no phase %q in %v", n, rep["phases"])
		}
	}
	for _, f := range []string{out, filepath.Join(dir, "o.encodings.json"), filepath.Join(dir, "o.arch.json")} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	for _, f := range []string{out + ".ckpt", out + ".search.ckpt"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
	// The bit map beside the report has a row per layer, as inspect --plot draws it.
	inspected := filepath.Join(dir, "inspect.png")
	if status, _, stderr := runCLI(t, "inspect", out, "--plot", inspected); status != 0 {
		t.Fatal(stderr)
	}
	if got, want := pngSize(t, filepath.Join(dir, "report.bits.png")), pngSize(t, inspected); got != want {
		t.Errorf("report.bits.png is %v, inspect --plot's bit map of the model %v", got, want)
	}
	// Same seed, same bytes; --baselines fine-tunes uniform models besides, and does not
	// change the model written.
	out2, report2 := filepath.Join(dir, "o2.onnx"), filepath.Join(dir, "report2.json")
	status, stdout, stderr = runCLI(t, optimizeArgs(model, out2, "--baselines", "--report", report2)...)
	if status != 0 {
		t.Fatal(stderr)
	}
	b1, _ := os.ReadFile(out)
	b2, _ := os.ReadFile(out2)
	if !bytes.Equal(b1, b2) {
		t.Error("two runs with one seed wrote different models")
	}
	checkFrontier(t, report2, stdout)
	// The architecture it wrote costs what the report says.
	status, stdout, stderr = runCLI(t, "inspect", model, "--arch", filepath.Join(dir, "o.arch.json"), "--json")
	if status != 0 {
		t.Fatal(stderr)
	}
	var s archSummary
	json.Unmarshal([]byte(stdout), &s)
	if math.Abs(s.CostRatio-rep["cost_ratio"].(float64)) > 1e-9 {
		t.Errorf("inspect --arch says %.6f, the report %.6f", s.CostRatio, rep["cost_ratio"].(float64))
	}
}

// checkFrontier checks the comparison a one-seed --baselines run reports: the frontier of
// its baselines at the budget, and the searched model's accuracy minus it, in the seed's
// result, in the summary (std 0) and on stdout.
func checkFrontier(t *testing.T, report, stdout string) {
	t.Helper()
	var rep qnas.OptimizeReport
	if err := json.Unmarshal(must(os.ReadFile(report)), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Seeds) != 1 || len(rep.Baselines) == 0 || rep.Summary == nil || rep.Summary.FrontierAtBudget == nil || rep.Summary.MixedMinusFrontier == nil {
		t.Fatalf("--baselines report: seeds %+v, baselines %+v, summary %+v", rep.Seeds, rep.Baselines, rep.Summary)
	}
	var measured []supernet.Vertex
	for _, b := range rep.Baselines {
		measured = append(measured, supernet.Vertex{WBits: b.WBits, ABits: b.ABits, CostRatio: b.CostRatio, Accuracy: b.Accuracy})
	}
	front, note, _ := supernet.NewFrontier(measured).At(rep.Budget)
	seed, sum := rep.Seeds[0], rep.Summary
	if seed.FrontierAtBudget == nil || *seed.FrontierAtBudget != front || sum.FrontierAtBudget[0] != front || sum.FrontierAtBudget[1] != 0 || sum.FrontierNote != note {
		t.Errorf("frontier at %g: seed %+v, summary %v %q; the baselines' frontier is %v %q", rep.Budget, seed, *sum.FrontierAtBudget, sum.FrontierNote, front, note)
	}
	if d := seed.Accuracy - front; math.Abs(*seed.MixedMinusFrontier-d) > 1e-9 || math.Abs(sum.MixedMinusFrontier[0]-d) > 1e-9 || math.Abs(rep.Accuracy-seed.Accuracy) > 1e-9 {
		t.Errorf("mixed − frontier: seed %v, summary %v; accuracy %v − frontier %v = %v", *seed.MixedMinusFrontier, *sum.MixedMinusFrontier, seed.Accuracy, front, d)
	}
	want := fmt.Sprintf("frontier at 0.25: %.2f%%; mixed − frontier %+.2f", 100*front, 100*(seed.Accuracy-front))
	if !strings.Contains(stdout, want) {
		t.Errorf("stdout lacks %q:\n%s", want, stdout)
	}
}

// Per-filter granularity, pruning alone and bits with pruning under one budget each give a
// model within the budget whose MACs inspect confirms; bits with pruning, at a budget that
// only pruning reaches, reports its measured width prices.
func TestOptimizeGranularityAndPruning(t *testing.T) {
	if testing.Short() {
		t.Skip("four searches")
	}
	dir := t.TempDir()
	model := copyModel(t, dir)
	for name, extra := range map[string][]string{
		"filter":     {"--granularity", "filter"},
		"prune":      {"--prune", "--wbits", "8", "--abits", "8", "--budget", "0.5", "--final-check", "off"},
		"bits+prune": {"--prune", "--budget", "0.0625"}, // below every bits-only architecture: must prune
		"checked":    {"--prune", "--budget", "0.125"},  // the final check compares two architectures
	} {
		out := filepath.Join(dir, name+".onnx")
		report := filepath.Join(dir, name+".json")
		status, _, stderr := runCLI(t, optimizeArgs(model, out, append(extra, "--report", report, "--ft-epochs", "0")...)...)
		if status != 0 {
			t.Fatalf("%s: %s", name, stderr)
		}
		var rep struct {
			Budget    float64 `json:"budget"`
			CostRatio float64 `json:"cost_ratio"`
			Layers    []struct {
				Name        string `json:"name"`
				WBits       []int  `json:"wbits"`
				MACs        int64  `json:"macs"`
				Filters     int    `json:"filters"`
				KeptFilters int    `json:"kept_filters"`
			} `json:"layers"`
			WidthPrices []struct {
				Name   string    `json:"name"`
				Widths []float64 `json:"widths"`
				Loss   []float64 `json:"widths_loss"`
				Probes []int     `json:"probes"`
			} `json:"width_prices"`
			FinalCheck *struct {
				Candidates []struct {
					Space     string  `json:"space"`
					Loss      float64 `json:"loss"`
					MACs      int64   `json:"macs"`
					CostRatio float64 `json:"cost_ratio"`
					Unfit     string  `json:"unfit"`
				} `json:"candidates"`
				Kept string `json:"kept"`
			} `json:"final_check"`
		}
		b, _ := os.ReadFile(report)
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.CostRatio > rep.Budget || rep.CostRatio < 0.98*rep.Budget {
			t.Errorf("%s: cost ratio %.4f for a budget of %.4f", name, rep.CostRatio, rep.Budget)
		}
		status, stdout, stderr := runCLI(t, "inspect", out, "--json")
		if status != 0 {
			t.Fatal(stderr)
		}
		var ins inspectSummary
		json.Unmarshal([]byte(stdout), &ins)
		macs := map[string]int64{}
		for _, l := range ins.Layers {
			macs[l.Name] = l.MACs
		}
		pruned := 0
		for _, l := range rep.Layers {
			if macs[l.Name] != l.MACs {
				t.Errorf("%s: %s has %d MACs in the file, %d in the report", name, l.Name, macs[l.Name], l.MACs)
			}
			if l.KeptFilters < l.Filters {
				pruned++
			}
			if len(l.WBits) != l.KeptFilters {
				t.Errorf("%s: %s lists %d bits for %d kept filters", name, l.Name, len(l.WBits), l.KeptFilters)
			}
		}
		var total int64
		for _, l := range rep.Layers {
			total += l.MACs
		}
		// The final check: the derived architecture first, then the simpler spaces' (every
		// channel kept; group:4 for filter); the one of lowest held-out loss is written.
		fc := rep.FinalCheck
		want := map[string][]string{"filter": {"derived", "group:4", "group:4, searched"},
			"bits+prune": {"derived", "every channel", "every channel, searched"},
			"checked":    {"derived", "every channel", "every channel, searched"}}[name]
		var spaces []string
		if fc != nil {
			best := -1
			for i, c := range fc.Candidates {
				spaces = append(spaces, c.Space)
				if c.Unfit != "" {
					if name != "bits+prune" || i == 0 {
						t.Errorf("%s: %s unfit: %s", name, c.Space, c.Unfit)
					}
					continue
				}
				if c.CostRatio > rep.Budget || c.CostRatio < 0.98*rep.Budget {
					t.Errorf("%s: %s costs %.4f of the reference", name, c.Space, c.CostRatio)
				}
				if best < 0 || c.Loss < fc.Candidates[best].Loss {
					best = i
				}
			}
			if k := fc.Candidates[best]; fc.Kept != k.Space || total != k.MACs || k.CostRatio != rep.CostRatio {
				t.Errorf("%s: kept %s; lowest held-out loss %+v; written %d MACs at %.6f", name, fc.Kept, k, total, rep.CostRatio)
			}
			if strings.Contains(fc.Kept, "every channel") && pruned > 0 {
				t.Errorf("%s: kept every channel, yet %d layers pruned", name, pruned)
			}
		}
		if !slices.Equal(spaces, want) {
			t.Errorf("%s: final check of %v, want %v", name, spaces, want)
		}
		if name == "bits+prune" && (fc == nil || len(fc.Candidates) != 3 || fc.Candidates[1].Unfit == "" || fc.Candidates[2].Unfit == "") {
			t.Errorf("%s: an architecture keeping every channel fits under every bits-only one", name)
		}
		if (name == "prune" || name == "bits+prune") && pruned == 0 {
			t.Errorf("%s: nothing pruned", name)
		}
		if name == "filter" && len(rep.WidthPrices) > 0 || name != "filter" && len(rep.WidthPrices) == 0 {
			t.Errorf("%s: %d groups with width prices", name, len(rep.WidthPrices))
		}
		for _, wp := range rep.WidthPrices {
			n := len(wp.Widths)
			if n < 2 || len(wp.Loss) != n || len(wp.Probes) != n || wp.Loss[n-1] != 0 || wp.Probes[0] == 0 {
				t.Errorf("%s: width prices %+v", name, wp)
			}
		}
	}
}

// Bad input: one line naming the flag or file, exit 2 (usage) or 1, nothing written.
func TestOptimizeBadInput(t *testing.T) {
	dir := t.TempDir()
	model := copyModel(t, dir)
	out := filepath.Join(dir, "o.onnx")
	cifar := filepath.Join(dir, "cifar")
	os.MkdirAll(cifar, 0o755)
	batch := make([]byte, 10*(1+3*32*32))
	for _, f := range []string{"data_batch_1.bin", "test_batch.bin"} {
		os.WriteFile(filepath.Join(cifar, f), batch, 0o644)
	}
	for _, c := range []struct {
		args   []string
		status int
		want   []string
	}{
		{[]string{"--budget", "0"}, 2, []string{"--budget"}},
		{[]string{"--budget", "-0.5"}, 2, []string{"--budget"}},
		{[]string{"--budget", "1.5"}, 2, []string{"--budget", "unit"}},
		{[]string{"--budget", "lots"}, 2, []string{"--budget"}},
		{[]string{"--budget", "0.01"}, 2, []string{"--budget", "cheapest", "0.06"}},
		{[]string{"--wbits", ""}, 2, []string{"--wbits"}},
		{[]string{"--wbits", "4,9"}, 2, []string{"--wbits"}},
		{[]string{"--prune", "--widths", "0.5,1.5"}, 2, []string{"--widths"}},
		{[]string{"--granularity", "group:x"}, 2, []string{"--granularity"}},
		{[]string{"--pin", "middle"}, 2, []string{"--pin"}},
		{[]string{"--sampling", "gumbel"}, 2, []string{"--sampling"}},
		{[]string{"--ft-from", "scratch"}, 2, []string{"--ft-from"}},
		{[]string{"--method", "foo"}, 2, []string{"--method", "foo", "sensitivity"}},
		{[]string{"--method", "sensitivity", "--sensitivity-images", "0"}, 2, []string{"--sensitivity-images", "positive"}},
		{[]string{"--method", "search", "--init-logits", "uniform", "--sensitivity-images", "500"}, 2, []string{"--sensitivity-images", "--method search", "--init-logits uniform"}},
		{[]string{"--method", "auto", "--init-logits", "uniform", "--data", testenv.FashionMNISTDir, "--limit-train", "20000", "--sensitivity-images", "500"},
			2, []string{"--sensitivity-images", "--method auto", "--method sensitivity", "under 100M", "20000 training samples, from 20000", "--init-logits sensitivity"}},
		{[]string{"--init-logits", "zeros"}, 2, []string{"--init-logits", "uniform"}},
		{[]string{"--data", cifar}, 1, []string{cifar}},
	} {
		status, _, stderr := runCLI(t, optimizeArgs(model, out, c.args...)...)
		expectFailure(t, status, stderr, c.status, c.want...)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "o.") {
			t.Errorf("a failed run left %s", e.Name())
		}
	}
}

// SIGINT during the search saves its state; --resume ends with the same bytes. The search
// prunes too, so the measured width prices are part of what is saved, and the final check
// searches the bits alone after it, which a SIGINT interrupts and --resume continues too.
func TestOptimizeInterruptAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("several searches")
	}
	dir := t.TempDir()
	model := copyModel(t, dir)
	args := func(out string, extra ...string) []string {
		return optimizeArgs(model, out, append([]string{"--search-epochs", "3", "--ft-epochs", "0", "--prune"}, extra...)...)
	}
	ref := filepath.Join(dir, "ref.onnx")
	start := time.Now()
	if b, err := qnasCmd(args(ref)...).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	whole := time.Since(start) // the search takes most of the second half of a run: aim there
	want, _ := os.ReadFile(ref)
	out := filepath.Join(dir, "out.onnx")
	for attempt := 0; attempt < 8; attempt++ {
		os.Remove(out + ".search.ckpt")
		cmd := qnasCmd(args(out)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(whole * time.Duration(40+6*attempt) / 100)
		cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err == nil || cmd.ProcessState.ExitCode() == -1 {
			os.Remove(out)
			continue // finished before, or died before the handler: try another delay
		}
		if last := lastLine(stderr.String()); !strings.Contains(last, "out.onnx.search.ckpt") {
			continue // interrupted in another phase
		}
		if b, err := qnasCmd(args(out, "--resume", out+".search.ckpt")...).CombinedOutput(); err != nil {
			t.Fatalf("resume: %v\n%s", err, b)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
			t.Fatal("the resumed run's output differs from the uninterrupted run's")
		}
		interruptFinalCheck(t, args, out, want)
		return
	}
	t.Skip("no SIGINT landed inside the search")
}

// interruptFinalCheck interrupts the final check's search of the simplest space (once its
// progress shows) and resumes through the search's checkpoint, as the interruption's
// message says: the output is want, to the byte.
func interruptFinalCheck(t *testing.T, args func(string, ...string) []string, out string, want []byte) {
	t.Helper()
	os.Remove(out)
	checking := false
	stderr, sent, status := interruptWhen(t, args(out), func(line string) bool {
		checking = checking || strings.Contains(line, "final check: searching the simplest space")
		return checking && strings.HasPrefix(line, "search ")
	})
	if !sent || status == 0 {
		t.Fatalf("not interrupted in the final check's search:\n%s", stderr)
	}
	last := lastLine(stderr)
	if !strings.Contains(last, "--resume "+out+".search.ckpt") {
		t.Fatalf("interrupted in the final check's search: %s", last)
	}
	if _, err := os.Stat(out + ".simpler.search.ckpt"); err != nil {
		t.Fatalf("no checkpoint of the final check's search: %v", err)
	}
	if b, err := qnasCmd(args(out, "--resume", out+".search.ckpt")...).CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, b)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Fatal("resumed from the final check's search: the output differs from the uninterrupted run's")
	}
	for _, f := range []string{".search.ckpt", ".simpler.search.ckpt"} {
		if _, err := os.Stat(out + f); err == nil {
			t.Errorf("%s left after the run completed", out+f)
		}
	}
}

// bench --mode search times a weight step and an architecture step; inspect --supernet
// writes the rewritten graph, whose mixed ops carry their choices.
func TestSearchBenchAndSupernetView(t *testing.T) {
	model := testenv.Path("testdata", "models", "resnet8_bn.onnx")
	status, out, stderr := runCLI(t, "bench", model, "--mode", "search", "--batch", "4", "--steps", "2", "--threads", "1", "--json", "--ops")
	if status != 0 || !strings.Contains(out, `"mode":"search"`) || !strings.Contains(out, "MixedAct backward") || !strings.Contains(out, "MixedWeight forward") {
		t.Errorf("bench --mode search (exit %d, %s): %s", status, stderr, out)
	}
	super := filepath.Join(t.TempDir(), "super.onnx")
	status, _, stderr = runCLI(t, "inspect", model, "--supernet", "--prune", "-o", super)
	if status != 0 {
		t.Fatal(stderr)
	}
	status, out, stderr = runCLI(t, "inspect", model, "--supernet", "--prune", "--granularity", "filter", "--dump-after", "supernet")
	if status != 0 || !strings.Contains(out, "qnas::MixedWeight(conv1.weight") || !strings.Contains(out, "qnas::WidthMask") || !strings.Contains(out, "units=16") {
		t.Errorf("--dump-after supernet (exit %d, %s):\n%s", status, stderr, out)
	}
	if err := testenv.CheckONNX(t, super); err == nil {
		t.Log("the ONNX checker accepts the supernet view")
	} else if !strings.Contains(err.Error(), "qnas") {
		t.Errorf("the supernet view is malformed beyond its custom ops: %v", err)
	}
}

// pngSize decodes the PNG image in path and returns its size.
func pngSize(t *testing.T, path string) image.Point {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img.Bounds().Size()
}
