package kernels

import (
	"runtime"
	"testing"
	"time"
)

// A task that panics on a worker goroutine does not end the process: parFor raises the
// panic again on the calling goroutine, where a recover (the command's) catches it. Which
// goroutine runs the panicking tasks varies, so the test repeats; before the recovery, a
// run where a worker took them crashed the test binary.
func TestParForPanicReachesTheCaller(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	old := parGrain
	parGrain = 0
	defer func() { parGrain = old }()
	for range 20 {
		got := func() (v any) {
			defer func() { v = recover() }()
			parFor(64, 1, func(lo, hi int) {
				if lo == 0 {
					time.Sleep(5 * time.Millisecond)
					return
				}
				panic("task failed")
			})
			return nil
		}()
		if got != "task failed" {
			t.Fatalf("recovered %v, want the task's panic", got)
		}
	}
}
