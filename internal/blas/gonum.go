//go:build !cgo || purego

package blas

import (
	"runtime"

	"gonum.org/v1/gonum/blas/gonum"
)

const name = "gonum"

var impl = gonum.Implementation{}

// setThreads does nothing: gonum's Sgemm spreads large products over
// GOMAXPROCS goroutines by itself.
func setThreads(int) {}

func threads() int { return runtime.GOMAXPROCS(0) }

func splitByCaller() bool { return true }
