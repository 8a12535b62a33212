// Package progress reports long phases: a redrawn bar with rate and ETA on a terminal, and
// plain periodic lines otherwise (logs, pipelines, CI).
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Bar reports the progress of one phase of known length.
type Bar struct {
	w        io.Writer
	tty      bool
	label    string
	total    int
	start    time.Time
	last     time.Time
	lastPct  int
	now      func() time.Time
	finished bool
}

// IsTerminal reports whether w is a character device (an interactive terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// New starts a bar on w for total units; w == nil discards all output.
func New(w io.Writer, label string, total int) *Bar {
	if w == nil {
		w = io.Discard
	}
	b := &Bar{w: w, tty: IsTerminal(w), label: label, total: max(total, 1), now: time.Now, lastPct: -1}
	b.start = b.now()
	b.last = b.start
	return b
}

// ForceTerminal makes the bar render as on a terminal (for tests and --progress=bar).
func (b *Bar) ForceTerminal(on bool) { b.tty = on }

// Update reports done units and a short status (e.g. the running loss).
func (b *Bar) Update(done int, status string) {
	now := b.now()
	if b.tty {
		if now.Sub(b.last) < 100*time.Millisecond && done < b.total {
			return
		}
		b.last = now
		fmt.Fprintf(b.w, "\r\x1b[K%s", b.line(done, status, now, true))
		return
	}
	// Plain lines: every 10% or every 30 s, whichever comes first; Done prints the last.
	if done >= b.total {
		return
	}
	pct := done * 100 / b.total
	if pct/10 == b.lastPct/10 && now.Sub(b.last) < 30*time.Second {
		return
	}
	b.lastPct, b.last = pct, now
	fmt.Fprintln(b.w, b.line(done, status, now, false))
}

// Done ends the bar with a final status line.
func (b *Bar) Done(status string) {
	if b.finished {
		return
	}
	b.finished = true
	line := b.line(b.total, status, b.now(), b.tty)
	if b.tty {
		fmt.Fprintf(b.w, "\r\x1b[K%s\n", line)
	} else {
		fmt.Fprintln(b.w, line)
	}
}

// Stop ends the bar before its end, at done units, with a final status such as
// "interrupted": the line shows where it stopped, not 100%.
func (b *Bar) Stop(done int, status string) {
	if b.finished {
		return
	}
	b.finished = true
	now := b.now()
	line := fmt.Sprintf("%s %s at %d/%d after %s", b.label, status, done, b.total, clock(now.Sub(b.start)))
	if b.tty {
		fmt.Fprintf(b.w, "\r\x1b[K%s\n", line)
	} else {
		fmt.Fprintln(b.w, line)
	}
}

func (b *Bar) line(done int, status string, now time.Time, bar bool) string {
	el := now.Sub(b.start)
	var sb strings.Builder
	sb.WriteString(b.label)
	if bar {
		const width = 24
		fill := width * done / b.total
		sb.WriteString(" [")
		sb.WriteString(strings.Repeat("=", fill))
		if fill < width {
			sb.WriteString(">")
			sb.WriteString(strings.Repeat(" ", width-fill-1))
		}
		sb.WriteString("]")
	}
	fmt.Fprintf(&sb, " %3d%% %d/%d", done*100/b.total, done, b.total)
	if done > 0 && done < b.total {
		eta := time.Duration(float64(el) / float64(done) * float64(b.total-done))
		fmt.Fprintf(&sb, " ETA %s", clock(eta))
	} else {
		fmt.Fprintf(&sb, " in %s", clock(el))
	}
	if status != "" {
		sb.WriteString(" ")
		sb.WriteString(status)
	}
	return sb.String()
}

// clock formats d as m:ss or h:mm:ss.
func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
