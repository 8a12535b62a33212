package figure

import (
	"fmt"
	"image/color"
	"math"
	"sort"
	"strconv"

	"github.com/qnas/qnas/internal/stats"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Result is one trained model of a sweep.
type Result struct {
	Kind         string  // "mixed" (searched) or "uniform"
	Budget       float64 // mixed: the budget it was searched under, as a cost ratio
	Seed         uint64
	WBits, ABits int     // uniform: its bits
	CostRatio    float64 // its cost over the input model's cost at w8a8
	Accuracy     float64 // top-1, in [0, 1]
}

// Vertex is a corner of the uniform frontier.
type Vertex struct {
	CostRatio, Accuracy float64
}

// Pareto is the picture of a sweep: accuracy against cost ratio on a log axis; the searched
// models as means over seeds with ± one standard deviation; the uniform models labelled
// wXaY with their frontier, linear in cost between its vertices; the float model's accuracy
// as a horizontal line; the budgets as vertical lines.
type Pareto struct {
	Title         string
	Results       []Result
	Frontier      []Vertex // in increasing cost; none: no frontier line
	FloatAccuracy float64  // 0: no float line
	Budgets       []float64
}

// Pareto geometry, in points.
const (
	paretoWidth  = 560
	paretoHeight = 340
	paretoLegend = 150
)

var (
	mixedColor   = color.RGBA{R: 0x1f, G: 0x5f, B: 0xb4, A: 0xff}
	uniformColor = color.RGBA{R: 0xe0, G: 0x6c, B: 0x00, A: 0xff}
	floatLine    = color.RGBA{R: 0x44, G: 0x44, B: 0x44, A: 0xff}
	budgetLine   = color.RGBA{R: 0xaa, G: 0xaa, B: 0xaa, A: 0xff}
)

// Check reports the first value a log-scale accuracy plot cannot show.
func (p Pareto) Check() error {
	if len(p.Results) == 0 {
		return fmt.Errorf("pareto plot: no results")
	}
	for _, r := range p.Results {
		if r.Kind != "mixed" && r.Kind != "uniform" {
			return fmt.Errorf("pareto plot: result kind %q (want mixed or uniform)", r.Kind)
		}
		if err := checkPoint(r.CostRatio, r.Accuracy); err != nil {
			return fmt.Errorf("pareto plot: %s result at seed %d: %w", r.Kind, r.Seed, err)
		}
	}
	for _, v := range p.Frontier {
		if err := checkPoint(v.CostRatio, v.Accuracy); err != nil {
			return fmt.Errorf("pareto plot: frontier: %w", err)
		}
	}
	for _, b := range p.Budgets {
		if !(b > 0) || math.IsInf(b, 0) {
			return fmt.Errorf("pareto plot: budget %g is not positive", b)
		}
	}
	if !(p.FloatAccuracy >= 0 && p.FloatAccuracy <= 1) {
		return fmt.Errorf("pareto plot: float accuracy %g outside [0, 1]", p.FloatAccuracy)
	}
	return nil
}

func checkPoint(cost, acc float64) error {
	if !(cost > 0) || math.IsInf(cost, 0) {
		return fmt.Errorf("cost ratio %g is not positive", cost)
	}
	if !(acc >= 0 && acc <= 1) {
		return fmt.Errorf("accuracy %g outside [0, 1]", acc)
	}
	return nil
}

// group is the mean and standard deviation over seeds of the results of one budget (mixed)
// or one bit pair (uniform).
type group struct {
	label          string
	cost, acc, std float64
	seeds          []Result
}

// groups returns the results of a kind averaged by key, in increasing cost.
func groups(rs []Result, kind string) []group {
	byKey := map[string]*group{}
	var keys []string
	for _, r := range rs {
		if r.Kind != kind {
			continue
		}
		key := strconv.FormatFloat(r.Budget, 'g', -1, 64)
		if kind == "uniform" {
			key = fmt.Sprintf("w%da%d", r.WBits, r.ABits)
		}
		g, ok := byKey[key]
		if !ok {
			g = &group{label: key}
			byKey[key] = g
			keys = append(keys, key)
		}
		g.seeds = append(g.seeds, r)
	}
	out := make([]group, 0, len(keys))
	for _, k := range keys {
		g := byKey[k]
		costs, accs := make([]float64, len(g.seeds)), make([]float64, len(g.seeds))
		for i, r := range g.seeds {
			costs[i], accs[i] = r.CostRatio, r.Accuracy
		}
		g.cost, _ = stats.MeanStd(costs)
		g.acc, g.std = stats.MeanStd(accs)
		out = append(out, *g)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].cost < out[j].cost })
	return out
}

// Encode draws the plot as an SVG or PNG image.
func (p Pareto) Encode(format string) ([]byte, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	pl := newPlot(p.Title)
	pl.X.Label.Text = "cost ratio (of the model at w8a8, log scale)"
	pl.Y.Label.Text = "top-1 accuracy (%)"
	pl.X.Scale = plot.LogScale{}
	legend := newLegend()
	legend.ThumbnailWidth = 18

	if len(p.Budgets) > 0 {
		b := budgetLines(p.Budgets)
		pl.Add(b)
		legend.Add("budget", b)
	}
	if p.FloatAccuracy > 0 {
		f := floatAccuracy(100 * p.FloatAccuracy)
		pl.Add(f)
		legend.Add(fmt.Sprintf("float %.2f%%", 100*p.FloatAccuracy), f)
	}
	if len(p.Frontier) > 0 {
		line, err := plotter.NewLine(frontierPath(p.Frontier))
		if err != nil {
			return nil, err
		}
		line.Color, line.Width, line.Dashes = uniformColor, 1.2, []vg.Length{4, 2}
		pl.Add(line)
		legend.Add("uniform frontier", line)
	}
	uni := groups(p.Results, "uniform")
	if len(uni) > 0 {
		pts, err := groupPlotters(uni, uniformColor, draw.TriangleGlyph{})
		if err != nil {
			return nil, err
		}
		pl.Add(pts...)
		legend.Add("uniform wXaY", pts[len(pts)-1].(plot.Thumbnailer))
		labels := make([]string, len(uni))
		for i, g := range uni {
			labels[i] = g.label
		}
		lab, err := plotter.NewLabels(plotter.XYLabels{XYs: meansXY(uni), Labels: labels})
		if err != nil {
			return nil, err
		}
		for i := range lab.TextStyle {
			lab.TextStyle[i].Font = font.From(sans, 7.5)
			lab.TextStyle[i].Color = uniformColor
		}
		lab.Offset = vg.Point{X: 4, Y: -9}
		pl.Add(lab)
	}
	mixed := groups(p.Results, "mixed")
	if len(mixed) > 0 {
		line, err := plotter.NewLine(meansXY(mixed))
		if err != nil {
			return nil, err
		}
		line.Color, line.Width = mixedColor, 1
		pl.Add(line)
		pts, err := groupPlotters(mixed, mixedColor, draw.CircleGlyph{})
		if err != nil {
			return nil, err
		}
		pl.Add(pts...)
		name := "searched"
		if multiSeed(mixed) {
			name = "searched, mean ± std"
		}
		legend.Add(name, line, pts[len(pts)-1].(plot.Thumbnailer))
	}
	xmin, xmax := math.Inf(1), math.Inf(-1)
	for _, r := range p.Results {
		xmin, xmax = math.Min(xmin, r.CostRatio), math.Max(xmax, r.CostRatio)
	}
	for _, b := range p.Budgets {
		xmin, xmax = math.Min(xmin, b), math.Max(xmax, b)
	}
	pl.X.Min, pl.X.Max = xmin/1.25, xmax*1.25
	pl.X.Tick.Marker = costTicks(p.Budgets)
	pad := math.Max(1, 0.06*(pl.Y.Max-pl.Y.Min))
	pl.Y.Min, pl.Y.Max = math.Max(0, pl.Y.Min-pad), math.Min(100, pl.Y.Max+pad)
	pl.Add(plotter.NewGrid())
	w, h := vg.Length(paretoWidth), vg.Length(paretoHeight)
	return render(pl, legend, w, h, w-paretoLegend, w-paretoLegend+10, format)
}

// Save writes the plot to path as SVG or PNG by its extension.
func (p Pareto) Save(path string) error { return save(path, p.Encode) }

// meansXY returns the groups' mean cost ratios and accuracies (in %).
func meansXY(gs []group) plotter.XYs {
	xy := make(plotter.XYs, len(gs))
	for i, g := range gs {
		xy[i] = plotter.XY{X: g.cost, Y: 100 * g.acc}
	}
	return xy
}

func multiSeed(gs []group) bool {
	for _, g := range gs {
		if len(g.seeds) > 1 {
			return true
		}
	}
	return false
}

// groupPlotters returns the plotters of averaged results: each seed as a small hollow mark
// when there are several, error bars of ± one standard deviation, and the means; the means
// come last.
func groupPlotters(gs []group, c color.Color, shape draw.GlyphDrawer) ([]plot.Plotter, error) {
	var out []plot.Plotter
	if multiSeed(gs) {
		var each plotter.XYs
		var bars struct {
			plotter.XYs
			plotter.YErrors
		}
		for _, g := range gs {
			for _, r := range g.seeds {
				each = append(each, plotter.XY{X: r.CostRatio, Y: 100 * r.Accuracy})
			}
			bars.XYs = append(bars.XYs, plotter.XY{X: g.cost, Y: 100 * g.acc})
			bars.YErrors = append(bars.YErrors, struct{ Low, High float64 }{100 * g.std, 100 * g.std})
		}
		s, err := plotter.NewScatter(each)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle = draw.GlyphStyle{Color: c, Radius: 1.8, Shape: draw.RingGlyph{}}
		e, err := plotter.NewYErrorBars(bars)
		if err != nil {
			return nil, err
		}
		e.Color, e.Width, e.CapWidth = c, 1, 5
		out = append(out, s, e)
	}
	s, err := plotter.NewScatter(meansXY(gs))
	if err != nil {
		return nil, err
	}
	s.GlyphStyle = draw.GlyphStyle{Color: c, Radius: 3.2, Shape: shape}
	return append(out, s), nil
}

// frontierPath samples the frontier densely so that its segments, linear in cost, are drawn
// as such on the log axis.
func frontierPath(vs []Vertex) plotter.XYs {
	const steps = 32
	xy := plotter.XYs{{X: vs[0].CostRatio, Y: 100 * vs[0].Accuracy}}
	for i := 1; i < len(vs); i++ {
		a, b := vs[i-1], vs[i]
		for k := 1; k <= steps; k++ {
			t := float64(k) / steps
			xy = append(xy, plotter.XY{X: a.CostRatio + t*(b.CostRatio-a.CostRatio), Y: 100 * (a.Accuracy + t*(b.Accuracy-a.Accuracy))})
		}
	}
	return xy
}

// costTicks marks the powers of two and the budgets that fall in the axis's range.
type costTicks []float64

func (bs costTicks) Ticks(min, max float64) []plot.Tick {
	seen := map[float64]bool{}
	var vals []float64
	add := func(v float64) {
		if v >= min && v <= max && !seen[v] {
			seen[v] = true
			vals = append(vals, v)
		}
	}
	for e := math.Floor(math.Log2(min)); e <= math.Ceil(math.Log2(max)); e++ {
		add(math.Exp2(e))
	}
	for _, b := range bs {
		add(b)
	}
	sort.Float64s(vals)
	ticks := make([]plot.Tick, len(vals))
	for i, v := range vals {
		ticks[i] = plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', 4, 64)}
	}
	return ticks
}

// budgetLines marks the budgets with vertical dotted lines across the plot.
type budgetLines []float64

var budgetStyle = draw.LineStyle{Color: budgetLine, Width: 1, Dashes: []vg.Length{1.5, 2}}

func (b budgetLines) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	for _, x := range b {
		c.StrokeLine2(budgetStyle, trX(x), c.Min.Y, trX(x), c.Max.Y)
	}
}

func (b budgetLines) Thumbnail(c *draw.Canvas) {
	y := c.Center().Y
	c.StrokeLine2(budgetStyle, c.Min.X, y, c.Max.X, y)
}

// floatAccuracy is a horizontal line at the float model's accuracy (in %).
type floatAccuracy float64

var floatStyle = draw.LineStyle{Color: floatLine, Width: 1, Dashes: []vg.Length{6, 3}}

func (f floatAccuracy) DataRange() (xmin, xmax, ymin, ymax float64) {
	return math.Inf(1), math.Inf(-1), float64(f), float64(f)
}

func (f floatAccuracy) Plot(c draw.Canvas, p *plot.Plot) {
	_, trY := p.Transforms(&c)
	c.StrokeLine2(floatStyle, c.Min.X, trY(float64(f)), c.Max.X, trY(float64(f)))
}

func (f floatAccuracy) Thumbnail(c *draw.Canvas) {
	y := c.Center().Y
	c.StrokeLine2(floatStyle, c.Min.X, y, c.Max.X, y)
}
