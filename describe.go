package qnas

import (
	"fmt"
	"strings"

	"github.com/qnas/qnas/supernet"
)

// DescribeSpace says in words what a search searches: the bits of how many layers, in how
// many filter groups (naming the layers with other counts), and the widths of how many
// prunable channel groups.
func DescribeSpace(sn *supernet.Supernet) string {
	count := map[int]int{} // filter groups → layers with that many
	most := 0
	for _, l := range sn.Layers {
		count[l.Units]++
		if count[l.Units] > count[most] || count[l.Units] == count[most] && l.Units > most {
			most = l.Units
		}
	}
	var other []string
	for _, l := range sn.Layers {
		if l.Units != most {
			other = append(other, fmt.Sprintf("%s %d", l.Layer.Name, l.Units))
		}
	}
	s := fmt.Sprintf("the bits of %d layers (%d filter group%s per layer", len(sn.Layers), most, plural(most))
	switch {
	case len(other) > 3:
		s += fmt.Sprintf("; %d layers with other counts", len(other))
	case len(other) > 0:
		s += "; " + strings.Join(other, ", ")
	}
	s += ")"
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
