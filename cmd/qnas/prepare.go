package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/supernet"
)

// prepare checks, before any work, what optimize needs beyond quantFlags.check: its float
// flags and its checkpoints (docs/robustness.md).
func (o *optimizeOptions) prepare(path string) error {
	if err := checkFloats(floatFlag{"--arch-lr", o.ArchLR, positive}, floatFlag{"--warmup", o.Warmup, fraction}); err != nil {
		return err
	}
	if err := o.planCheckpoints(); err != nil {
		return err
	}
	return o.check(path)
}

// searchDepends is what optimize's search checkpoint records of the model.
func (o *optimizeOptions) searchDepends(path string) (ckpt.Settings, error) {
	h, err := o.modelSetting(path)
	return ckpt.Settings{h}, err
}

// describeSpace says in words what a search searches: the bits of how many layers, with
// how many filter groups each, and the widths of how many prunable channel groups.
func describeSpace(sn *supernet.Supernet) string {
	units := map[int]int{} // filter groups → layers with them
	for _, l := range sn.Layers {
		units[l.Units]++
	}
	var per []string
	for u, n := range units {
		per = append(per, fmt.Sprintf("%d with %d", n, u))
	}
	slices.Sort(per)
	s := fmt.Sprintf("the bits of %d layers", len(sn.Layers))
	if len(units) == 1 {
		for u := range units {
			s += fmt.Sprintf(" (%d filter group%s each)", u, plural(u))
		}
	} else if len(units) > 1 {
		s += fmt.Sprintf(" (filter groups: %s)", strings.Join(per, ", "))
	}
	if sn.Opts.Prune {
		return s + fmt.Sprintf(" and the widths of %d prunable channel group%s", len(sn.Groups), plural(len(sn.Groups)))
	}
	return s + ", no pruning"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
