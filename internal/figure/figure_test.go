package figure

import (
	"bytes"
	"encoding/xml"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sweepResults is a sweep of three budgets over two seeds with three uniform models, in the
// shape the sweep's rows have.
func sweepPareto() Pareto {
	return Pareto{
		Title: "resnet20_bn.onnx on Fashion-MNIST",
		Results: []Result{
			{Kind: "mixed", Budget: 0.0625, Seed: 1, CostRatio: 0.0619, Accuracy: 0.874},
			{Kind: "mixed", Budget: 0.0625, Seed: 2, CostRatio: 0.0622, Accuracy: 0.861},
			{Kind: "mixed", Budget: 0.125, Seed: 1, CostRatio: 0.1241, Accuracy: 0.902},
			{Kind: "mixed", Budget: 0.125, Seed: 2, CostRatio: 0.1238, Accuracy: 0.897},
			{Kind: "mixed", Budget: 0.25, Seed: 1, CostRatio: 0.2487, Accuracy: 0.921},
			{Kind: "mixed", Budget: 0.25, Seed: 2, CostRatio: 0.2490, Accuracy: 0.918},
			{Kind: "uniform", Seed: 1, WBits: 2, ABits: 2, CostRatio: 0.0703, Accuracy: 0.802},
			{Kind: "uniform", Seed: 2, WBits: 2, ABits: 2, CostRatio: 0.0703, Accuracy: 0.815},
			{Kind: "uniform", Seed: 1, WBits: 3, ABits: 3, CostRatio: 0.148, Accuracy: 0.893},
			{Kind: "uniform", Seed: 1, WBits: 4, ABits: 4, CostRatio: 0.266, Accuracy: 0.917},
		},
		Frontier:      []Vertex{{0.0703, 0.8085}, {0.148, 0.893}, {0.266, 0.917}},
		FloatAccuracy: 0.9378,
		Budgets:       []float64{0.0625, 0.125, 0.25},
	}
}

// resnetBitMap has the layer shapes of a small ResNet: 16 to 64 filters, grouped bits, one
// pruned layer, a float classifier input.
func resnetBitMap() BitMap {
	rep := func(bits []int, each int) []int {
		var out []int
		for _, b := range bits {
			for i := 0; i < each; i++ {
				out = append(out, b)
			}
		}
		return out
	}
	return BitMap{
		Title: "budget 0.125, seed 1: cost ratio 0.1241, accuracy 90.2%",
		Layers: []Layer{
			{Name: "/conv1/Conv", WBits: rep([]int{8}, 16), ABits: 8, Filters: 16, KeptFilters: 16},
			{Name: "/layer1/layer1.0/conv1/Conv", WBits: rep([]int{4, 4, 2, 8}, 4), ABits: 4, Filters: 16, KeptFilters: 16},
			{Name: "/layer2/layer2.0/conv1/Conv", WBits: rep([]int{3, 5, 6}, 8), ABits: 3, Filters: 32, KeptFilters: 24},
			{Name: "/layer3/layer3.0/downsample/downsample.0/Conv", WBits: rep([]int{2, 7}, 32), ABits: 2, Filters: 64, KeptFilters: 64},
			{Name: "/fc/Gemm", WBits: rep([]int{32}, 10), ABits: 32, Filters: 10, KeptFilters: 10},
		},
	}
}

func TestFiguresRenderAsSVGAndPNG(t *testing.T) {
	dir := t.TempDir()
	figs := map[string]interface{ Save(string) error }{"pareto": sweepPareto(), "bits": resnetBitMap()}
	for name, f := range figs {
		for _, ext := range []string{".svg", ".png"} {
			path := filepath.Join(dir, name+ext)
			if err := f.Save(path); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if ext == ".png" {
				checkPNG(t, path, b)
			} else {
				checkSVG(t, path, b)
			}
		}
	}
	// The bit map grows with the layers, the Pareto plot does not.
	bm := resnetBitMap()
	bm.Layers = append(bm.Layers, bm.Layers...)
	b, err := bm.Encode("png")
	if err != nil {
		t.Fatal(err)
	}
	small, _ := os.ReadFile(filepath.Join(dir, "bits.png"))
	c1, _ := png.DecodeConfig(bytes.NewReader(small))
	c2, _ := png.DecodeConfig(bytes.NewReader(b))
	if c2.Height-c1.Height != 5*bitMapRow*DPI/72 || c1.Width != c2.Width {
		t.Errorf("bit map of 10 layers is %dx%d, of 5 layers %dx%d: want %d more rows of pixels", c2.Width, c2.Height, c1.Width, c1.Height, 5*bitMapRow*DPI/72)
	}
}

func checkPNG(t *testing.T, path string, b []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", path, err)
	}
	w := img.Bounds().Dx()
	if strings.Contains(path, "pareto") && (w != paretoWidth*DPI/72 || img.Bounds().Dy() != paretoHeight*DPI/72) {
		t.Errorf("%s is %v, want %dx%d", path, img.Bounds(), paretoWidth*DPI/72, paretoHeight*DPI/72)
	}
	if w != bitMapWidth*DPI/72 {
		t.Errorf("%s is %d pixels wide, want %d", path, w, bitMapWidth*DPI/72)
	}
	// Something is drawn in colour: the figure is not blank.
	colours := map[[3]uint32]bool{}
	for y := 0; y < img.Bounds().Dy(); y += 3 {
		for x := 0; x < w; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	if len(colours) < 8 {
		t.Errorf("%s has %d colours: blank?", path, len(colours))
	}
}

func checkSVG(t *testing.T, path string, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	var root string
	texts := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "text" {
				texts++
			}
		}
	}
	if root != "svg" || texts < 10 {
		t.Errorf("%s: root <%s>, %d texts; want <svg> with the labels", path, root, texts)
	}
	if !bytes.Contains(b, []byte("@font-face")) {
		t.Errorf("%s does not embed its font", path)
	}
}

func TestPNGIsDeterministic(t *testing.T) {
	for _, f := range []interface {
		Encode(string) ([]byte, error)
	}{sweepPareto(), resnetBitMap()} {
		a, err := f.Encode("png")
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.Encode("png")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%T: two renders differ", f)
		}
		if _, _, err := image.Decode(bytes.NewReader(a)); err != nil {
			t.Error(err)
		}
	}
}

func TestBadFiguresAreRefused(t *testing.T) {
	dir := t.TempDir()
	bm := resnetBitMap()
	bm.Layers[2].WBits = bm.Layers[2].WBits[1:]
	if err := bm.Save(filepath.Join(dir, "b.png")); err == nil || !strings.Contains(err.Error(), "layer2.0/conv1") {
		t.Errorf("short wbits: %v", err)
	}
	bm = resnetBitMap()
	bm.Layers[1].WBits[0] = 16
	if err := bm.Save(filepath.Join(dir, "b.png")); err == nil || !strings.Contains(err.Error(), "weight bits 16") {
		t.Errorf("16 bits: %v", err)
	}
	p := sweepPareto()
	p.Results[3].CostRatio = 0
	if err := p.Save(filepath.Join(dir, "p.svg")); err == nil || !strings.Contains(err.Error(), "cost ratio 0") {
		t.Errorf("zero cost: %v", err)
	}
	if err := sweepPareto().Save(filepath.Join(dir, "p.jpg")); err == nil || !strings.Contains(err.Error(), "p.jpg") {
		t.Errorf(".jpg: %v", err)
	}
	if err := (Pareto{}).Save(filepath.Join(dir, "p.png")); err == nil {
		t.Error("an empty plot was drawn")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("refused figures left files: %v", entries)
	}
}

// TestWriteSamples writes the figures to QNAS_FIGURE_DIR when set, to look at them.
func TestWriteSamples(t *testing.T) {
	dir := os.Getenv("QNAS_FIGURE_DIR")
	if dir == "" {
		t.Skip("QNAS_FIGURE_DIR not set")
	}
	for _, ext := range []string{".svg", ".png"} {
		if err := sweepPareto().Save(filepath.Join(dir, "pareto"+ext)); err != nil {
			t.Fatal(err)
		}
		if err := resnetBitMap().Save(filepath.Join(dir, "bits"+ext)); err != nil {
			t.Fatal(err)
		}
	}
}
