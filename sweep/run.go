package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/qnas/qnas/internal/progress"
)

// RunFunc trains one point: it writes the point's model (ModelFile, with its arch and
// encodings sidecars) and, last and atomically, its report into plan.PointDir(p), and
// returns the report's path. It is `qnas optimize` for a mixed point and `qnas quantize`
// for a uniform one, as plan.Command(p) spells them. When ctx ends it returns promptly,
// leaving a checkpoint in the point's folder from which the next call continues.
type RunFunc func(ctx context.Context, plan *Plan, p Point) (reportPath string, err error)

// RunPoint runs point k of the plan unless it has finished; ran says whether it ran. A
// report the run leaves elsewhere is moved to the point's folder; a run that returns
// without a readable report is an error.
func RunPoint(ctx context.Context, plan *Plan, k int, run RunFunc) (ran bool, err error) {
	pt, err := plan.Point(k)
	if err != nil {
		return false, err
	}
	if plan.Finished(pt) {
		return false, nil
	}
	if err := os.MkdirAll(plan.PointDir(pt), 0o755); err != nil {
		return false, err
	}
	path, err := run(ctx, plan, pt)
	if err != nil {
		return true, fmt.Errorf("%s: %w", pt.Name, err)
	}
	want := plan.ReportPath(pt)
	if path != "" && filepath.Clean(path) != want {
		if err := os.Rename(path, want); err != nil {
			return true, fmt.Errorf("%s: %w", pt.Name, err)
		}
	}
	if _, err := readReport(want); err != nil {
		return true, fmt.Errorf("%s: the run left no readable report: %w", pt.Name, err)
	}
	return true, nil
}

// RunOptions say how Run runs a sweep on one machine.
type RunOptions struct {
	Jobs     int       // points at once (at least 1); the RunFunc splits the threads
	Progress io.Writer // the overall progress line (points done, ETA); nil: none
}

// Run runs every unfinished point of the plan, o.Jobs at a time, then merges. A point that
// fails does not stop the others; Run returns an error naming every failed point after
// merging the rest (the merge error, when there is nothing to merge, comes last). When ctx
// ends, no further point starts and the running ones are asked to stop.
func Run(ctx context.Context, plan *Plan, run RunFunc, o RunOptions) (*Result, error) {
	jobs := max(o.Jobs, 1)
	var todo []int
	for _, pt := range plan.Points {
		if !plan.Finished(pt) {
			todo = append(todo, pt.Index)
		}
	}
	bar := progress.New(o.Progress, "sweep", len(todo))
	var (
		mu      sync.Mutex
		done    int
		running int
		failed  []string
		wg      sync.WaitGroup
	)
	status := func() string {
		s := fmt.Sprintf("points, %d running", running)
		if len(failed) > 0 {
			s += fmt.Sprintf(", %d failed", len(failed))
		}
		if skipped := len(plan.Points) - len(todo); skipped > 0 {
			s += fmt.Sprintf(", %d finished before", skipped)
		}
		return s
	}
	sem := make(chan struct{}, jobs)
	for _, k := range todo {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		mu.Lock()
		running++
		bar.Update(done, status())
		mu.Unlock()
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := RunPoint(ctx, plan, k, run)
			mu.Lock()
			defer mu.Unlock()
			running--
			done++
			if err != nil {
				failed = append(failed, err.Error())
			}
			bar.Update(done, status())
		}(k)
	}
	wg.Wait()
	bar.Done(status())
	res, mergeErr := Merge(plan.Dir())
	var msgs []string
	if len(failed) > 0 {
		sort.Strings(failed)
		msgs = append(msgs, fmt.Sprintf("%d of %d points failed: %s", len(failed), len(todo), strings.Join(failed, "; ")))
	}
	if mergeErr != nil {
		msgs = append(msgs, mergeErr.Error())
	}
	if ctx.Err() != nil { // kept as the cause, for errors.Is
		return res, fmt.Errorf("sweep interrupted%s: %w", strings.Join(append([]string{""}, msgs...), "; "), ctx.Err())
	}
	if len(msgs) > 0 {
		return res, errors.New(strings.Join(msgs, "; "))
	}
	return res, nil
}
