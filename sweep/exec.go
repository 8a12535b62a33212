package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// LogFile is the file in a point's folder that holds the output of its runs (appended to
// by every attempt, each starting with its command line).
const LogFile = "qnas.log"

// Exec runs points as child processes of the qnas binary: `qnas optimize` or `qnas
// quantize` with the point's command line (Plan.Command), --threads, and --resume when
// the point's folder holds a checkpoint of an interrupted run (Plan.Resume). A child
// process is its point's isolation: it shares no memory with the sweep or the other
// points. However the sweep dies, its children are sent SIGTERM (on Linux), on which they
// save their checkpoints and exit, so a killed sweep leaves whole points and checkpoints,
// never half a point.
type Exec struct {
	Qnas    string    // the qnas binary
	Threads int       // --threads of a point (at least 1); a resumed point takes its checkpoint's
	Echo    io.Writer // when set, the child's output goes there too, besides the point's log
}

// Run is a RunFunc. When ctx ends, the child is sent SIGINT, saves its checkpoint and
// exits; Run returns then.
func (e Exec) Run(ctx context.Context, plan *Plan, pt Point, lock *os.File) (string, error) {
	args := plan.Command(pt)
	threads := max(e.Threads, 1)
	if ck, th := plan.Resume(pt); ck != "" {
		args = append(args, "--resume", ck)
		if th > 0 {
			threads = th // the checkpoint's state depends on it
		}
	}
	args = append(args, "--threads", strconv.Itoa(threads))
	logPath := filepath.Join(plan.PointDir(pt), LogFile)
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return "", err
	}
	defer log.Close()
	fmt.Fprintf(log, "$ %s\n", shellCommand(append([]string{"qnas"}, args...)))
	tail := &tailBuffer{max: 8 << 10}
	var w io.Writer = io.MultiWriter(log, tail)
	if e.Echo != nil {
		w = io.MultiWriter(log, tail, e.Echo)
	}
	cmd := exec.Command(e.Qnas, args...)
	cmd.Stdout, cmd.Stderr = w, w
	if lock != nil {
		cmd.ExtraFiles = []*os.File{lock}
	}
	err = runChild(ctx, cmd)
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		return "", &ExitError{Command: "qnas " + args[0], Code: xe.ExitCode(), Message: tail.lastLine(), Log: logPath}
	}
	if err != nil {
		return "", fmt.Errorf("qnas %s: %w", args[0], err)
	}
	return plan.ReportPath(pt), nil
}

// waitChild starts cmd and waits for it; when ctx ends first, it sends the child SIGINT
// and waits for it to exit.
func waitChild(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cmd.Process.Signal(os.Interrupt)
		return <-done
	}
}

// ExitError is a point's child process that failed.
type ExitError struct {
	Command string // "qnas optimize"
	Code    int    // its exit status; -1 when a signal ended it
	Message string // the last line it printed (its error, as qnas prints it)
	Log     string // the point's log
}

func (e *ExitError) Error() string {
	msg := strings.TrimPrefix(e.Message, "qnas: ")
	switch {
	case e.Code < 0:
		return fmt.Sprintf("%s was ended by a signal (its output: %s)", e.Command, e.Log)
	case e.Usage() && msg != "":
		return msg
	case msg != "":
		return fmt.Sprintf("%s (%s; its output: %s)", msg, e.Command, e.Log)
	}
	return fmt.Sprintf("%s exited with status %d (its output: %s)", e.Command, e.Code, e.Log)
}

// Usage reports whether the child refused its command line (exit status 2): every point
// of the sweep would fail alike.
func (e *ExitError) Usage() bool { return e.Code == 2 }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// lastLine returns the last non-empty line written, without carriage-return redraws.
func (t *tailBuffer) lastLine() string {
	lines := strings.Split(strings.TrimRight(string(t.b), "\r\n "), "\n")
	last := lines[len(lines)-1]
	if i := strings.LastIndexByte(last, '\r'); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last)
}
