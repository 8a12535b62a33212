package export_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/supernet"
)

// fuzzBases are ResNet-8 with mixed bits, a float layer and a pruned group, exported and
// imported again as QDQ, packed QDQ and QONNX: the graphs the metadata fuzzing edits.
func fuzzBases(t testing.TB) []*graph.Graph {
	g := load(t, "resnet8_bn.onnx")
	s, err := supernet.NewSpace(g)
	if err != nil {
		t.Fatal(err)
	}
	a := &supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{4}, ABits: 4}, Layers: map[string]supernet.LayerSpec{
		"/conv1/Conv":                 {WBits: []int{2, 4, 8, 3}, ABits: 8},
		"/layer1/layer1.0/conv1/Conv": {WBits: []int{3}, ABits: 3, Keep: &supernet.Keep{Count: 8}},
		"/fc/Gemm":                    {WBits: []int{32}, ABits: 32},
	}}
	r, err := s.Resolve(a)
	if err != nil {
		t.Fatal(err)
	}
	qat, err := r.Apply()
	if err != nil {
		t.Fatal(err)
	}
	m, err := export.Freeze(qat, r)
	if err != nil {
		t.Fatal(err)
	}
	var out []*graph.Graph
	for _, opts := range []export.WriteOptions{{Format: export.FormatQDQ}, {Pack: true}, {Format: export.FormatQONNX}} {
		mp, err := m.ONNX(opts)
		if err != nil {
			t.Fatal(err)
		}
		g, err := graph.FromONNX(mp, graph.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	return out
}

// FuzzReadMetadata edits the metadata of exported models (qnas.layers, qnas.arch,
// qnas.opset) and reads them back as export does. Nothing may panic, errors are one line,
// and metadata that is accepted must describe the graph: the model then writes in the
// format base/16 picks, its encodings marshal, and it reads back with the same layers.
func FuzzReadMetadata(f *testing.F) {
	bases := fuzzBases(f)
	for i, g := range bases {
		if _, err := export.FromGraph(g.Clone()); err != nil {
			f.Fatalf("base %d does not read back: %v", i, err)
		}
		f.Add(g.Meta[export.MetaLayers], g.Meta[export.MetaArch], g.Meta[export.MetaOpset], uint8(i))
	}
	f.Add(`[]`, `{}`, ``, uint8(0))
	f.Add(`[{"name": "/conv1/Conv", "op": "Conv", "filters": 16, "wbits": [4], "abits": 8, "a_clip": 1, "weight": "x", "w_axis": 9}]`, `null`, `21`, uint8(2))
	f.Fuzz(func(t *testing.T, layers, arch, opset string, base uint8) {
		g := bases[int(base)%len(bases)].Clone()
		g.Meta[export.MetaLayers], g.Meta[export.MetaArch] = layers, arch
		if opset != "" {
			g.Meta[export.MetaOpset] = opset
		}
		m, err := export.FromGraph(g)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error on several lines: %q", err)
			}
			return
		}
		if _, err := json.Marshal(m.Encodings()); err != nil {
			t.Fatalf("accepted metadata gives encodings that do not marshal: %v", err)
		}
		formats := []export.WriteOptions{{Format: export.FormatQDQ}, {Pack: true}, {Format: export.FormatQONNX}}
		for _, opts := range formats[int(base/16)%len(formats):][:1] { // one format per input: the fuzzer picks
			mp, err := m.ONNX(opts)
			if err != nil {
				t.Fatalf("accepted metadata, but %+v cannot be written: %v", opts, err)
			}
			back, err := graph.FromONNX(mp, graph.ImportOptions{})
			if err != nil {
				t.Fatalf("%+v written does not import: %v", opts, err)
			}
			m2, err := export.FromGraph(back)
			if err != nil {
				t.Fatalf("%+v written does not read back: %v", opts, err)
			}
			if !reflect.DeepEqual(m2.Layers, m.Layers) {
				t.Fatalf("%+v written reads back other layers", opts)
			}
		}
	})
}
