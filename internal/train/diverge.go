package train

import (
	"errors"
	"fmt"
	"math"
)

// Divergence thresholds (docs/method.md, "Divergence"): a run has diverged when its loss is
// not finite, or when the mean loss of the last GuardWindow steps exceeds both GuardFactor ×
// and GuardMargin + the lowest loss of its first GuardWindow steps (the first step's loss is
// the model's before any update, so a learning rate that wrecks the model at once is
// caught too).
const (
	GuardWindow = 20
	GuardFactor = 2.0
	GuardMargin = 1.0
)

// DivergedError reports a training run that diverged. The caller names the setting to
// change (the CLI: --lr).
type DivergedError struct {
	What        string  // "training" or "search"
	Epoch, Step int     // 1-based, where it was detected
	Start, Now  float64 // the lowest loss of the first and the mean of the last GuardWindow steps (Now may be NaN)
	Ceiling     float64 // the limit Now crossed, when the guard had one
	LR          float64 // the base learning rate of the run
	Checkpoint  string  // the last good state ("" : none written)
	// Hint, set by the caller, says what to change (the CLI: "lower --lr").
	Hint string
}

func (e *DivergedError) Error() string {
	msg := e.summary()
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	if e.Checkpoint != "" {
		return msg + "; nothing was written, the last good state is in " + e.Checkpoint
	}
	return msg + "; nothing was written"
}

// summary says what diverged, where and at which learning rate.
func (e *DivergedError) summary() string {
	var what string
	if math.IsNaN(e.Now) || math.IsInf(e.Now, 0) {
		what = fmt.Sprintf("the %s loss became %v", e.What, e.Now)
	} else {
		what = fmt.Sprintf("the %s loss rose from %.3g to %.3g (mean of the last %d steps)", e.What, e.Start, e.Now, GuardWindow)
		if e.Ceiling > 0 {
			what += fmt.Sprintf(", worse than guessing (%.3g)", e.Ceiling)
		}
	}
	return fmt.Sprintf("epoch %d step %d: %s: the run diverged at learning rate %g", e.Epoch, e.Step, what, e.LR)
}

// Guard watches the losses of a run for divergence. The zero value is ready to use.
type Guard struct {
	// Ceiling, when positive, is the limit of the mean loss instead of the rise above the
	// start: a search's losses follow the architectures it samples, and their spread is no
	// sign of divergence, but a mean above the loss of guessing (ChanceLoss) is.
	Ceiling float64

	start   float64 // the lowest of the first GuardWindow losses
	last    [GuardWindow]float64
	n       int
	sumLast float64
}

// Add records the loss of the next step and reports whether the run has diverged by then,
// with the losses it compared.
func (g *Guard) Add(loss float64) (diverged bool, start, now float64) {
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		if g.n == 0 {
			return true, loss, loss
		}
		return true, g.start, loss
	}
	if g.n < GuardWindow && (g.n == 0 || loss < g.start) {
		g.start = loss
	}
	i := g.n % GuardWindow
	if g.n >= GuardWindow {
		g.sumLast -= g.last[i]
	}
	g.last[i] = loss
	g.sumLast += loss
	g.n++
	if g.n < GuardWindow {
		return false, 0, 0
	}
	now = g.sumLast / GuardWindow
	if g.Ceiling > 0 {
		return now > g.Ceiling, g.start, now
	}
	return now > max(GuardFactor*g.start, g.start+GuardMargin), g.start, now
}

// ChanceLoss is the cross-entropy of a uniform guess over classes plus GuardMargin: a model
// whose mean loss stays above it does worse than guessing, confidently.
func ChanceLoss(classes int) float64 { return math.Log(float64(max(classes, 2))) + GuardMargin }

// AccuracyDropLimit is how far a fine-tuned model's accuracy may fall below the accuracy
// ptq the same architecture had before fine-tuning, measured on n samples, before the run
// counts as diverged: 5 points, or three standard errors of the difference of two such
// measurements when the test set is too small for 5 points to mean anything.
func AccuracyDropLimit(ptq float64, n int) float64 {
	se := math.Sqrt(2 * ptq * (1 - ptq) / float64(max(n, 1)))
	return max(0.05, 3*se)
}

// AccuracyDropError is a fine-tuning that ended far below the accuracy of post-training
// quantization of the same architecture (more than AccuracyDropLimit): it diverged.
type AccuracyDropError struct {
	PTQ, Now float64 // test accuracies after calibration alone and after fine-tuning
	LR       float64 // the base learning rate of the run
	// Hint, set by the caller, says what to change (the CLI: "lower --lr, or use --epochs 0").
	Hint string
}

func (e *AccuracyDropError) Error() string {
	msg := e.summary()
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg + "; nothing was written"
}

// summary says how far the accuracy fell and at which learning rate.
func (e *AccuracyDropError) summary() string {
	return fmt.Sprintf("fine-tuning lowered the test accuracy from %.2f%% (after calibration alone) to %.2f%%: the run diverged at learning rate %g", 100*e.PTQ, 100*e.Now, e.LR)
}

// DivergedSummary returns, when err is (or wraps) a DivergedError or an
// AccuracyDropError, what diverged without the advice and the state of the files; "" for
// any other error and for nil.
func DivergedSummary(err error) string {
	var d *DivergedError
	var a *AccuracyDropError
	switch {
	case errors.As(err, &d):
		return d.summary()
	case errors.As(err, &a):
		return a.summary()
	}
	return ""
}
