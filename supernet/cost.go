package supernet

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/qnas/qnas/internal/field"
	"io/fs"
	"math"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/qnas/qnas/onnxio"
)

// Pricer is one way of pricing a layer's filters: a cost model (docs/method.md, "Cost
// models"). Costs are per sample, in the model's unit.
type Pricer interface {
	// Name is the model as reports print it ("bops", "target:npu-int8-int4"); Unit its unit.
	Name() string
	Unit() string
	// FilterCost is the cost of one filter of layer l with wb-bit weights, its input at ab
	// bits and a fan-in of fan multiply-accumulates per output position (fractional for
	// the search's expected widths). For a pair the device does not run, ok is false and
	// cost is what the search prices it at (the dearest pair's cost per MAC).
	FilterCost(l *Layer, wb, ab int, fan float64) (cost float64, ok bool)
	// FilterCostDFan is FilterCost's derivative with respect to fan (where it exists: a
	// step, such as bops-acc's ⌈log2 fan⌉, contributes nothing).
	FilterCostDFan(l *Layer, wb, ab int, fan float64) float64
	// Runs reports whether the device runs wb-bit weights with ab-bit inputs.
	Runs(wb, ab int) bool
	// ReferencePair is the pair every layer of the reference model runs at: w8a8, or
	// the dearest pair of a device without it.
	ReferencePair() (wb, ab int)
}

// CostModel prices architectures with its Pricer.
type CostModel struct{ Pricer }

// String names the model as reports print it.
func (m CostModel) String() string { return m.Name() }

// CostKinds lists the built-in cost models.
var CostKinds = []string{"bops", "bops-acc", "size"}

// NewCostModel returns the model named by kind (bops when empty), or the profile named by
// target (a file, or the name of a shipped profile) when target is not empty.
func NewCostModel(kind, target string) (CostModel, error) {
	if target != "" {
		if kind != "" && kind != "bops" {
			return CostModel{}, field.Errorf("CostModel", " %s and a Target: a target profile is its own cost model", kind)
		}
		t, err := LoadTarget(target)
		if err != nil {
			return CostModel{}, err
		}
		return CostModel{t}, nil
	}
	switch kind {
	case "", "bops":
		return CostModel{bopsModel{}}, nil
	case "bops-acc":
		return CostModel{bopsAccModel{}}, nil
	case "size":
		return CostModel{sizeModel{}}, nil
	}
	return CostModel{}, field.Errorf("CostModel", " %q: want one of %s (or a Target profile)", kind, strings.Join(CostKinds, ", "))
}

// BOPs is the default cost model: Σ MACs·b_w·b_a.
func BOPs() CostModel { return CostModel{bopsModel{}} }

// bopsModel: MACs·b_w·b_a.
type bopsModel struct{}

func (bopsModel) Name() string              { return "bops" }
func (bopsModel) Unit() string              { return "BOPs" }
func (bopsModel) Runs(int, int) bool        { return true }
func (bopsModel) ReferencePair() (int, int) { return 8, 8 }
func (bopsModel) FilterCost(l *Layer, wb, ab int, fan float64) (float64, bool) {
	return float64(l.Spatial) * fan * float64(wb) * float64(ab), true
}
func (bopsModel) FilterCostDFan(l *Layer, wb, ab int, _ float64) float64 {
	return float64(l.Spatial) * float64(wb) * float64(ab)
}

// bopsAccModel adds each output's accumulation, b_w + b_a + ⌈log2 fan⌉ bits.
type bopsAccModel struct{}

func (bopsAccModel) Name() string              { return "bops-acc" }
func (bopsAccModel) Unit() string              { return "BOPs" }
func (bopsAccModel) Runs(int, int) bool        { return true }
func (bopsAccModel) ReferencePair() (int, int) { return 8, 8 }
func (bopsAccModel) FilterCost(l *Layer, wb, ab int, fan float64) (float64, bool) {
	acc := math.Ceil(math.Log2(max(fan, 1)))
	return float64(l.Spatial) * (fan*float64(wb)*float64(ab) + float64(wb) + float64(ab) + acc), true
}
func (bopsAccModel) FilterCostDFan(l *Layer, wb, ab int, _ float64) float64 {
	return float64(l.Spatial) * float64(wb) * float64(ab) // the ceiling is a step
}

// sizeModel: bits of weights, fan·b_w per filter.
type sizeModel struct{}

func (sizeModel) Name() string              { return "size" }
func (sizeModel) Unit() string              { return "bits" }
func (sizeModel) Runs(int, int) bool        { return true }
func (sizeModel) ReferencePair() (int, int) { return 8, 8 }
func (sizeModel) FilterCost(_ *Layer, wb, _ int, fan float64) (float64, bool) {
	return fan * float64(wb), true
}
func (sizeModel) FilterCostDFan(_ *Layer, wb, _ int, _ float64) float64 { return float64(wb) }

// LayerCost returns the cost of layer l with the given bits of its kept filters (one entry
// per kept filter), its input at abits, and keptIn input channels; an error for a pair the
// device does not run.
func (m CostModel) LayerCost(l *Layer, wbits []int, abits, keptIn int) (float64, error) {
	fan := float64(l.FanInKept(keptIn))
	total := 0.0
	for _, b := range wbits {
		c, ok := m.FilterCost(l, b, abits, fan)
		if !ok {
			return 0, fmt.Errorf("layer %q: %s does not run %d-bit weights with %d-bit activations (it runs %s)",
				l.Name, m.Name(), b, abits, m.pairList())
		}
		total += c
	}
	return total, nil
}

// pairList names the (w, a) pairs of 2..8 bits the model runs.
func (m CostModel) pairList() string {
	if t, ok := m.Pricer.(*Target); ok {
		return t.pairList()
	}
	return "every pair"
}

// Reference returns the cost of the unpruned model with every layer at the model's
// reference pair (w8a8, or a target's dearest pair when it does not run w8a8): the cost
// that --budget ratios are fractions of.
func (m CostModel) Reference(s *Space) float64 {
	wb, ab := m.ReferencePair()
	total := 0.0
	for _, l := range s.Layers {
		bits := make([]int, l.Filters)
		for i := range bits {
			bits[i] = wb
		}
		c, _ := m.LayerCost(l, bits, ab, l.InC)
		total += c
	}
	return total
}

// LayerCosts returns the cost of every layer of a resolved architecture, in Space order.
func (m CostModel) LayerCosts(r *Resolved) ([]float64, error) {
	out := make([]float64, len(r.Space.Layers))
	for _, l := range r.Space.Layers {
		c := r.Choices[l.Index]
		bits := c.WBits
		if c.Keep != nil {
			bits = make([]int, len(c.Keep))
			for i, f := range c.Keep {
				bits[i] = c.WBits[f]
			}
		}
		v, err := m.LayerCost(l, bits, c.ABits, r.KeptIn(l))
		if err != nil {
			return nil, err
		}
		out[l.Index] = v
	}
	return out, nil
}

// Cost returns the total cost of a resolved architecture.
func (m CostModel) Cost(r *Resolved) (float64, error) {
	per, err := m.LayerCosts(r)
	total := 0.0
	for _, v := range per {
		total += v
	}
	return total, err
}

// Target is a device profile: the (weight bits, activation bits) pairs a device runs and
// the relative cost of one MAC at each (docs/formats.md, "Target profiles").
type Target struct {
	ProfileName string       `json:"name"`
	Doc         string       `json:"doc"`
	Pairs       []TargetPair `json:"pairs"`
}

// TargetPair is one supported pair and its cost per MAC.
type TargetPair struct {
	WBits int     `json:"wbits"`
	ABits int     `json:"abits"`
	Cost  float64 `json:"cost"`
}

// TargetFormat is the format tag of target profiles.
const TargetFormat = "qnas.target/1"

//go:embed targets/*.json
var shippedTargets embed.FS

// ShippedTargets lists the names of the profiles built into qnas.
func ShippedTargets() []string {
	ents, _ := fs.ReadDir(shippedTargets, "targets")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(names)
	return names
}

// MaxTargetBytes bounds a target profile file, checked before it is read.
const MaxTargetBytes = 1 << 20

// LoadTarget reads a target profile from a file of at most MaxTargetBytes, or a shipped
// profile by name.
func LoadTarget(name string) (*Target, error) {
	b, err := onnxio.ReadFileLimited(name, MaxTargetBytes)
	src := name
	if errors.Is(err, fs.ErrNotExist) && !strings.ContainsRune(name, os.PathSeparator) {
		b, err = shippedTargets.ReadFile(path.Join("targets", strings.TrimSuffix(name, ".json")+".json"))
		src = "target " + name
		if err != nil {
			return nil, field.Errorf("Target", " %s: no such file, nor a shipped profile (%s)", name, strings.Join(ShippedTargets(), ", "))
		}
	}
	if err != nil {
		return nil, &field.Error{Name: "Target", Msg: " " + err.Error(), Err: err}
	}
	t, err := ParseTarget(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return t, nil
}

// ParseTarget decodes a qnas.target/1 document.
func ParseTarget(b []byte) (*Target, error) {
	var doc struct {
		Format string `json:"format"`
		Target
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a %s file: %v", TargetFormat, err)
	}
	if doc.Format != TargetFormat {
		return nil, fmt.Errorf(`"format" must be %q`, TargetFormat)
	}
	t := doc.Target
	if t.ProfileName == "" {
		return nil, fmt.Errorf(`"name" is missing`)
	}
	if len(t.Pairs) == 0 {
		return nil, fmt.Errorf(`"pairs" is empty: a target runs at least one (wbits, abits) pair`)
	}
	seen := map[[2]int]bool{}
	for i, p := range t.Pairs {
		if p.WBits < 2 || p.WBits > 8 || p.ABits < 2 || p.ABits > 8 {
			return nil, fmt.Errorf("pairs[%d]: wbits %d, abits %d: want 2..8", i, p.WBits, p.ABits)
		}
		if !(p.Cost > 0) || math.IsInf(p.Cost, 0) {
			return nil, fmt.Errorf("pairs[%d]: cost %g must be positive", i, p.Cost)
		}
		if seen[[2]int{p.WBits, p.ABits}] {
			return nil, fmt.Errorf("pairs[%d]: w%da%d is listed twice", i, p.WBits, p.ABits)
		}
		seen[[2]int{p.WBits, p.ABits}] = true
	}
	return &t, nil
}

func (t *Target) cost(wb, ab int) (float64, bool) {
	for _, p := range t.Pairs {
		if p.WBits == wb && p.ABits == ab {
			return p.Cost, true
		}
	}
	return 0, false
}

// Name, Unit, FilterCost, FilterCostDFan, Runs and ReferencePair make a profile a Pricer:
// cost per filter is MACs × the pair's relative cost (w8a8 = 1); a pair the device does
// not run is priced at the dearest pair's cost.
func (t *Target) Name() string { return "target:" + t.ProfileName }

func (t *Target) Unit() string { return "w8a8-MACs" }

func (t *Target) Runs(wb, ab int) bool { _, ok := t.cost(wb, ab); return ok }

func (t *Target) ReferencePair() (int, int) {
	if t.Runs(8, 8) {
		return 8, 8
	}
	p := t.dearest()
	return p.WBits, p.ABits
}

func (t *Target) FilterCost(l *Layer, wb, ab int, fan float64) (float64, bool) {
	c, ok := t.cost(wb, ab)
	if !ok {
		c = t.dearest().Cost
	}
	return float64(l.Spatial) * fan * c, ok
}

func (t *Target) FilterCostDFan(l *Layer, wb, ab int, _ float64) float64 {
	c, ok := t.cost(wb, ab)
	if !ok {
		c = t.dearest().Cost
	}
	return float64(l.Spatial) * c
}

// dearest returns the most expensive pair.
func (t *Target) dearest() TargetPair {
	best := t.Pairs[0]
	for _, p := range t.Pairs[1:] {
		if p.Cost > best.Cost {
			best = p
		}
	}
	return best
}

func (t *Target) pairList() string {
	var s []string
	for _, p := range t.Pairs {
		s = append(s, fmt.Sprintf("w%da%d", p.WBits, p.ABits))
	}
	return strings.Join(s, ", ")
}
