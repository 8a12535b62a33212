package sweep

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/supernet"
)

// The sample reports in testdata are real: written by (optimize_report.json)
//
//	qnas optimize testdata/models/resnet8_bn.onnx --budget 0.25 --data embedded --mean 0.2860 \
//	  --std 0.3530 --search-epochs 1 --ft-epochs 0 --limit-train 1500 -o q.onnx --report r.json
//
// and (quantize_report.json)
//
//	qnas quantize testdata/models/resnet8_bn.onnx --wbits 4 --abits 4 --data embedded \
//	  --mean 0.2860 --std 0.3530 --limit-train 1500 -o u.onnx --report u.json
//
// with the paths in "model" and "output" made relative. Tests vary their cost and accuracy.

const testModel = "../testdata/models/resnet8_bn.onnx"

func testSpec() Spec {
	return Spec{Model: testModel, Budgets: []float64{0.125, 0.25}, Seeds: 2, Seed: 1,
		Uniform:      []Bits{{3, 3}, {4, 4}},
		OptimizeArgs: []string{"--data", "embedded", "--search-epochs", "1"},
		QuantizeArgs: []string{"--data", "embedded"}}
}

// writePoint finishes a point as a run would: the model (the float test model, for its
// weight bytes) and a report derived from the real sample of its kind.
func writePoint(t *testing.T, plan *Plan, pt Point, costRatio, acc float64) {
	t.Helper()
	sample := "testdata/optimize_report.json"
	if pt.Kind == Uniform {
		sample = "testdata/quantize_report.json"
	}
	b, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	rep["cost_ratio"], rep["cost"], rep["accuracy"], rep["seed"] = costRatio, costRatio*rep["reference_cost"].(float64), acc, pt.Seed
	if err := os.MkdirAll(plan.PointDir(pt), 0o755); err != nil {
		t.Fatal(err)
	}
	model, err := os.ReadFile(testModel)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plan.PointDir(pt), ModelFile), model, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(rep)
	if err := os.WriteFile(plan.ReportPath(pt), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// results of the test sweep: per point name, cost ratio and accuracy.
var testResults = map[string][2]float64{
	"mixed-b0.125-s1":  {0.1238, 0.880},
	"mixed-b0.125-s2":  {0.1241, 0.870},
	"mixed-b0.25-s1":   {0.2488, 0.915},
	"mixed-b0.25-s2":   {0.2492, 0.905},
	"uniform-w3a3-s1":  {0.1440, 0.850},
	"uniform-w3a3-s2":  {0.1440, 0.860},
	"uniform-w4a4-s1":  {0.2530, 0.929},
	"uniform-w4a4-s2x": {}, // left unfinished below
}

func TestParseBudgets(t *testing.T) {
	got, err := ParseBudgets(" 0.0625,0.125, 0.25,0.125 ")
	if err != nil || len(got) != 3 || got[0] != 0.0625 || got[2] != 0.25 {
		t.Errorf("ParseBudgets = %v, %v", got, err)
	}
	for in, want := range map[string]string{
		"0.1,abc":  `"abc" is not a number`,
		"0.25,1.5": "1.5 is outside (0, 1]",
		"0,0.25":   "0 is outside (0, 1]",
		"-0.1":     "-0.1 is outside",
		"":         "give at least one",
		" , ":      "give at least one",
		"NaN":      "not a number",
	} {
		_, err := ParseBudgets(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "--budgets") {
			t.Errorf("ParseBudgets(%q) = %v, want an error naming --budgets with %q", in, err, want)
		}
	}
}

func TestOpenKeepsPointsAndRefusesOtherSweeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sw")
	s := testSpec()
	s.Seeds = 1
	p, err := Open(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	names := func(p *Plan) (out []string) {
		for _, pt := range p.Points {
			out = append(out, pt.Name)
		}
		return out
	}
	if got := strings.Join(names(p), " "); got != "mixed-b0.125-s1 mixed-b0.25-s1 uniform-w3a3-s1 uniform-w4a4-s1" {
		t.Errorf("points %s", got)
	}
	// A second seed and a budget keep the first points' numbers.
	s.Seeds, s.Budgets = 2, []float64{0.125, 0.25, 0.0625}
	p2, err := Open(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Points) != 10 || strings.Join(names(p2)[:4], " ") != strings.Join(names(p), " ") || p2.Points[4].Name != "mixed-b0.0625-s1" {
		t.Errorf("extended points %v", names(p2))
	}
	loaded, err := Load(dir)
	if err != nil || len(loaded.Points) != 10 || loaded.Points[9].Index != 9 {
		t.Fatalf("Load: %v %v", loaded, err)
	}
	cmd := shellCommand(loaded.Command(loaded.Points[0]))
	if !strings.HasPrefix(cmd, "optimize "+loaded.Model+" --budget 0.125 --seed 1 --data embedded --search-epochs 1 -o "+dir+"/mixed-b0.125-s1/model.onnx --report ") {
		t.Errorf("command %s", cmd)
	}
	// Another model, other flags, a folder of other files.
	other := s
	other.Model = "../testdata/models/resnet8.onnx"
	if _, err := Open(dir, other); err == nil || !strings.Contains(err.Error(), "another model") || !strings.Contains(err.Error(), dir) {
		t.Errorf("another model: %v", err)
	}
	other = s
	other.OptimizeArgs = []string{"--data", "embedded", "--search-epochs", "3"}
	other.Budgets = []float64{0.5}
	// Nothing has started: the plan becomes what the new flags and budgets say.
	rp, err := Open(t.TempDir(), s)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(rp.PointDir(rp.Points[0]), 0o755)
	os.WriteFile(filepath.Join(rp.PointDir(rp.Points[0]), LogFile), []byte("qnas: --lr -1: ...\n"), 0o644)
	if rp, err = Open(rp.Dir(), other); err != nil || strings.Join(names(rp), " ") != "mixed-b0.5-s1 uniform-w3a3-s1 uniform-w4a4-s1 mixed-b0.5-s2 uniform-w3a3-s2 uniform-w4a4-s2" || rp.OptimizeArgs[3] != "3" {
		t.Errorf("an unstarted sweep with other flags: %v %v", err, names(rp))
	}
	// Once a point has started (its checkpoint is there), other flags are refused.
	os.MkdirAll(p2.PointDir(p2.Points[3]), 0o755)
	os.WriteFile(filepath.Join(p2.PointDir(p2.Points[3]), ModelFile+".ckpt"), []byte("state"), 0o644)
	if _, err := Open(dir, other); err == nil || !strings.Contains(err.Error(), "other flags") {
		t.Errorf("other flags: %v", err)
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "notes.txt"), []byte("mine"), 0o644)
	if _, err := Open(full, s); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a folder of other files: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(full, "notes.txt")); string(b) != "mine" {
		t.Error("Open touched a file it refused")
	}
	// A hand-edited plan with a key qnas does not know is refused, naming the file and key.
	planPath := filepath.Join(dir, PlanFile)
	orig := must(os.ReadFile(planPath))
	os.WriteFile(planPath, bytes.Replace(orig, []byte(`"points"`), []byte(`"budgetz": [0.5], "points"`), 1), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), planPath) || !strings.Contains(err.Error(), "budgetz") {
		t.Errorf("unknown key: %v", err)
	}
	os.WriteFile(planPath, orig, 0o644)
	if _, err := loaded.Point(10); err == nil || !strings.Contains(err.Error(), "--point 10") || !strings.Contains(err.Error(), "0..9") {
		t.Errorf("Point(10): %v", err)
	}
}

func TestChooseUniformBracketsEveryBudget(t *testing.T) {
	var cands []supernet.UniformCost
	cost := func(w, a int) float64 { return float64(w*a)/64 + 0.01 } // the 8-bit input layer's share
	for w := 2; w <= 8; w++ {
		for a := 2; a <= 8; a++ {
			cands = append(cands, supernet.UniformCost{WBits: w, ABits: a, CostRatio: cost(w, a)})
		}
	}
	got := ChooseUniform(cands, []float64{0.0625, 0.25})
	// 0.0625: w2a2 (0.0725) is the cheapest w=a above it, nothing is below;
	// 0.25: w3a3 (0.15) the dearest w=a below, w3a5 (0.244) the dearest below,
	// w4a4 (0.26) the cheapest w=a above. Of equal costs (w3a5, w5a3) the one listed last.
	want := []Bits{{2, 2}, {3, 3}, {5, 3}, {4, 4}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ChooseUniform = %v, want %v", got, want)
	}
}

// finishTestSweep opens the test sweep and finishes all its points but one.
func finishTestSweep(t *testing.T) *Plan {
	t.Helper()
	p, err := Open(filepath.Join(t.TempDir(), "sweep"), testSpec())
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range p.Points {
		if r, ok := testResults[pt.Name]; ok {
			writePoint(t, p, pt, r[0], r[1])
		}
	}
	return p
}

func TestMergeWritesTablesPlotsAndPage(t *testing.T) {
	p := finishTestSweep(t)
	res, err := Merge(p.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if res.Points != 8 || res.Finished != 7 || fmt.Sprint(res.Missing) != "[uniform-w4a4-s2]" || len(res.Warnings) != 0 {
		t.Errorf("points %d finished %d missing %v warnings %v", res.Points, res.Finished, res.Missing, res.Warnings)
	}
	if res.FloatAccuracy != 0.932 || res.CostUnit != "BOPs" || len(res.Rows) != 7 {
		t.Errorf("float %v unit %q rows %d", res.FloatAccuracy, res.CostUnit, len(res.Rows))
	}
	// Rows in plan order, with MACs from the report's layers and weight bytes from the model.
	g, err := graph.Load(testModel, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	params := graph.Summarize(g).Params
	r0 := res.Rows[0]
	if r0.Kind != Mixed || r0.Budget != 0.125 || r0.Seed != 1 || r0.Path != "mixed-b0.125-s1/model.onnx" || r0.WeightBytes != 4*params || r0.MACs <= 0 {
		t.Errorf("first row %+v (float model: %d params)", r0, params)
	}
	// Budget 0.25: mean of two seeds against the frontier w3a3 (0.855 at 0.144) – w4a4
	// (0.929 at 0.253), interpolated at 0.25.
	b := res.Budgets[1]
	front := 0.855 + (0.25-0.144)/(0.253-0.144)*(0.929-0.855)
	if b.Budget != 0.25 || b.Seeds != 2 || math.Abs(b.Accuracy-0.91) > 1e-12 || math.Abs(b.AccuracyStd-math.Sqrt(0.00005)) > 1e-9 ||
		b.FrontierAtBudget == nil || math.Abs(*b.FrontierAtBudget-front) > 1e-3 || math.Abs(*b.MixedMinusFrontier-(0.91-front)) > 1e-3 || b.FrontierNote != "" {
		t.Errorf("budget 0.25: %+v (frontier %v)", b, front)
	}
	// Budget 0.125 lies below the cheapest uniform model: compared with it, and said so.
	if b := res.Budgets[0]; b.FrontierAtBudget == nil || *b.FrontierAtBudget != 0.855 || !strings.Contains(b.FrontierNote, "below the cheapest uniform model (w3a3") {
		t.Errorf("budget 0.125: %+v", b)
	}

	dir := p.Dir()
	var fromFile Result
	js, _ := os.ReadFile(filepath.Join(dir, ResultFile))
	if err := json.Unmarshal(js, &fromFile); err != nil || len(fromFile.Rows) != 7 || fromFile.Rows[2].WBits != 3 || fromFile.Rows[2].Budget != 0 {
		t.Errorf("sweep.json: %v %+v", err, fromFile.Rows)
	}
	if !bytes.Contains(js, []byte(`"kind": "uniform"`)) || bytes.Contains(js, []byte(`"budget": 0,`)) {
		t.Errorf("sweep.json rows: uniform rows should carry no budget")
	}
	recs, err := csv.NewReader(bytes.NewReader(must(os.ReadFile(filepath.Join(dir, TableFile))))).ReadAll()
	if err != nil || len(recs) != 8 || strings.Join(recs[0], ",") != "budget,seed,kind,wbits,abits,cost_ratio,cost,macs,weight_bytes,accuracy,path" ||
		recs[3][0] != "" || recs[3][3] != "3" || recs[1][0] != "0.125" || recs[1][3] != "" {
		t.Errorf("sweep.csv: %v %q", err, recs)
	}
	for _, name := range []string{"pareto.svg", "pareto.png", "bits-0.125.svg", "bits-0.125.png", "bits-0.25.png"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if strings.HasSuffix(name, ".png") {
			if _, err := png.DecodeConfig(bytes.NewReader(b)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		} else if !bytes.Contains(b, []byte("<svg")) {
			t.Errorf("%s is not SVG", name)
		}
	}
	page := string(must(os.ReadFile(filepath.Join(dir, IndexFile))))
	for _, want := range []string{"data:image/png;base64,", "7 of 8 points", "uniform-w4a4-s2", "below the cheapest uniform model",
		"qnas optimize " + p.Model + " --budget 0.25 --seed 2 --data embedded --search-epochs 1 -o " + dir + "/mixed-b0.25-s2/model.onnx",
		"qnas quantize " + p.Model + " --wbits 3 --abits 3 --seed 1 --data embedded -o", "<th>search</th>", "<th>fine-tune</th>", "mixed-b0.25-s1/model.onnx"} {
		if !strings.Contains(page, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	for _, net := range []string{"http://", "https://", "<script", "<link"} {
		if strings.Contains(page, net) {
			t.Errorf("index.html refers to %q: it must need nothing else", net)
		}
	}
	// Merging again gives the same files.
	png1 := must(os.ReadFile(filepath.Join(dir, "pareto.png")))
	if _, err := Merge(dir); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(js, must(os.ReadFile(filepath.Join(dir, ResultFile)))) || !bytes.Equal(png1, must(os.ReadFile(filepath.Join(dir, "pareto.png")))) {
		t.Error("a second merge of the same points wrote other files")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestMergeRefusals(t *testing.T) {
	// No plan.
	empty := t.TempDir()
	if _, err := Merge(empty); err == nil || !strings.Contains(err.Error(), "not a qnas sweep folder") || !strings.Contains(err.Error(), empty) {
		t.Errorf("no plan: %v", err)
	}
	// No finished point.
	p, err := Open(filepath.Join(t.TempDir(), "sw"), testSpec())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(p.Dir()); err == nil || !strings.Contains(err.Error(), "no finished point") || strings.Contains(err.Error(), "\n") {
		t.Errorf("nothing finished: %v", err)
	}
	// A point of another model's sweep (another reference cost).
	writePoint(t, p, p.Points[0], 0.12, 0.8)
	writePoint(t, p, p.Points[1], 0.24, 0.9)
	var rep map[string]any
	json.Unmarshal(must(os.ReadFile(p.ReportPath(p.Points[1]))), &rep)
	rep["reference_cost"] = 2 * rep["reference_cost"].(float64)
	os.WriteFile(p.ReportPath(p.Points[1]), must(json.Marshal(rep)), 0o644)
	_, err = Merge(p.Dir())
	if err == nil || !strings.Contains(err.Error(), p.ReportPath(p.Points[1])) || !strings.Contains(err.Error(), "another model") {
		t.Errorf("foreign point: %v", err)
	}
	if _, err := os.Stat(filepath.Join(p.Dir(), ResultFile)); err == nil {
		t.Error("a refused merge wrote sweep.json")
	}
	// A malformed report is a warning, and its point missing; the others merge.
	os.WriteFile(p.ReportPath(p.Points[1]), []byte(`{"cost_ratio": "x"`), 0o644)
	res, err := Merge(p.Dir())
	if err != nil || res.Finished != 1 || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], p.Points[1].Name) {
		t.Errorf("malformed report: %v %+v", err, res)
	}
	// An output name taken by a folder is refused before anything is written.
	index := filepath.Join(p.Dir(), IndexFile)
	os.Remove(index)
	os.Mkdir(index, 0o755)
	before := must(os.ReadFile(filepath.Join(p.Dir(), ResultFile)))
	os.WriteFile(p.ReportPath(p.Points[1]), must(os.ReadFile(p.ReportPath(p.Points[0]))), 0o644)
	if _, err := Merge(p.Dir()); err == nil || !strings.Contains(err.Error(), index) {
		t.Errorf("index.html a folder: %v", err)
	}
	if after := must(os.ReadFile(filepath.Join(p.Dir(), ResultFile))); !bytes.Equal(before, after) {
		t.Error("a refused merge rewrote sweep.json")
	}
}

// A point runs in one process at a time: RunPoint waits while another holds the point's
// lock, and skips the point when that one finished it.
func TestRunPointWaitsForTheLockHolder(t *testing.T) {
	p, err := Open(filepath.Join(t.TempDir(), "sw"), testSpec())
	if err != nil {
		t.Fatal(err)
	}
	pt := p.Points[1]
	os.MkdirAll(p.PointDir(pt), 0o755)
	held, err := lockPoint(context.Background(), filepath.Join(p.PointDir(pt), LockFile))
	if err != nil {
		t.Fatal(err)
	}
	c := &copyRun{t: t}
	type result struct {
		ran bool
		err error
	}
	got := make(chan result, 1)
	go func() {
		ran, err := RunPoint(context.Background(), p, pt.Index, c.run)
		got <- result{ran, err}
	}()
	select {
	case r := <-got:
		t.Fatalf("RunPoint did not wait for the lock: %+v", r)
	case <-time.After(500 * time.Millisecond):
	}
	writePoint(t, p, pt, 0.25, 0.9) // the holder finishes the point
	held.Close()
	if r := <-got; r.ran || r.err != nil || c.calls.Load() != 0 {
		t.Errorf("after the holder finished: ran %v, err %v, %d runs", r.ran, r.err, c.calls.Load())
	}
	// A caller that gives up while waiting gets an error naming the lock.
	os.MkdirAll(p.PointDir(p.Points[2]), 0o755)
	if held, err = lockPoint(context.Background(), filepath.Join(p.PointDir(p.Points[2]), LockFile)); err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := RunPoint(ctx, p, 2, c.run); err == nil || !strings.Contains(err.Error(), "another process runs this point") {
		t.Errorf("cancelled wait: %v", err)
	}
}

// copyRun is a RunFunc for the runner's tests: it finishes a point from the sample report
// (the training itself is qnas optimize/quantize, tested in their packages and by
// scripts/slurm_test.sh), counting how many run at once.
type copyRun struct {
	t            *testing.T
	mu           sync.Mutex
	active, peak int
	calls        atomic.Int32
	fail         string
	gate         chan struct{} // when set, a run waits for a value from it
	finish       func()        // when set, called by a run that finished its point
}

// open lets n runs through the gate, each once jobs runs are waiting at it or no more can
// start (all total have started).
func (c *copyRun) open(n, jobs, total int) {
	for i := 0; i < n; i++ {
		for {
			c.mu.Lock()
			a := c.active
			c.mu.Unlock()
			if a == jobs || int(c.calls.Load()) == total {
				break
			}
			time.Sleep(time.Millisecond)
		}
		c.gate <- struct{}{}
	}
}

func (c *copyRun) run(ctx context.Context, plan *Plan, p Point, _ *os.File) (string, error) {
	c.calls.Add(1)
	c.mu.Lock()
	c.active++
	c.peak = max(c.peak, c.active)
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.active--; c.mu.Unlock() }()
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if p.Name == c.fail {
		return "", errors.New("out of memory")
	}
	r := testResults[p.Name]
	if r[0] == 0 {
		r = [2]float64{0.25, 0.9}
	}
	writePoint(c.t, plan, p, r[0], r[1])
	if c.finish != nil {
		c.finish()
	}
	return plan.ReportPath(p), nil
}

func TestRunRunsJobsAtOnceSkipsFinishedAndKeepsGoing(t *testing.T) {
	p, err := Open(filepath.Join(t.TempDir(), "sw"), testSpec())
	if err != nil {
		t.Fatal(err)
	}
	writePoint(t, p, p.Points[0], 0.1238, 0.88) // finished before
	c := &copyRun{t: t, fail: "mixed-b0.25-s2", gate: make(chan struct{})}
	go c.open(7, 2, 7)
	var prog bytes.Buffer
	res, err := Run(context.Background(), p, c.run, RunOptions{Jobs: 2, Progress: &prog})
	if err == nil || !strings.Contains(err.Error(), "1 of 7 points failed: mixed-b0.25-s2: out of memory") {
		t.Errorf("Run error %v", err)
	}
	if c.calls.Load() != 7 || c.peak != 2 {
		t.Errorf("%d runs, at most %d at once; want 7 and 2", c.calls.Load(), c.peak)
	}
	if res == nil || res.Finished != 7 || fmt.Sprint(res.Missing) != "[mixed-b0.25-s2]" {
		t.Errorf("merged %+v", res)
	}
	if !strings.Contains(prog.String(), "sweep 100% 7/7") || !strings.Contains(prog.String(), "1 failed, 1 finished before") {
		t.Errorf("progress:\n%s", prog.String())
	}
	// Running again does only the failed point.
	c2 := &copyRun{t: t}
	if _, err := Run(context.Background(), p, c2.run, RunOptions{Jobs: 3}); err != nil || c2.calls.Load() != 1 {
		t.Errorf("second run: %v, %d runs", err, c2.calls.Load())
	}
	// A run that claims success without a report is an error.
	p3, _ := Open(filepath.Join(t.TempDir(), "sw"), testSpec())
	_, err = RunPoint(context.Background(), p3, 2, func(context.Context, *Plan, Point, *os.File) (string, error) { return "elsewhere.json", nil })
	if err == nil || !strings.Contains(err.Error(), p3.Points[2].Name) {
		t.Errorf("no report: %v", err)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	p, err := Open(filepath.Join(t.TempDir(), "sw"), testSpec())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Two points start; one finishes and the sweep is interrupted as it does.
	c := &copyRun{t: t, gate: make(chan struct{}), finish: cancel}
	go c.open(1, 2, 8)
	res, err := Run(ctx, p, c.run, RunOptions{Jobs: 2})
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "\n") {
		t.Errorf("Run error %v", err)
	}
	if c.calls.Load() != 2 || res == nil || res.Finished != 1 {
		t.Errorf("%d runs started, result %+v; want 2 started and 1 finished", c.calls.Load(), res)
	}
}

func TestEmitSlurm(t *testing.T) {
	p := finishTestSweep(t)
	files, err := EmitSlurm(p, SlurmOptions{Qnas: "/opt/qnas/bin/qnas", CPUs: 4, Mem: "8G", Time: "02:00:00", Partition: "cpu", Parallel: 3, Extra: []string{"--qos=long"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("files %v", files)
	}
	arr := string(must(os.ReadFile(filepath.Join(p.Dir(), SlurmArrayFile))))
	for _, want := range []string{"#SBATCH --array=0-7%3\n", "#SBATCH --cpus-per-task=4\n", "#SBATCH --mem=8G\n", "#SBATCH --time=02:00:00\n",
		"#SBATCH --partition=cpu\n", "#SBATCH --qos=long\n", "#SBATCH --output=" + p.Dir() + "/logs/point-%a.out\n",
		`exec /opt/qnas/bin/qnas sweep --point "$SLURM_ARRAY_TASK_ID" --threads "${SLURM_CPUS_PER_TASK:-4}" -o ` + p.Dir() + "\n"} {
		if !strings.Contains(arr, want) {
			t.Errorf("sweep.sbatch lacks %q:\n%s", want, arr)
		}
	}
	merge := string(must(os.ReadFile(filepath.Join(p.Dir(), SlurmMergeFile))))
	if !strings.Contains(merge, "exec /opt/qnas/bin/qnas sweep merge "+p.Dir()+"\n") || !strings.Contains(merge, "#SBATCH --partition=cpu\n") {
		t.Errorf("merge.sbatch:\n%s", merge)
	}
	submit := string(must(os.ReadFile(filepath.Join(p.Dir(), SlurmSubmitFile))))
	if !strings.Contains(submit, `--dependency=afterany:"$array" `+p.Dir()+"/merge.sbatch") {
		t.Errorf("submit.sh:\n%s", submit)
	}
	for _, f := range files {
		if out, err := exec.Command("bash", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("%s: %v %s", f, err, out)
		}
		if fi, _ := os.Stat(f); fi.Mode()&0o100 == 0 {
			t.Errorf("%s is not executable", f)
		}
	}
	if fi, err := os.Stat(filepath.Join(p.Dir(), SlurmLogDir)); err != nil || !fi.IsDir() {
		t.Errorf("no logs folder: %v", err)
	}
	if _, err := EmitSlurm(p, SlurmOptions{Mem: "8 G"}); err == nil {
		t.Error("a memory with a space was written into #SBATCH")
	}
}
