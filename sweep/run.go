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
	"time"

	"github.com/qnas/qnas/internal/progress"
)

// RunFunc trains one point: it writes the point's model (ModelFile, with its arch and
// encodings sidecars) and, last and atomically, its report into plan.PointDir(p), and
// returns the report's path. It is `qnas optimize` for a mixed point and `qnas quantize`
// for a uniform one, as plan.Command(p) spells them (Exec runs them as child processes).
// When ctx ends it returns promptly, leaving a checkpoint in the point's folder from which
// the next call continues. lock is the point's lock, held while the call lasts: a RunFunc
// that starts another process lets it inherit the file, so that the point stays locked as
// long as that process lives, even when the caller dies first.
type RunFunc func(ctx context.Context, plan *Plan, p Point, lock *os.File) (reportPath string, err error)

// LockFile is the file in a point's folder whose lock (flock) says that a process runs it.
const LockFile = ".lock"

// RunPoint runs point k of the plan unless it has finished; ran says whether it ran. The
// point runs in one process at a time: when another holds its lock, RunPoint waits for
// it (or for ctx to end), then looks again whether the point has finished. A report the
// run leaves elsewhere is moved to the point's folder; a run that returns without a
// readable report is an error.
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
	lock, err := lockPoint(ctx, filepath.Join(plan.PointDir(pt), LockFile))
	if err != nil {
		return false, fmt.Errorf("%s: %w", pt.Name, err)
	}
	defer lock.Close()
	if plan.Finished(pt) { // by the process that held the lock
		return false, nil
	}
	path, err := run(ctx, plan, pt, lock)
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

// lockPoint opens the lock file at path and locks it, polling while another process holds
// it, until ctx ends. Closing the file (or the end of every process that shares it)
// releases the lock.
func lockPoint(ctx context.Context, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if ok {
			return f, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("another process runs this point (it holds %s): %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// RunOptions say how Run runs a sweep on one machine.
type RunOptions struct {
	Jobs     int       // points at once (at least 1); the RunFunc splits the threads
	Progress io.Writer // the overall progress line (points done, ETA); nil: none
}

// Run runs every unfinished point of the plan, o.Jobs at a time, then merges. A point that
// fails does not stop the others, except a usage error (an ExitError of status 2: the
// flags are wrong, and every point would fail alike), after which no point starts and Run
// returns that error alone. Otherwise Run returns an error naming every failed point after
// merging the rest (the merge error, when there is nothing to merge, comes last). When ctx
// ends, no further point starts and the running ones are asked to stop (they keep their
// checkpoints); Run merges what finished and returns an error that wraps ctx.Err().
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
		mu          sync.Mutex
		done        int // points that ended, finished or not
		running     int
		interrupted int // points stopped by ctx
		failed      []string
		usageErr    error
		wg          sync.WaitGroup
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
	stopped := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return usageErr != nil || ctx.Err() != nil
	}
	sem := make(chan struct{}, jobs)
	for _, k := range todo {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if stopped() {
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
			var ee *ExitError
			switch {
			case err == nil:
			case ctx.Err() != nil:
				interrupted++
				return // Stop reports the end
			case errors.As(err, &ee) && ee.Usage():
				if usageErr == nil {
					usageErr = err
				}
				failed = append(failed, err.Error())
			default:
				failed = append(failed, err.Error())
			}
			bar.Update(done, status())
		}(k)
	}
	wg.Wait()
	if ctx.Err() != nil || usageErr != nil {
		bar.Stop(done, "stopped: "+status())
	} else {
		bar.Done(status())
	}
	if usageErr != nil {
		return nil, usageErr
	}
	res, mergeErr := Merge(plan.Dir())
	var msgs []string
	if len(failed) > 0 {
		sort.Strings(failed)
		msgs = append(msgs, fmt.Sprintf("%d of %d points failed: %s", len(failed), len(todo), strings.Join(failed, "; ")))
	}
	if ctx.Err() != nil { // kept as the cause, for errors.Is
		finished := 0
		if res != nil {
			finished = res.Finished
		}
		msg := fmt.Sprintf("sweep interrupted: %d of %d points finished", finished, len(plan.Points))
		if interrupted > 0 {
			msg += fmt.Sprintf(", %d stopped (each continues from its checkpoint)", interrupted)
		}
		return res, &interruptedError{msg: strings.Join(append([]string{msg}, msgs...), "; "), cause: ctx.Err()}
	}
	if mergeErr != nil {
		msgs = append(msgs, mergeErr.Error())
	}
	if len(msgs) > 0 {
		return res, errors.New(strings.Join(msgs, "; "))
	}
	return res, nil
}

// interruptedError says what an interrupted sweep left; it wraps the context's error.
type interruptedError struct {
	msg   string
	cause error
}

func (e *interruptedError) Error() string { return e.msg }
func (e *interruptedError) Unwrap() error { return e.cause }
