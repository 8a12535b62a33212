package sweep

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/figure"
	"github.com/qnas/qnas/internal/stats"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/supernet"
)

// ResultFormat is the value of sweep.json's "format".
const ResultFormat = "qnas.sweep-result/1"

// Files Merge writes into SWEEPDIR (and bits-<budget>.svg/png per budget).
const (
	ResultFile = "sweep.json"
	TableFile  = "sweep.csv"
	IndexFile  = "index.html"
	ParetoName = "pareto" // .svg and .png
)

// Row is one finished model of a sweep: a row of sweep.json and sweep.csv.
type Row struct {
	Budget      float64 `json:"budget,omitempty"` // mixed
	Seed        uint64  `json:"seed"`
	Kind        Kind    `json:"kind"`
	WBits       int     `json:"wbits,omitempty"` // uniform
	ABits       int     `json:"abits,omitempty"` // uniform
	CostRatio   float64 `json:"cost_ratio"`
	Cost        float64 `json:"cost"` // in the cost model's unit
	MACs        int64   `json:"macs"` // per sample, after pruning
	WeightBytes int64   `json:"weight_bytes"`
	Accuracy    float64 `json:"accuracy"`
	Path        string  `json:"path"` // the model, relative to SWEEPDIR
}

// BudgetResult compares the searched models of one budget with the uniform frontier.
type BudgetResult struct {
	Budget      float64 `json:"budget"`
	Seeds       int     `json:"seeds"`      // finished
	CostRatio   float64 `json:"cost_ratio"` // mean over seeds
	Accuracy    float64 `json:"accuracy"`   // mean over seeds
	AccuracyStd float64 `json:"accuracy_std"`
	// With uniform rows: the frontier's accuracy at the budget, the mean accuracy minus it,
	// and a note when the budget lies outside the frontier's range.
	FrontierAtBudget   *float64 `json:"frontier_at_budget,omitempty"`
	MixedMinusFrontier *float64 `json:"mixed_minus_frontier,omitempty"`
	FrontierNote       string   `json:"frontier_note,omitempty"`
	BitMap             string   `json:"bit_map"` // file stem of the budget's bit map (first finished seed)
	BitMapSeed         uint64   `json:"bit_map_seed"`
}

// Result is sweep.json: what the finished points say. It depends only on their reports
// and models, so a sweep that was interrupted and resumed merges to the same file.
type Result struct {
	Format        string            `json:"format"`
	Model         string            `json:"model"`
	CostModel     string            `json:"cost_model"`
	CostUnit      string            `json:"cost_unit"`
	ReferenceCost float64           `json:"reference_cost"`
	FloatAccuracy float64           `json:"float_accuracy"`
	Rows          []Row             `json:"rows"`
	Budgets       []BudgetResult    `json:"budgets"`
	Frontier      supernet.Frontier `json:"frontier"`
	Points        int               `json:"points"`   // planned
	Finished      int               `json:"finished"` // with a report
	Missing       []string          `json:"missing,omitempty"`
	Warnings      []string          `json:"warnings,omitempty"`
}

// finished is a point with its report, as Merge collects them.
type finished struct {
	Point
	rep *pointReport
	row Row
}

// Merge reads the finished points of the sweep in dir and writes sweep.json, sweep.csv,
// pareto.svg/png, bits-<budget>.svg/png and index.html. Points without a report are
// listed as missing; a report that cannot be read is a warning; a report of another model
// (another reference cost or cost model than the other points) is an error, as is a sweep
// with no finished point.
func Merge(dir string) (*Result, error) {
	plan, err := Load(dir)
	if err != nil {
		return nil, err
	}
	res := &Result{Format: ResultFormat, Model: plan.Model, Points: len(plan.Points), Rows: []Row{}, Budgets: []BudgetResult{}}
	var done []finished
	for _, pt := range plan.Points {
		path := plan.ReportPath(pt)
		if !plan.Finished(pt) {
			res.Missing = append(res.Missing, pt.Name)
			continue
		}
		rep, err := readReport(path)
		if err != nil {
			res.Missing = append(res.Missing, pt.Name)
			res.Warnings = append(res.Warnings, err.Error())
			continue
		}
		if len(done) == 0 {
			res.CostModel, res.CostUnit, res.ReferenceCost, res.FloatAccuracy = rep.CostModel, rep.CostUnit, rep.ReferenceCost, rep.FloatAccuracy
		} else if rep.CostModel != res.CostModel || math.Abs(rep.ReferenceCost-res.ReferenceCost) > 1e-9*res.ReferenceCost {
			return nil, fmt.Errorf("%s: cost model %s with reference cost %g, but %s has %s with %g: a point of another model's or cost model's sweep; move it out of %s",
				path, rep.CostModel, rep.ReferenceCost, done[0].Name, res.CostModel, res.ReferenceCost, plan.Dir())
		}
		row := Row{Seed: pt.Seed, Kind: pt.Kind, CostRatio: rep.CostRatio, Cost: rep.Cost, MACs: rep.macs(),
			WeightBytes: rep.WeightBytes, Accuracy: rep.Accuracy, Path: filepath.Join(pt.Name, ModelFile)}
		if pt.Kind == Mixed {
			row.Budget = pt.Budget
		} else {
			row.WBits, row.ABits = pt.WBits, pt.ABits
		}
		if row.WeightBytes == 0 {
			if row.WeightBytes, err = modelWeightBytes(filepath.Join(plan.Dir(), row.Path)); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("%s: weight bytes unknown: %v", pt.Name, err))
			}
		}
		res.Rows = append(res.Rows, row)
		done = append(done, finished{Point: pt, rep: rep, row: row})
	}
	res.Finished = len(done)
	if len(done) == 0 {
		return nil, fmt.Errorf("%s: no finished point (none of its %d points has a %s)", plan.Dir(), len(plan.Points), ReportFile)
	}
	res.Frontier = UniformFrontier(res.Rows)
	budgets := budgetsOf(plan)
	for _, b := range budgets {
		br := budgetResult(b, done, res.Frontier)
		if br.Seeds > 0 {
			res.Budgets = append(res.Budgets, br)
		}
	}
	if err := checkOutputs(plan.Dir(), res); err != nil {
		return nil, err
	}
	if err := writeFigures(plan, res, done); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeBytes(filepath.Join(plan.Dir(), ResultFile), append(b, '\n')); err != nil {
		return nil, err
	}
	if err := writeBytes(filepath.Join(plan.Dir(), TableFile), table(res.Rows)); err != nil {
		return nil, err
	}
	page, err := indexPage(plan, res, done)
	if err != nil {
		return nil, err
	}
	return res, writeBytes(filepath.Join(plan.Dir(), IndexFile), page)
}

// budgetsOf returns the plan's budgets in the order its points list them.
func budgetsOf(p *Plan) []float64 {
	var out []float64
	seen := map[float64]bool{}
	for _, pt := range p.Points {
		if pt.Kind == Mixed && !seen[pt.Budget] {
			seen[pt.Budget] = true
			out = append(out, pt.Budget)
		}
	}
	return out
}

func budgetResult(b float64, done []finished, f supernet.Frontier) BudgetResult {
	br := BudgetResult{Budget: b, BitMap: bitMapStem(b)}
	var accs []float64
	for _, d := range done {
		if d.Kind != Mixed || d.Budget != b {
			continue
		}
		if br.Seeds == 0 {
			br.BitMapSeed = d.Seed
		}
		br.Seeds++
		br.CostRatio += d.row.CostRatio
		accs = append(accs, d.row.Accuracy)
	}
	if br.Seeds == 0 {
		return br
	}
	br.CostRatio /= float64(br.Seeds)
	br.Accuracy, br.AccuracyStd = stats.MeanStd(accs)
	if acc, note, ok := f.At(b); ok {
		diff := br.Accuracy - acc
		br.FrontierAtBudget, br.MixedMinusFrontier, br.FrontierNote = &acc, &diff, note
	}
	return br
}

// checkOutputs applies qnas's output policy (onnxio.CheckOutputPath) to every file Merge
// writes, before it writes any: a regular file or a new path, never a folder, device or
// symbolic link that happens to have the name.
func checkOutputs(dir string, res *Result) error {
	names := []string{ResultFile, TableFile, IndexFile, ParetoName + ".svg", ParetoName + ".png"}
	for _, br := range res.Budgets {
		names = append(names, br.BitMap+".svg", br.BitMap+".png")
	}
	for _, n := range names {
		if err := onnxio.CheckOutputPath(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

func bitMapStem(b float64) string { return "bits-" + formatFloat(b) }

// writeFigures draws the Pareto plot and each budget's bit map (of its first finished seed)
// as SVG and PNG.
func writeFigures(plan *Plan, res *Result, done []finished) error {
	pareto := figure.Pareto{
		Title:         fmt.Sprintf("%s: accuracy against cost (%d of %d points)", filepath.Base(plan.Model), res.Finished, res.Points),
		FloatAccuracy: res.FloatAccuracy,
		Budgets:       budgetsOf(plan),
	}
	for _, r := range res.Rows {
		pareto.Results = append(pareto.Results, figure.Result{Kind: string(r.Kind), Budget: r.Budget, Seed: r.Seed,
			WBits: r.WBits, ABits: r.ABits, CostRatio: r.CostRatio, Accuracy: r.Accuracy})
	}
	for _, v := range res.Frontier {
		pareto.Frontier = append(pareto.Frontier, figure.Vertex{CostRatio: v.CostRatio, Accuracy: v.Accuracy})
	}
	for _, ext := range []string{".svg", ".png"} {
		if err := pareto.Save(filepath.Join(plan.Dir(), ParetoName+ext)); err != nil {
			return err
		}
	}
	for _, br := range res.Budgets {
		for _, d := range done {
			if d.Kind != Mixed || d.Budget != br.Budget || d.Seed != br.BitMapSeed {
				continue
			}
			title := fmt.Sprintf("budget %s, seed %d: cost ratio %.4f, accuracy %.2f%%", formatFloat(br.Budget), d.Seed, d.row.CostRatio, 100*d.row.Accuracy)
			for _, ext := range []string{".svg", ".png"} {
				if err := d.rep.bitMap(title).Save(filepath.Join(plan.Dir(), br.BitMap+ext)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// table is sweep.csv: the rows with a header, cells empty where a kind has no value.
func table(rows []Row) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"budget", "seed", "kind", "wbits", "abits", "cost_ratio", "cost", "macs", "weight_bytes", "accuracy", "path"})
	nonzero := func(v float64) string {
		if v == 0 {
			return ""
		}
		return formatFloat(v)
	}
	for _, r := range rows {
		w.Write([]string{nonzero(r.Budget), strconv.FormatUint(r.Seed, 10), string(r.Kind), nonzero(float64(r.WBits)), nonzero(float64(r.ABits)),
			formatFloat(r.CostRatio), formatFloat(r.Cost), strconv.FormatInt(r.MACs, 10), strconv.FormatInt(r.WeightBytes, 10),
			formatFloat(r.Accuracy), r.Path})
	}
	w.Flush()
	return buf.Bytes()
}

// modelWeightBytes returns the bytes the weights of a model file take, as qnas inspect
// counts them.
func modelWeightBytes(path string) (int64, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%s is missing", path)
	}
	g, err := graph.Load(path, graph.ImportOptions{})
	if err != nil {
		return 0, err
	}
	if err := g.Canonicalize(graph.CanonicalOptions{}); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	var n int64
	for _, b := range export.WeightBytes(g) {
		n += b
	}
	return n, nil
}
