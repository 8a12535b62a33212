package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

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
func (o *optimizeOptions) beforeSearch(stderr io.Writer, path string, cm supernet.CostModel, budget float64, sn *supernet.Supernet,
	trainSet *data.Dataset, norm data.Normalize) error {
	cfg := o.searchConfig(cm, budget, o.Seed, norm, stderr)
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
	if o.ckpt.resumeFineTune {
		q := o.quantFlags
		q.Seed = o.Seed
		qc, err := q.quantizeConfig(stderr, path, nil, o.FTEpochs, norm)
		if err != nil {
			return err
		}
		if err := qc.CheckResume(trainSet); err != nil {
			return err
		}
	}
	o.notes(stderr)
	return nil
}
