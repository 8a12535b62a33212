package supernet

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParseArch feeds architecture documents to ParseArch and, when they parse, to
// Resolve on ResNet-8 and to the cost models. Nothing may panic, errors are one line,
// and a document that parses writes back (MarshalArch) to one that parses to the same
// architecture.
func FuzzParseArch(f *testing.F) {
	s := loadSpace(f, "resnet8_bn.onnx")
	for _, seed := range []string{
		`{"format": "qnas.arch/1", "default": {"wbits": 4, "abits": 4}, "layers": {}}`,
		`{"format": "qnas.arch/1", "default": {"wbits": 8, "abits": 8}, "layers": {"/conv1/Conv": {"wbits": [2, 4, 8, 4], "abits": 8, "keep": 8}}}`,
		`{"format": "qnas.arch/1", "layers": {"/conv1/Conv": {"wbits": 32, "abits": 32}}}`,
		`{"format": "qnas.arch/1", "default": {"wbits": 3, "abits": 5}, "layers": {"/layer1/layer1.0/conv1/Conv": {"keep": [0, 3, 5, 7, 9, 11, 13, 15]}, "/fc/Gemm": {"wbits": [2, 8]}}}`,
		`{"format": "qnas.arch/1", "default": {"wbits": 4, "abits": 4}, "layers": {"/conv1/Conv": {"keep": [1, 1]}}}`,
		`{"format": "qnas.arch/1", "default": {"wbits": 4, "abits": 4}, "layers": {"/nope": {}}}`,
		`[1, 2, 3]`, `{"format": 5}`, `{}`, ``, `null`,
	} {
		f.Add([]byte(seed))
	}
	r, _ := s.Resolve(&Arch{Default: &LayerSpec{WBits: []int{4}, ABits: 4}})
	f.Add(MarshalArch(r.Arch(), nil))
	var costs []CostModel
	for _, kind := range CostKinds {
		cm, err := NewCostModel(kind, "")
		if err != nil {
			f.Fatal(err)
		}
		costs = append(costs, cm)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseArch(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error on several lines: %q", err)
			}
			return
		}
		again, err := ParseArch(MarshalArch(a, nil))
		if err != nil {
			t.Fatalf("written back, the architecture does not parse: %v\n%s", err, MarshalArch(a, nil))
		}
		if !bytes.Equal(MarshalArch(a, nil), MarshalArch(again, nil)) {
			t.Fatalf("written back, the architecture changed:\n%s\n%s", MarshalArch(a, nil), MarshalArch(again, nil))
		}
		res, err := s.Resolve(a)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error on several lines: %q", err)
			}
			return
		}
		for _, cm := range costs {
			if _, err := cm.Cost(res); err != nil {
				t.Fatalf("%s: %v", cm.Name(), err)
			}
		}
		// The resolved architecture, written as a file, resolves to itself.
		back, err := ParseArch(MarshalArch(res.Arch(), nil))
		if err != nil {
			t.Fatal(err)
		}
		res2, err := s.Resolve(back)
		if err != nil {
			t.Fatalf("the resolved architecture, written back, does not resolve: %v", err)
		}
		for i := range res.Choices {
			c1, c2 := res.Choices[i], res2.Choices[i]
			if c1.ABits != c2.ABits || !equalInts(c1.WBits, c2.WBits) || !equalInts(c1.Keep, c2.Keep) {
				t.Fatalf("layer %s: %+v written back resolves to %+v", s.Layers[i].Name, c1, c2)
			}
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
