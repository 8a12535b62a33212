package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qnas/qnas/internal/testenv"
	"github.com/qnas/qnas/sweep"
)

// sweepArgs is a short sweep of two points (the budget 0.25 and the uniform w4a4) with a
// search and a fine-tuning epoch each, so that every kind of checkpoint occurs.
func sweepArgs(model, dir string, extra ...string) []string {
	args := []string{"sweep", model, "--budgets", "0.25", "--uniform", "4:4", "--data", "embedded", "--mean", "0.286", "--std", "0.353",
		"--limit-train", "640", "--batch", "32", "--calib", "2", "--limit-test", "200", "--search-epochs", "1", "--ft-epochs", "1",
		"--method", "search", "--seed", "3", "--jobs", "2", "--threads", "2", "-o", dir}
	return append(args, extra...)
}

// pointFiles are the files a point's folder may hold.
var pointFiles = map[string]bool{sweep.LockFile: true, sweep.LogFile: true, sweep.ReportFile: true, "model.onnx": true,
	"model.arch.json": true, "model.encodings.json": true, "model.onnx.ckpt": true, "model.onnx.search.ckpt": true,
	"report.bits.png": true} // --report draws the bit map beside the report

// waitForPoints waits until no process holds a point's lock (the children of a killed
// sweep finish saving their checkpoints), then checks that the sweep left only whole
// points: a point with a report has its model and sidecars, and nothing else lies around.
func waitForPoints(t *testing.T, plan *sweep.Plan) (finished, checkpoints int) {
	t.Helper()
	for _, pt := range plan.Points {
		dir := plan.PointDir(pt)
		if f, err := os.Open(filepath.Join(dir, sweep.LockFile)); err == nil {
			syscall.Flock(int(f.Fd()), syscall.LOCK_EX) // blocks while a child lives
			f.Close()
		}
		entries, _ := os.ReadDir(dir)
		has := map[string]bool{}
		for _, e := range entries {
			has[e.Name()] = true
			if !pointFiles[e.Name()] {
				t.Errorf("%s: unexpected file %s", pt.Name, e.Name())
			}
		}
		if has[sweep.ReportFile] {
			finished++
			for _, f := range []string{"model.onnx", "model.arch.json", "model.encodings.json"} {
				if !has[f] {
					t.Errorf("%s has its report but no %s", pt.Name, f)
				}
			}
		}
		if has["model.onnx.ckpt"] || has["model.onnx.search.ckpt"] {
			checkpoints++
		}
	}
	return finished, checkpoints
}

// A sweep killed at random moments (SIGKILL, which its points see as SIGTERM, then
// SIGINT) and started again each time ends with the same sweep.json as a sweep that ran
// uninterrupted; between runs its folder holds only whole points and checkpoints.
func TestSweepKilledAndRestartedMergesTheSame(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a sweep of two training points three times")
	}
	dir := t.TempDir()
	model := copyModel(t, dir)
	ref := filepath.Join(dir, "ref")
	t0 := time.Now()
	if b, err := qnasCmd(sweepArgs(model, ref)...).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted sweep: %v\n%s", err, b)
	}
	full := time.Since(t0)
	want := must(os.ReadFile(filepath.Join(ref, sweep.ResultFile)))

	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 18))
	out := filepath.Join(dir, "killed")
	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		cmd := qnasCmd(sweepArgs(model, out)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		after := time.Duration((0.1 + 0.7*r.Float64()) * float64(full))
		time.Sleep(after)
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		plan, lerr := sweep.Load(out)
		if lerr != nil {
			t.Fatalf("kill %d: %v", i, lerr)
		}
		finished, ckpts := waitForPoints(t, plan)
		t.Logf("kill %d (%v after %.1fs of a %.1fs sweep, seed %d): %v; %d points finished, %d with a checkpoint",
			i, sig, after.Seconds(), full.Seconds(), seed, err, finished, ckpts)
		if sig == syscall.SIGINT && err != nil && cmd.ProcessState.ExitCode() == 1 {
			if last := lastLine(stderr.String()); !strings.Contains(last, "interrupted") || !strings.Contains(last, "run the same command again") {
				t.Errorf("kill %d: last line %q", i, last)
			}
		}
	}
	if b, err := qnasCmd(sweepArgs(model, out)...).CombinedOutput(); err != nil {
		t.Fatalf("restarted sweep: %v\n%s", err, b)
	}
	got := must(os.ReadFile(filepath.Join(out, sweep.ResultFile)))
	if !bytes.Equal(got, want) {
		t.Errorf("sweep.json of the killed and restarted sweep differs:\n%s\nuninterrupted:\n%s", got, want)
	}
	resumed := 0
	for _, name := range []string{"mixed-b0.25-s3", "uniform-w4a4-s3"} {
		if strings.Contains(string(must(os.ReadFile(filepath.Join(out, name, sweep.LogFile)))), "--resume") {
			resumed++
		}
	}
	t.Logf("%d points continued from a checkpoint", resumed)
}

// Bad input to qnas sweep and qnas sweep merge: one line naming the flag or the folder,
// exit status 2 (usage) or 1, and no finished point lost.
func TestSweepBadInput(t *testing.T) {
	dir := t.TempDir()
	model := copyModel(t, dir)
	// A sweep with one finished point: its plan emitted, the point run alone.
	sw := filepath.Join(dir, "sw")
	args := []string{"sweep", model, "--budgets", "0.25", "--data", "embedded", "--mean", "0.286", "--std", "0.353",
		"--limit-train", "640", "--batch", "32", "--calib", "2", "--limit-test", "200", "--search-epochs", "1", "--ft-epochs", "0", "--method", "search", "-o", sw}
	if b, err := qnasCmd(append(args, "--emit", "slurm")...).CombinedOutput(); err != nil {
		t.Fatalf("emit: %v\n%s", err, b)
	}
	// Nothing finished yet: merge refuses, naming the folder.
	check := func(what string, args []string, status int, wants ...string) {
		t.Helper()
		cmd := qnasCmd(args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		// The error is one line, the last; a sweep's progress line may come before it.
		msg, errLines := lastLine(stderr.String()), 0
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.HasPrefix(l, "qnas: ") {
				errLines++
			}
		}
		if code := cmd.ProcessState.ExitCode(); code != status || errLines != 1 || !strings.HasPrefix(msg, "qnas: ") {
			t.Errorf("%s: exit %d (want %d), stderr:\n%s", what, code, status, stderr.String())
		}
		for _, w := range wants {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q does not name %q", what, msg, w)
			}
		}
	}
	check("merge with no finished point", []string{"sweep", "merge", sw}, 1, sw, "no finished point")
	check("merge of a folder that is no sweep", []string{"sweep", "merge", dir}, 1, dir, "not a qnas sweep folder")
	if b, err := qnasCmd("sweep", "--point", "0", "--threads", "2", "-o", sw).CombinedOutput(); err != nil {
		t.Fatalf("--point 0: %v\n%s", err, b)
	}
	if b, err := qnasCmd("sweep", "merge", sw).CombinedOutput(); err != nil || !strings.Contains(string(b), "merged 1 of 1 points") {
		t.Fatalf("merge: %v\n%s", err, b)
	}
	snapshot := func() map[string][32]byte {
		m := map[string][32]byte{}
		filepath.WalkDir(sw, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				m[p] = sha256.Sum256(must(os.ReadFile(p)))
			}
			return nil
		})
		return m
	}
	before := snapshot()

	with := func(flag, value string) []string {
		out := append([]string{}, args...)
		for i := range out {
			if out[i] == flag {
				out[i+1] = value
			}
		}
		return out
	}
	check("a budget that is not a number", with("--budgets", "0.125,abc"), 2, "--budgets", `"abc" is not a number`)
	check("a budget above 1", with("--budgets", "0.125,1.5"), 2, "--budgets", "1.5 is outside (0, 1]")
	check("a budget of 0", with("--budgets", "0"), 2, "--budgets", "outside (0, 1]")
	check("an empty budget list", with("--budgets", ","), 2, "--budgets", "at least one")
	check("no budgets", with("--budgets", ""), 2, "--budgets is required")
	check("a budget the space cannot reach", with("--budgets", "0.01"), 2, "--budgets", "cheapest architecture")
	other := filepath.Join(dir, "other.onnx")
	os.WriteFile(other, must(os.ReadFile(testenv.Path("testdata", "models", "resnet8.onnx"))), 0o644)
	otherArgs := append([]string{}, args...)
	otherArgs[1] = other
	check("another model's sweep folder", otherArgs, 2, sw, "another model")
	check("other flags on a started sweep", with("--limit-train", "700"), 2, sw, "other flags")
	check("a bad --uniform pair", append(with("--budgets", "0.25"), "--uniform", "4:x"), 2, "--uniform")
	check("--point with a budget list", []string{"sweep", "--point", "0", "--budgets", "0.5", "-o", sw}, 2, "--point", "--budgets")
	check("--point out of range", []string{"sweep", "--point", "7", "-o", sw}, 2, "--point 7", "0..0")
	check("no -o", args[:len(args)-2], 2, "-o SWEEPDIR")
	check("a data folder that is not there", with("--data", filepath.Join(dir, "nodata")), 2, "--data", "nodata")

	after := snapshot()
	for p, h := range before {
		if after[p] != h {
			t.Errorf("%s changed or vanished", p)
		}
	}

	// A flag a point refuses (here a negative --lr) stops the sweep with that point's line,
	// and, since no point had started, the corrected command takes the folder over.
	fresh := filepath.Join(dir, "fresh")
	bad := append(append([]string{}, args...), "--lr", "-1")
	bad[len(args)-1] = fresh
	check("a flag every point refuses", bad, 2, "--lr")
	var plan struct {
		OptimizeArgs []string `json:"optimize_args"`
	}
	json.Unmarshal(must(os.ReadFile(filepath.Join(fresh, sweep.PlanFile))), &plan)
	if !strings.Contains(strings.Join(plan.OptimizeArgs, " "), "--lr -1") {
		t.Fatalf("plan of the refused sweep: %v", plan.OptimizeArgs)
	}
	good := append([]string{}, args...)
	good[len(args)-1] = fresh
	if b, err := qnasCmd(append(good, "--emit", "slurm")...).CombinedOutput(); err != nil {
		t.Errorf("the corrected sweep was refused: %v\n%s", err, b)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
