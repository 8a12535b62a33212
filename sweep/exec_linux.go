package sweep

import (
	"context"
	"os/exec"
	"runtime"
	"syscall"
)

// runChild runs cmd (waitChild) so that the kernel sends it SIGTERM when the sweep dies.
// The parent-death signal follows the thread that started the child, so the goroutine
// keeps its thread until the child has ended.
func runChild(ctx context.Context, cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return waitChild(ctx, cmd)
}
