package sweep

import (
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/qnas/qnas/internal/figure"
)

// pointReport is what the sweep reads of a point's report: the fields `qnas optimize` and
// `qnas quantize --report` share (design: the command-line contract).
type pointReport struct {
	Model         string        `json:"model"`
	CostModel     string        `json:"cost_model"`
	CostUnit      string        `json:"cost_unit"`
	Cost          float64       `json:"cost"`
	ReferenceCost float64       `json:"reference_cost"`
	CostRatio     float64       `json:"cost_ratio"`
	Accuracy      float64       `json:"accuracy"`
	FloatAccuracy float64       `json:"float_accuracy"`
	WeightBytes   int64         `json:"weight_bytes"` // when the report has it
	Seed          uint64        `json:"seed"`
	Layers        []layerReport `json:"layers"`
	Phases        []Phase       `json:"phases"`
}

type layerReport struct {
	Name        string `json:"name"`
	WBits       []int  `json:"wbits"` // per kept filter
	ABits       int    `json:"abits"`
	Filters     int    `json:"filters"`
	KeptFilters int    `json:"kept_filters"`
	MACs        int64  `json:"macs"`
}

// Phase is the time one phase of a point took, as its report lists it.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// readReport reads and checks a point's report; errors name the file.
func readReport(path string) (*pointReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &pointReport{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	bad := func(what string, v float64) error { return fmt.Errorf("%s: %s %g", path, what, v) }
	switch {
	case !(r.ReferenceCost > 0) || math.IsInf(r.ReferenceCost, 0):
		return nil, bad("reference_cost", r.ReferenceCost)
	case !(r.CostRatio > 0) || math.IsInf(r.CostRatio, 0):
		return nil, bad("cost_ratio", r.CostRatio)
	case !(r.Accuracy >= 0 && r.Accuracy <= 1):
		return nil, bad("accuracy", r.Accuracy)
	case !(r.FloatAccuracy >= 0 && r.FloatAccuracy <= 1):
		return nil, bad("float_accuracy", r.FloatAccuracy)
	case len(r.Layers) == 0:
		return nil, fmt.Errorf("%s: no layers", path)
	}
	if err := r.bitMap("").Check(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return r, nil
}

// bitMap is the report's model as a bit map.
func (r *pointReport) bitMap(title string) figure.BitMap {
	m := figure.BitMap{Title: title}
	for _, l := range r.Layers {
		m.Layers = append(m.Layers, figure.Layer{Name: l.Name, WBits: l.WBits, ABits: l.ABits, Filters: l.Filters, KeptFilters: l.KeptFilters})
	}
	return m
}

func (r *pointReport) macs() int64 {
	var n int64
	for _, l := range r.Layers {
		n += l.MACs
	}
	return n
}
