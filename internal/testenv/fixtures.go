package testenv

import (
	"encoding/json"
	"os"
)

// Fixture is what testdata/gen/fixtures.py recorded about one model file
// (testdata/models/fixtures.json).
type Fixture struct {
	Model             string    `json:"model"`
	BN                string    `json:"bn"`
	Accuracy          float64   `json:"accuracy"`
	Samples           int       `json:"samples"`
	Mean              []float32 `json:"mean"`
	Std               []float32 `json:"std"`
	Params            int64     `json:"params"`
	BNParams          int64     `json:"bn_params"`
	MACs              int64     `json:"macs"`
	IsAccuracyFixture bool      `json:"is_accuracy_fixture"`
	Layers            []struct {
		Module      string `json:"module"`
		Op          string `json:"op"`
		MACs        int64  `json:"macs"`
		OutputShape []int  `json:"output_shape"`
		Params      int64  `json:"params"`
		ONNXNode    string `json:"onnx_node"`
	} `json:"layers"`
}

// Fixtures reads testdata/models/fixtures.json, keyed by model file name.
func Fixtures() (map[string]Fixture, error) {
	b, err := os.ReadFile(Path("testdata", "models", "fixtures.json"))
	if err != nil {
		return nil, err
	}
	var f struct {
		Models map[string]Fixture `json:"models"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	return f.Models, nil
}
