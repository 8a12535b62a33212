package data

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/qnas/qnas/internal/field"
)

// ParseValues reads a comma-separated list of finite numbers (positive ones when positive
// is set); src names where the list came from (a flag, or a model's metadata key).
func ParseValues(src, s string, positive bool) ([]float32, error) {
	var out []float32
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		v, err := strconv.ParseFloat(p, 32)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || positive && !(v > 0) {
			want := "finite numbers"
			if positive {
				want = "positive finite numbers"
			}
			return nil, fmt.Errorf("%s %q: want %s, one or one per channel", src, s, want)
		}
		out = append(out, float32(v))
	}
	return out, nil
}

// ModelNormalization returns the normalization of a model's inputs: mean and std as given
// (the settings Data.Mean and Data.Std), each one nil taken from the model's metadata
// qnas.mean / qnas.std (model names the model's file in errors), else none. Values must be
// finite (std positive) and one or one per input channel (channels; 0: unknown).
func ModelNormalization(mean, std []float32, meta map[string]string, model string, channels int) (Normalize, error) {
	var n Normalize
	for _, f := range []struct {
		name, key string
		given     []float32
		dst       *[]float32
		positive  bool
	}{{"Data.Mean", "qnas.mean", mean, &n.Mean, false}, {"Data.Std", "qnas.std", std, &n.Std, true}} {
		src, vals := f.name, f.given
		var err error
		if vals == nil {
			src = model + ": metadata " + f.key
			vals, err = ParseValues(src, meta[f.key], f.positive)
		} else {
			for _, v := range vals {
				if fv := float64(v); math.IsNaN(fv) || math.IsInf(fv, 0) || f.positive && !(v > 0) {
					return n, field.Errorf(f.name, " %v: want finite numbers (positive for the std), one or one per channel", vals)
				}
			}
		}
		if err == nil && channels > 0 && len(vals) > 1 && len(vals) != channels {
			err = fmt.Errorf("%s has %d values for the model's %d input channels; give 1 or %d", src, len(vals), channels, channels)
			if channels == 1 {
				err = fmt.Errorf("%s has %d values for the model's 1 input channel; give 1", src, len(vals))
			}
			if f.given != nil {
				err = &field.Error{Name: f.name, Msg: strings.TrimPrefix(err.Error(), f.name), Err: err}
			}
		}
		if err != nil {
			return n, err
		}
		*f.dst = vals
	}
	return n, nil
}
