package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/search"
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

// describeSpace says in words what a search searches: the bits of how many layers, in how
// many filter groups (naming the layers with fewer), and the widths of how many prunable
// channel groups.
func describeSpace(sn *supernet.Supernet) string {
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

// notes tells on stderr, once every check has passed and before the work starts, what
// the run assumes: no normalization, checkpoints of an earlier run it replaces. A
// resumed run says nothing of them (its first run did).
func (q *quantFlags) notes(stderr io.Writer) {
	if q.Resume != "" {
		return
	}
	if q.normNote {
		fmt.Fprintln(stderr, noNormalizationNote)
	}
	q.ckpt.noteStale(stderr)
}

// searchCheckpoint gives the (first seed's) search cfg its checkpoint.
func (o *optimizeOptions) searchCheckpoint(cfg *search.SearchConfig, path string) error {
	cfg.Checkpoint, cfg.Resume = o.ckpt.search, o.ckpt.resumeSearch
	h, err := o.modelSetting(path)
	cfg.Depends = ckpt.Settings{h}
	return err
}

// beforeSearch checks what optimize can check once the data is loaded, before any work:
// that the share of the training data the search holds out fills a batch, and that the
// checkpoints --resume continues belong to this run (the fine-tuning's architecture is
// known only after the search, and checked then); then it prints the notes.
func (o *optimizeOptions) beforeSearch(stderr io.Writer, path string, g *graph.Graph, cm supernet.CostModel, budget float64, sn *supernet.Supernet,
	trainSet *data.Dataset, norm data.Normalize) error {
	cfg := o.searchConfig(cm, budget, o.Seed, norm, stderr, g)
	if err := cfg.CheckHoldout(trainSet.N); err != nil {
		if o.LimitTrain > 0 {
			err = fmt.Errorf("--limit-train %d: %w", o.LimitTrain, err)
		}
		return usageError{err}
	}
	if o.ckpt.resumeSearch {
		if err := o.searchCheckpoint(&cfg, path); err != nil {
			return err
		}
		if err := cfg.CheckResume(sn, trainSet); err != nil {
			return err
		}
	}
	if err := o.checkResume(path, g, nil, o.FTEpochs, trainSet, norm); err != nil {
		return err
	}
	o.notes(stderr)
	return nil
}
