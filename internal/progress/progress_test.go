package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func fakeClock(b *Bar, step time.Duration) {
	t := time.Unix(0, 0)
	b.start, b.last = t, t
	b.now = func() time.Time { t = t.Add(step); return t }
}

func TestTerminalBarShowsETA(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, "epoch 1/1", 100)
	b.ForceTerminal(true)
	fakeClock(b, time.Second)
	b.Update(25, "loss 0.512")
	b.Done("loss 0.300")
	s := out.String()
	for _, want := range []string{"\r\x1b[K", "epoch 1/1 [======>", " 25% 25/100 ETA 0:03 loss 0.512", "100% 100/100 in 0:02 loss 0.300\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("output %q lacks %q", s, want)
		}
	}
}

func TestPlainLinesEveryTenPercent(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, "eval", 1000)
	fakeClock(b, time.Millisecond)
	for i := 1; i <= 1000; i++ {
		b.Update(i, "")
	}
	b.Done("")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 10 || len(lines) > 12 {
		t.Errorf("%d lines, want about 11:\n%s", len(lines), out.String())
	}
	if strings.Contains(out.String(), "\r") || strings.Contains(out.String(), "\x1b") {
		t.Errorf("plain output has terminal controls")
	}
}

// An interrupted phase ends on where it stopped, not on 100%.
func TestStopShowsWhereItStopped(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, "epoch 1/2", 28)
	fakeClock(b, time.Second)
	b.Update(13, "loss 0.4")
	b.Stop(13, "interrupted")
	b.Done("loss 0.3") // ignored after Stop
	last := strings.TrimSpace(out.String())
	if i := strings.LastIndex(last, "\n"); i >= 0 {
		last = last[i+1:]
	}
	if last != "epoch 1/2 interrupted at 13/28 after 0:02" || strings.Contains(out.String(), "100%") {
		t.Errorf("output %q", out.String())
	}
}
