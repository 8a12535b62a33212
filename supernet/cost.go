package supernet

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/qnas/qnas/onnxio"
)

// CostModel prices architectures (docs/method.md, "Cost models"). Costs are per sample, in
// the model's unit: bit operations for bops and bops-acc, bits of weight memory for size,
// relative MACs (w8a8 = 1) for a target profile.
type CostModel struct {
	Kind   string  // "bops", "bops-acc", "size" or "target"
	Target *Target // the device profile, for Kind "target"
}

// CostKinds lists the built-in cost models.
var CostKinds = []string{"bops", "bops-acc", "size"}

// Unit names the model's unit.
func (m CostModel) Unit() string {
	switch m.Kind {
	case "size":
		return "bits"
	case "target":
		return "w8a8-MACs"
	}
	return "BOPs"
}

// String names the model as reports print it.
func (m CostModel) String() string {
	if m.Kind == "target" {
		return "target:" + m.Target.Name
	}
	return m.Kind
}

// NewCostModel returns the model named by --cost, or the profile named by --target (a file,
// or the name of a shipped profile) when target is not empty.
func NewCostModel(kind, target string) (CostModel, error) {
	if target != "" {
		if kind != "" && kind != "bops" {
			return CostModel{}, fmt.Errorf("--cost %s and --target: a target profile is its own cost model", kind)
		}
		t, err := LoadTarget(target)
		if err != nil {
			return CostModel{}, err
		}
		return CostModel{Kind: "target", Target: t}, nil
	}
	if kind == "" {
		kind = "bops"
	}
	for _, k := range CostKinds {
		if k == kind {
			return CostModel{Kind: kind}, nil
		}
	}
	return CostModel{}, fmt.Errorf("--cost %q: want one of %s (or --target FILE)", kind, strings.Join(CostKinds, ", "))
}

// LayerCost returns the cost of layer l with the given bits of its kept filters (one entry
// per kept filter), its input at abits, and keptIn input channels.
func (m CostModel) LayerCost(l *Layer, wbits []int, abits, keptIn int) (float64, error) {
	fan := float64(l.FanInKept(keptIn))
	total := 0.0
	for _, b := range wbits {
		c, ok := m.FilterCost(l, b, abits, fan)
		if !ok {
			return 0, fmt.Errorf("layer %q: target %s does not run %d-bit weights with %d-bit activations (it runs %s)",
				l.Name, m.Target.Name, b, abits, m.Target.pairList())
		}
		total += c
	}
	return total, nil
}

// FilterCost returns the cost of one filter of layer l at weight bits wb with its input at
// ab bits and a fan-in of fan multiply-accumulates per output position (fractional for the
// search's expected widths). ok is false for a pair a target profile does not run.
func (m CostModel) FilterCost(l *Layer, wb, ab int, fan float64) (cost float64, ok bool) {
	macs := float64(l.Spatial) * fan
	switch m.Kind {
	case "bops":
		return macs * float64(wb) * float64(ab), true
	case "bops-acc":
		acc := math.Ceil(math.Log2(max(fan, 1)))
		return macs*float64(wb)*float64(ab) + float64(l.Spatial)*(float64(wb)+float64(ab)+acc), true
	case "size":
		return fan * float64(wb), true
	case "target":
		c, ok := m.Target.cost(wb, ab)
		return macs * c, ok
	}
	return 0, false
}

// Reference returns the cost of the unpruned model with every layer at 8-bit weights and
// activations (for a target without that pair, at its most expensive pair): the cost that
// --budget ratios are fractions of.
func (m CostModel) Reference(s *Space) float64 {
	total := 0.0
	for _, l := range s.Layers {
		wb, ab := 8, 8
		if m.Kind == "target" {
			if _, ok := m.Target.cost(8, 8); !ok {
				p := m.Target.dearest()
				wb, ab = p.WBits, p.ABits
			}
		}
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
	Name  string       `json:"name"`
	Doc   string       `json:"doc"`
	Pairs []TargetPair `json:"pairs"`
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
			return nil, fmt.Errorf("--target %s: no such file, nor a shipped profile (%s)", name, strings.Join(ShippedTargets(), ", "))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("--target %w", err)
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
	if t.Name == "" {
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
