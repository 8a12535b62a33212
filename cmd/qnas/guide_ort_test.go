//go:build cgo

package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/qnas/qnas/internal/data"
)

// From here to the end of classify: the go block of docs/guide.md, verbatim (TestGuide
// checks it). It assumes ONNX Runtime loaded, which ortrun.Init does.

import (
	"fmt"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// normalizePixels turns images of n×C×H×W pixels (0–255) into the input of a model qnas
// wrote: (pixel/255 − mean)/std with the model's qnas.mean and qnas.std, which hold one
// value for every channel or one per channel.
func normalizePixels(model string, pixels []byte, shape ort.Shape) ([]float32, error) {
	meta, err := ort.GetModelMetadata(model)
	if err != nil {
		return nil, err
	}
	defer meta.Destroy()
	stats := map[string][]float32{}
	for _, key := range []string{"qnas.mean", "qnas.std"} {
		s, ok, err := meta.LookupCustomMetadataMap(key)
		if err != nil || !ok {
			return nil, fmt.Errorf("%s: no %s in the metadata (%v)", model, key, err)
		}
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.ParseFloat(f, 32)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %v", model, key, err)
			}
			stats[key] = append(stats[key], float32(v))
		}
	}
	mean, std := stats["qnas.mean"], stats["qnas.std"]
	plane, channels := int(shape[2]*shape[3]), int(shape[1])
	x := make([]float32, len(pixels))
	for i, p := range pixels {
		c := i / plane % channels
		m, s := mean[0], std[0]
		if len(mean) > 1 {
			m = mean[c]
		}
		if len(std) > 1 {
			s = std[c]
		}
		x[i] = (float32(p)/255 - m) / s
	}
	return x, nil
}

// classify runs the model on a batch x of the given shape and returns the class of
// largest logit for every sample.
func classify(model string, x []float32, shape ort.Shape) ([]int, error) {
	inputs, outputs, err := ort.GetInputOutputInfo(model)
	if err != nil {
		return nil, err
	}
	session, err := ort.NewDynamicAdvancedSession(model, []string{inputs[0].Name}, []string{outputs[0].Name}, nil)
	if err != nil {
		return nil, err
	}
	defer session.Destroy()
	input, err := ort.NewTensor(shape, x)
	if err != nil {
		return nil, err
	}
	defer input.Destroy()
	out := []ort.Value{nil} // allocated by Run
	if err := session.Run([]ort.Value{input}, out); err != nil {
		return nil, err
	}
	defer out[0].Destroy()
	logits := out[0].(*ort.Tensor[float32]).GetData()
	n := int(shape[0])
	perSample := len(logits) / n
	classes := make([]int, n)
	for i := range classes {
		row := logits[i*perSample : (i+1)*perSample]
		for k, v := range row {
			if v > row[classes[i]] {
				classes[i] = k
			}
		}
	}
	return classes, nil
}

// The end of the guide's block.

func init() { guideDeploy = runGuideDeploy }

// runGuideDeploy classifies the built-in test images with the model the guide's section 2
// wrote, through the guide's Go code in ONNX Runtime, and compares the accuracy with the
// one qnas reported for that model.
func runGuideDeploy(t *testing.T, dir string) {
	model := filepath.Join(dir, "r8.q.onnx")
	var rep struct {
		Accuracy    float64 `json:"accuracy"`
		TestSamples int     `json:"test_samples"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "r8.q.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	test, err := data.Embedded(data.Test)
	if err != nil {
		t.Fatal(err)
	}
	shape := ort.NewShape(int64(test.N), int64(test.C), int64(test.H), int64(test.W))
	x, err := normalizePixels(model, test.Pixels, shape)
	if err != nil {
		t.Fatal(err)
	}
	classes, err := classify(model, x, shape)
	if err != nil {
		t.Fatal(err)
	}
	right := 0
	for i, c := range classes {
		if int32(c) == test.Labels[i] {
			right++
		}
	}
	acc := float64(right) / float64(test.N)
	t.Logf("ONNX Runtime %s through the guide's Go code: accuracy %.4f on %d images; qnas reported %.4f on %d", ort.GetVersion(), acc, test.N, rep.Accuracy, rep.TestSamples)
	// ONNX Runtime fuses the QDQ layers into integer kernels, whose rounding may flip a
	// near-tie: one image in a thousand.
	if rep.TestSamples != test.N || math.Abs(acc-rep.Accuracy) > 0.001 {
		t.Errorf("accuracy %.4f on %d images in ONNX Runtime, qnas reported %.4f on %d", acc, test.N, rep.Accuracy, rep.TestSamples)
	}
}
