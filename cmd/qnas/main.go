// Command qnas compresses convolutional networks: it reads an ONNX CNN, searches per-filter
// bitwidths and per-layer widths under a hardware budget, fine-tunes, and writes ONNX.
//
// Exit status: 0 done, 1 failed (the message names the file, node or flag at fault),
// 2 bad usage.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/qnas/qnas/internal/train"
)

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// gcPercent is the collector's target growth when GOGC does not set one. Most of qnas's
// heap is the plans' activation buffers, which hold no pointers, so a collection costs
// little; Go's default of 100 lets garbage (decoded photos, evicted from their cache batch
// after batch) grow as large as all of that before a collection runs, which at 224×224
// nearly doubled the peak memory of a run (docs/results.md, "Memory between phases").
const gcPercent = 25

// usageError marks a command-line mistake (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// Unwrap lets errors.As see the error a usage error marks (a field error to rename).
func (e usageError) Unwrap() error { return e.err }

// run executes the command line and returns the exit status; it never lets a panic escape
// as a goroutine dump.
func run(args []string, stdout, stderr io.Writer) (status int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "qnas: internal error: %v (please report this with the command line)\n", r)
			status = 1
		}
	}()
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.Execute()
	if err == nil {
		return 0
	}
	var de *train.DivergedError
	if errors.As(err, &de) {
		de.Hint = "lower --lr"
	}
	var ae *train.AccuracyDropError
	if errors.As(err, &ae) {
		ae.Hint = "lower --lr, or use --epochs 0 (--ft-epochs 0)"
	}
	var ie *train.InterruptedError
	if errors.As(err, &ie) {
		ie.Hint = "continue with --resume " + ie.Checkpoint
	}
	msg := strings.ReplaceAll(renameFields(err), "\n", " ")
	fmt.Fprintln(stderr, "qnas: "+msg)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) || isOptionError(err) {
		return 2
	}
	return 1
}

// isCobraUsage recognizes cobra's own argument and flag errors.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "requires at most", "required flag"} {
		if strings.HasPrefix(s, p) || strings.Contains(s, " "+p) {
			return true
		}
	}
	return false
}
