// Package sweep runs qnas over a grid of budgets and seeds and reads the result: a plan of
// independent points, each a `qnas optimize` (mixed precision, one budget and seed) or a
// `qnas quantize` (a uniform baseline, one bit pair and seed) written to its own folder of
// SWEEPDIR; a runner that does the unfinished points, several at once, on one machine; a
// Slurm job array that does them on a cluster; and Merge, which turns whatever points have
// finished into sweep.json, sweep.csv, the Pareto plot, one bit map per budget and
// index.html.
//
// The folder is the state: SWEEPDIR/plan.json says what the points are, and a point is
// finished exactly when SWEEPDIR/<point>/report.json exists (it is written last, in one
// rename). Anything can be killed and run again.
package sweep

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/qnas/qnas/internal/ckpt"
	"github.com/qnas/qnas/internal/train"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/search"
)

// PlanFormat is the value of plan.json's "format".
const PlanFormat = "qnas.sweep/1"

// Files of SWEEPDIR and of each point's folder.
const (
	PlanFile   = "plan.json"
	ModelFile  = "model.onnx" // beside it model.arch.json and model.encodings.json
	ReportFile = "report.json"
)

// Kind says what a point trains.
type Kind string

const (
	Mixed   Kind = "mixed"   // searched under a budget: qnas optimize
	Uniform Kind = "uniform" // one bit pair for every layer: qnas quantize
)

// Point is one run of a sweep.
type Point struct {
	Index  int     `json:"index"` // K of `qnas sweep --point K` and of the Slurm array task
	Name   string  `json:"name"`  // its folder in SWEEPDIR
	Kind   Kind    `json:"kind"`
	Budget float64 `json:"budget,omitempty"` // mixed: cost ratio of the model at w8a8
	WBits  int     `json:"wbits,omitempty"`  // uniform
	ABits  int     `json:"abits,omitempty"`  // uniform
	Seed   uint64  `json:"seed"`
}

// Bits is a uniform model's bit pair.
type Bits struct {
	WBits int `json:"wbits"`
	ABits int `json:"abits"`
}

// Spec is what a sweep is asked to do.
type Spec struct {
	Model   string    // the input model
	Budgets []float64 // cost ratios in (0, 1]
	Seeds   int       // points per budget and per uniform model: seeds Seed, Seed+1, …
	Seed    uint64
	Uniform []Bits // the uniform baselines (see ChooseUniform)
	// OptimizeArgs are the flags every mixed point passes to `qnas optimize` besides
	// --budget, --seed, -o and --report (data, schedule, search space); QuantizeArgs those
	// every uniform point passes to `qnas quantize` besides --wbits, --abits, --seed, -o and
	// --report. Paths in them should be absolute when points run on other machines.
	OptimizeArgs []string
	QuantizeArgs []string
}

// Plan is a sweep's points and how each is run, as stored in SWEEPDIR/plan.json.
type Plan struct {
	Format       string   `json:"format"`
	Model        string   `json:"model"` // absolute path
	ModelSHA256  string   `json:"model_sha256"`
	OptimizeArgs []string `json:"optimize_args"`
	QuantizeArgs []string `json:"quantize_args"`
	Points       []Point  `json:"points"`

	dir string
}

// Dir returns SWEEPDIR.
func (p *Plan) Dir() string { return p.dir }

// PointDir returns the folder of a point.
func (p *Plan) PointDir(pt Point) string { return filepath.Join(p.dir, pt.Name) }

// ReportPath returns where a finished point's report is.
func (p *Plan) ReportPath(pt Point) string { return filepath.Join(p.dir, pt.Name, ReportFile) }

// Finished reports whether a point has its report.
func (p *Plan) Finished(pt Point) bool {
	fi, err := os.Stat(p.ReportPath(pt))
	return err == nil && fi.Mode().IsRegular()
}

// sameOrExtended reports whether s has the plan's flags and at least its points.
func (p *Plan) sameOrExtended(s Spec) bool {
	if !slices.Equal(p.OptimizeArgs, s.OptimizeArgs) || !slices.Equal(p.QuantizeArgs, s.QuantizeArgs) {
		return false
	}
	want := map[string]bool{}
	for _, pt := range s.points() {
		want[pt.Name] = true
	}
	for _, pt := range p.Points {
		if !want[pt.Name] {
			return false
		}
	}
	return true
}

// started reports whether some point has done work: its folder holds its report, its
// model or a checkpoint.
func (p *Plan) started() bool {
	for _, pt := range p.Points {
		model := filepath.Join(p.PointDir(pt), ModelFile)
		for _, f := range []string{p.ReportPath(pt), model, model + ".ckpt", model + ".search.ckpt"} {
			if _, err := os.Lstat(f); err == nil {
				return true
			}
		}
	}
	return false
}

// Resume returns the checkpoint an interrupted run of the point left in its folder, from
// which its next run continues (qnas --resume), and the thread count it was made with
// (which the continued run must use: it changes the result's bits; 0 if not recorded),
// or "" when the point starts afresh. A mixed point continues its fine-tuning
// (ModelFile.ckpt) when its finished search's checkpoint (ModelFile.search.ckpt) is there
// too, else its search; a uniform point continues its fine-tuning.
func (p *Plan) Resume(pt Point) (checkpoint string, threads int) {
	model := filepath.Join(p.PointDir(pt), ModelFile)
	fineTune, searched := model+".ckpt", model+".search.ckpt"
	kind := func(path string) (string, int) {
		h, err := ckpt.ReadHeader(path)
		if err != nil {
			return "", 0
		}
		n, _ := strconv.Atoi(h.Value("threads"))
		return h.Kind, n
	}
	ftKind, ftThreads := kind(fineTune)
	if pt.Kind == Uniform {
		if ftKind == train.CheckpointKind {
			return fineTune, ftThreads
		}
		return "", 0
	}
	sKind, sThreads := kind(searched)
	switch {
	case sKind != search.SearchCheckpointKind:
		return "", 0
	case ftKind == train.CheckpointKind:
		return fineTune, ftThreads
	}
	return searched, sThreads
}

// Point returns point k, or an error naming the range.
func (p *Plan) Point(k int) (Point, error) {
	if k < 0 || k >= len(p.Points) {
		return Point{}, fmt.Errorf("--point %d: %s has points 0..%d", k, p.dir, len(p.Points)-1)
	}
	return p.Points[k], nil
}

// Command returns the command line (without the leading "qnas") that runs a point on its
// own: what the sweep does for it, written to its folder.
func (p *Plan) Command(pt Point) []string {
	dir := p.PointDir(pt)
	out := []string{"-o", filepath.Join(dir, ModelFile), "--report", filepath.Join(dir, ReportFile)}
	seed := strconv.FormatUint(pt.Seed, 10)
	if pt.Kind == Uniform {
		args := []string{"quantize", p.Model, "--wbits", strconv.Itoa(pt.WBits), "--abits", strconv.Itoa(pt.ABits), "--seed", seed}
		return append(append(args, p.QuantizeArgs...), out...)
	}
	args := []string{"optimize", p.Model, "--budget", formatFloat(pt.Budget), "--seed", seed}
	return append(append(args, p.OptimizeArgs...), out...)
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// pointName is a point's folder: mixed-b0.125-s1, uniform-w4a4-s1.
func pointName(pt Point) string {
	if pt.Kind == Uniform {
		return fmt.Sprintf("uniform-w%da%d-s%d", pt.WBits, pt.ABits, pt.Seed)
	}
	return fmt.Sprintf("mixed-b%s-s%d", formatFloat(pt.Budget), pt.Seed)
}

// ParseBudgets reads the --budgets list: comma-separated cost ratios in (0, 1].
func ParseBudgets(s string) ([]float64, error) {
	var out []float64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		v, err := strconv.ParseFloat(part, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("--budgets %q: %q is not a number", s, part)
		}
		if !(v > 0 && v <= 1) {
			return nil, fmt.Errorf("--budgets %q: %s is outside (0, 1] (a budget is a ratio of the model's cost at w8a8)", s, part)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--budgets %q: give at least one cost ratio, such as 0.0625,0.125,0.25", s)
	}
	return out, nil
}

// points lists a spec's points: per seed, the budgets in the given order, then the uniform
// models.
func (s Spec) points() []Point {
	var out []Point
	for k := 0; k < s.Seeds; k++ {
		seed := s.Seed + uint64(k)
		for _, b := range s.Budgets {
			out = append(out, Point{Kind: Mixed, Budget: b, Seed: seed})
		}
		for _, u := range s.Uniform {
			out = append(out, Point{Kind: Uniform, WBits: u.WBits, ABits: u.ABits, Seed: seed})
		}
	}
	for i := range out {
		out[i].Name = pointName(out[i])
	}
	return out
}

func (s Spec) check() error {
	if len(s.Budgets) == 0 {
		return fmt.Errorf("no budgets: give at least one cost ratio in (0, 1]")
	}
	for _, b := range s.Budgets {
		if !(b > 0 && b <= 1) {
			return fmt.Errorf("budget %g is outside (0, 1]", b)
		}
	}
	if s.Seeds < 1 {
		return fmt.Errorf("--seeds %d: want at least 1", s.Seeds)
	}
	for _, u := range s.Uniform {
		if u.WBits < 2 || u.WBits > 8 || u.ABits < 2 || u.ABits > 8 {
			return fmt.Errorf("uniform model w%da%d: bits are 2..8", u.WBits, u.ABits)
		}
	}
	return nil
}

// Open makes dir the folder of the sweep s and returns its plan. A new or empty folder gets
// a plan.json; a folder with a plan of the same model (by content) and the same flags keeps
// its points and numbering and gains the points s adds (more budgets, seeds or uniform
// models). A plan of the same model none of whose points has started (no report, model or
// checkpoint) is replaced by s when s has other flags or lacks some of its points, so that
// a sweep refused for its flags or budgets can be started again corrected. A folder holding another model's sweep, a started sweep with
// other flags, or other files is refused.
func Open(dir string, s Spec) (*Plan, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	model, err := filepath.Abs(s.Model)
	if err != nil {
		return nil, err
	}
	sum, err := fileSHA256(model)
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	p, err := Load(dir)
	fresh := &Plan{Format: PlanFormat, Model: model, ModelSHA256: sum, OptimizeArgs: s.OptimizeArgs, QuantizeArgs: s.QuantizeArgs, Points: []Point{}, dir: dir}
	switch {
	case err == nil:
		if p.ModelSHA256 != sum {
			return nil, fmt.Errorf("%s holds the sweep of another model (%s); give another -o folder", dir, p.Model)
		}
		if !p.started() && !p.sameOrExtended(s) { // nothing to lose: the sweep is what s says
			p = fresh
			break
		}
		if !slices.Equal(p.OptimizeArgs, s.OptimizeArgs) || !slices.Equal(p.QuantizeArgs, s.QuantizeArgs) {
			return nil, fmt.Errorf("%s holds a sweep of this model with other flags (optimize %s; quantize %s); repeat them to continue it, or give another -o folder",
				dir, strings.Join(p.OptimizeArgs, " "), strings.Join(p.QuantizeArgs, " "))
		}
	case errors.Is(err, errNoPlan):
		if entries, rerr := os.ReadDir(dir); rerr == nil && len(entries) > 0 {
			return nil, fmt.Errorf("%s is not empty and holds no qnas sweep (no %s); give a new or empty -o folder", dir, PlanFile)
		}
		p = fresh
	default:
		return nil, err
	}
	have := map[string]bool{}
	for _, pt := range p.Points {
		have[pt.Name] = true
	}
	for _, pt := range s.points() {
		if !have[pt.Name] {
			pt.Index = len(p.Points)
			p.Points = append(p.Points, pt)
			have[pt.Name] = true
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	return p, writeBytes(filepath.Join(dir, PlanFile), append(b, '\n'))
}

var errNoPlan = errors.New("no plan")

// Load reads the plan of the sweep in dir.
func Load(dir string) (*Plan, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("%s is a file, not a sweep folder", dir)
	}
	path := filepath.Join(dir, PlanFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if fi, serr := os.Stat(dir); serr != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%s: %w: no such folder", dir, errNoPlan)
		}
		return nil, fmt.Errorf("%s: %w: not a qnas sweep folder (no %s)", dir, errNoPlan, PlanFile)
	}
	if err != nil {
		return nil, err
	}
	p := &Plan{dir: dir}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if p.Format != PlanFormat {
		return nil, fmt.Errorf("%s: format %q, want %q", path, p.Format, PlanFormat)
	}
	for i, pt := range p.Points {
		if pt.Index != i || pt.Name != pointName(pt) || (pt.Kind != Mixed && pt.Kind != Uniform) {
			return nil, fmt.Errorf("%s: points[%d] (%q) is inconsistent", path, i, pt.Name)
		}
	}
	return p, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeBytes writes a file of SWEEPDIR atomically.
func writeBytes(path string, b []byte) error {
	return onnxio.WriteFileAtomic(path, func(w io.Writer) error { _, err := w.Write(b); return err })
}
