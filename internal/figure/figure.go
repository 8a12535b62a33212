// Package figure draws qnas's two pictures with gonum/plot: the Pareto plot of a sweep
// (accuracy against cost ratio) and the bit map of one model (layers × filter groups,
// coloured by weight bits). Figures are built from plain values (the numbers of the JSON
// reports) and encoded as SVG or PNG. Text is set in the Liberation fonts compiled into the
// binary (embedded in the SVG too), so a figure is the same picture on every machine.
package figure

import (
	"bytes"
	"fmt"
	"image/color"
	"io"
	"path/filepath"
	"strings"

	"github.com/qnas/qnas/onnxio"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// DPI is the resolution of PNG output.
const DPI = 144

// sans is the face of every text in a figure.
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

func textStyle(size vg.Length) text.Style {
	return text.Style{Color: color.Black, Font: font.From(sans, size), Handler: plot.DefaultTextHandler}
}

// newPlot returns a plot whose texts all use the sans face.
func newPlot(title string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = font.From(sans, 11)
	p.Title.Padding = 6
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = font.From(sans, 10)
		a.Tick.Label.Font = font.From(sans, 8.5)
	}
	return p
}

// newLegend returns an empty legend in the figures' style, for the strip beside a plot.
func newLegend() plot.Legend {
	l := plot.NewLegend()
	l.TextStyle.Font = font.From(sans, 9)
	l.Top, l.Left = true, true
	l.ThumbnailWidth = 14
	l.Padding = 3
	return l
}

// Format returns the image format a file name asks for: "svg" or "png".
func Format(path string) (string, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".svg", ".png":
		return ext[1:], nil
	default:
		return "", fmt.Errorf("%s: a figure is written as .svg or .png", path)
	}
}

// render draws p into the left plotW of a w×h canvas of the format and the legend from
// legendX on, and returns the encoded image.
func render(p *plot.Plot, legend plot.Legend, w, h, plotW, legendX vg.Length, format string) ([]byte, error) {
	var c vg.CanvasWriterTo
	switch format {
	case "svg":
		c = vgsvg.NewWith(vgsvg.UseWH(w, h), vgsvg.EmbedFonts(true))
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(DPI))}
	default:
		return nil, fmt.Errorf("figure format %q: want svg or png", format)
	}
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	p.Draw(draw.Crop(dc, 4, plotW-w, 0, 0))
	top := p.Title.TextStyle.Rectangle(p.Title.Text).Size().Y + p.Title.Padding + 4
	legend.Draw(draw.Crop(dc, legendX, 0, 0, -top))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// save encodes a figure in the format path's extension names and writes it to path.
func save(path string, encode func(format string) ([]byte, error)) error {
	format, err := Format(path)
	if err != nil {
		return err
	}
	img, err := encode(format)
	if err != nil {
		return err
	}
	return onnxio.WriteFileAtomic(path, func(w io.Writer) error { _, err := w.Write(img); return err })
}

// swatch is a legend thumbnail: a filled rectangle with an optional outline.
type swatch struct {
	fill    color.Color
	outline color.Color
}

func (s swatch) Thumbnail(c *draw.Canvas) {
	r := c.Rectangle
	r.Min.Y += 1
	r.Max.Y -= 1
	c.SetColor(s.fill)
	c.Fill(r.Path())
	if s.outline != nil {
		c.StrokeLines(draw.LineStyle{Color: s.outline, Width: 0.5}, []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}, r.Min})
	}
}
