package figure

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/palette/brewer"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Layer is one row of a bit map: a layer of the model as the reports list it.
type Layer struct {
	Name        string
	WBits       []int // weight bits per kept filter, in filter order: 2..8, or 32 (float)
	ABits       int   // bits of the layer's input activation: 2..8, or 32 (float)
	Filters     int   // filters in the input model
	KeptFilters int   // filters left after pruning (len(WBits))
}

// BitMap is the bit map of one model: one row per layer, its kept filters from the left
// coloured by weight bits (runs of equal bits drawn as one group), its pruned filters as a
// grey tail, and beside each row the layer's input bits and kept share. Every bit map uses
// the same colours and legend, so the maps of a sweep compare directly.
type BitMap struct {
	Title  string
	Layers []Layer
}

// Bit-map geometry, in points.
const (
	bitMapWidth  = 560
	bitMapRow    = 13
	bitMapFrame  = 96 // title, x axis and header
	bitMapSide   = 100
	bitMapLegend = 74
	floatBits    = 32
)

// bitColors are the fills of weight bits 2..8 (light to dark), floatColor of a float
// layer, prunedColor of pruned filters.
var (
	bitColors   = sequential("YlGnBu", 7)
	floatColor  = color.RGBA{R: 0xa5, G: 0x0f, B: 0x15, A: 0xff}
	prunedColor = color.RGBA{R: 0xdd, G: 0xdd, B: 0xdd, A: 0xff}
)

func sequential(name string, n int) []color.Color {
	p, err := brewer.GetPalette(brewer.TypeSequential, name, n)
	if err != nil {
		panic(err) // a fixed palette of the library: a bug here, not bad input
	}
	return p.Colors()
}

func bitColor(b int) color.Color {
	if b == floatBits {
		return floatColor
	}
	return bitColors[b-2]
}

func validBits(b int) bool { return b == floatBits || b >= 2 && b <= 8 }

// Check reports the first inconsistent layer, naming it.
func (b BitMap) Check() error {
	if len(b.Layers) == 0 {
		return fmt.Errorf("bit map: no layers")
	}
	for _, l := range b.Layers {
		switch {
		case l.Filters < 1:
			return fmt.Errorf("layer %q: %d filters", l.Name, l.Filters)
		case l.KeptFilters < 1 || l.KeptFilters > l.Filters:
			return fmt.Errorf("layer %q: %d kept filters of %d", l.Name, l.KeptFilters, l.Filters)
		case len(l.WBits) != l.KeptFilters:
			return fmt.Errorf("layer %q: %d weight bitwidths for %d kept filters", l.Name, len(l.WBits), l.KeptFilters)
		case !validBits(l.ABits):
			return fmt.Errorf("layer %q: input bits %d (want 2..8, or 32 for float)", l.Name, l.ABits)
		}
		for _, w := range l.WBits {
			if !validBits(w) {
				return fmt.Errorf("layer %q: weight bits %d (want 2..8, or 32 for float)", l.Name, w)
			}
		}
	}
	return nil
}

// Encode draws the bit map as an SVG or PNG image.
func (b BitMap) Encode(format string) ([]byte, error) {
	if err := b.Check(); err != nil {
		return nil, err
	}
	n := len(b.Layers)
	p := newPlot(b.Title)
	p.Add(bitCells(b.Layers))
	p.X.Min, p.X.Max = 0, 1
	p.X.Label.Text = "filters of the layer, kept ones first in their order"
	p.X.Tick.Marker = plot.ConstantTicks{{Value: 0, Label: "0"}, {Value: 0.25, Label: "25%"},
		{Value: 0.5, Label: "50%"}, {Value: 0.75, Label: "75%"}, {Value: 1, Label: "100%"}}
	p.Y.Min, p.Y.Max = -0.5, float64(n)+0.4
	var ticks plot.ConstantTicks
	for i, l := range b.Layers {
		ticks = append(ticks, plot.Tick{Value: float64(n - 1 - i), Label: shortName(l.Name)})
	}
	p.Y.Tick.Marker = ticks
	p.Y.Tick.Length = 0
	p.Y.Tick.Label.Font = font.From(sans, 7.5)
	p.Y.LineStyle.Width = 0

	legend := newLegend()
	legend.Add("weight bits")
	for w := 2; w <= 8; w++ {
		legend.Add(fmt.Sprint(w), swatch{fill: bitColor(w)})
	}
	legend.Add("float", swatch{fill: floatColor})
	legend.Add("pruned", swatch{fill: prunedColor})

	w := vg.Length(bitMapWidth)
	h := vg.Length(n*bitMapRow + bitMapFrame)
	plotW := w - bitMapSide - bitMapLegend
	return render(p, legend, w, h, plotW, plotW+bitMapSide, format)
}

// Save writes the bit map to path as SVG or PNG by its extension.
func (b BitMap) Save(path string) error { return save(path, b.Encode) }

// shortName trims a layer name for the axis: no leading slash, at most 40 characters
// (the end kept, since it says which layer of a block).
func shortName(s string) string {
	if len(s) > 1 && s[0] == '/' {
		s = s[1:]
	}
	if r := []rune(s); len(r) > 40 {
		s = "…" + string(r[len(r)-39:])
	}
	return s
}

// bitCells is the plotter of the bit map's rows and the text beside them.
type bitCells []Layer

func (bc bitCells) DataRange() (xmin, xmax, ymin, ymax float64) {
	return 0, 1, -0.5, float64(len(bc)) - 0.5
}

func (bc bitCells) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	n := len(bc)
	side := textStyle(8)
	side.YAlign = text.YCenter
	inX, keptX := trX(1)+10, trX(1)+34
	c.FillText(side, vg.Point{X: inX, Y: trY(float64(n) - 0.05)}, "input")
	c.FillText(side, vg.Point{X: keptX, Y: trY(float64(n) - 0.05)}, "kept")
	for i, l := range bc {
		y := float64(n - 1 - i)
		y0, y1 := trY(y-0.42), trY(y+0.42)
		f := float64(l.Filters)
		box := func(from, to float64, fill color.Color) {
			r := vg.Rectangle{Min: vg.Point{X: trX(from), Y: y0}, Max: vg.Point{X: trX(to), Y: y1}}
			c.SetColor(fill)
			c.Fill(r.Path())
		}
		for start := 0; start < len(l.WBits); {
			end := start + 1
			for end < len(l.WBits) && l.WBits[end] == l.WBits[start] {
				end++
			}
			box(float64(start)/f, float64(end)/f, bitColor(l.WBits[start]))
			start = end
		}
		if l.KeptFilters < l.Filters {
			box(float64(l.KeptFilters)/f, 1, prunedColor)
		}
		ym := trY(y)
		in := "f"
		if l.ABits != floatBits {
			in = fmt.Sprintf("a%d", l.ABits)
		}
		c.FillText(side, vg.Point{X: inX, Y: ym}, in)
		kept := "all"
		if l.KeptFilters < l.Filters {
			kept = fmt.Sprintf("%.0f%% (%d/%d)", 100*float64(l.KeptFilters)/f, l.KeptFilters, l.Filters)
		}
		c.FillText(side, vg.Point{X: keptX, Y: ym}, kept)
	}
}
