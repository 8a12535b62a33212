//go:build !linux

package sweep

import (
	"context"
	"os/exec"
)

// runChild runs cmd (waitChild); outside Linux a child outlives a sweep that is killed.
func runChild(ctx context.Context, cmd *exec.Cmd) error { return waitChild(ctx, cmd) }
