package export_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/engine"
	"github.com/qnas/qnas/internal/ortrun"
	"github.com/qnas/qnas/internal/quant"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/search"
	"github.com/qnas/qnas/supernet"
)

// A pruned export has exactly the MACs and params the architecture promises (what
// `qnas inspect --arch` prints), layer by layer.
func TestPrunedExportHasPromisedCost(t *testing.T) {
	for _, e := range allExports(t) {
		if e.arch != "pruned" {
			continue
		}
		got := map[string]graph.LayerSummary{}
		for _, l := range graph.Summarize(e.m.Graph).Layers {
			got[l.Name] = l
		}
		pruned := 0
		for _, l := range e.res.Space.Layers {
			kept, keptIn := e.res.Kept(l), e.res.KeptIn(l)
			if kept < l.Filters {
				pruned++
			}
			g := got[l.Name]
			if g.MACs != l.MACs(keptIn, kept) || g.Params != l.Params(keptIn, kept) {
				t.Errorf("%s %s: export has %d MACs, %d params; the architecture promised %d, %d",
					e.model, l.Name, g.MACs, g.Params, l.MACs(keptIn, kept), l.Params(keptIn, kept))
			}
		}
		if pruned < 3 {
			t.Errorf("%s: only %d layers pruned; the case should exercise pruning", e.model, pruned)
		}
	}
}

// Before quantization, the physically pruned model computes what the model with the pruned
// channels masked to zero computes (logits within 1e-4), residual groups, depthwise
// convolutions, concatenated branches and channels-last MatMul layers included.
func TestPruningEqualsMasking(t *testing.T) {
	for _, model := range []string{"resnet8_bn.onnx", "mbv2_bn.onnx", "resnet8.onnx", "inception_bn.onnx", "inception.onnx", "cnx.onnx"} {
		g := load(t, model)
		s, err := supernet.NewSpace(g)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(3, 4))
		keep := map[*supernet.Group][]int{}
		for _, gr := range s.Groups {
			if !gr.Prunable {
				continue
			}
			perm := r.Perm(gr.Channels)[:max(1, gr.Channels*(3+r.IntN(6))/10)]
			keep[gr] = sortedInts(perm)
		}
		pruned, err := s.Prune(keep)
		if err != nil {
			t.Fatal(err)
		}
		masked, err := s.Masked(keep)
		if err != nil {
			t.Fatal(err)
		}
		d := maxDiff(logits(t, pruned, 8), logits(t, masked, 8))
		t.Logf("%s: %d of %d groups pruned; max |pruned − masked| = %.2g", model, len(keep), len(s.Groups), d)
		if d > 1e-4 {
			t.Errorf("%s: pruned and masked logits differ by %.3g", model, d)
		}
		full, fp := graph.Summarize(g), graph.Summarize(pruned)
		if fp.MACs >= full.MACs || fp.Params >= full.Params {
			t.Errorf("%s: pruning left %d MACs, %d params of %d, %d", model, fp.MACs, fp.Params, full.MACs, full.Params)
		}
	}
}

func sortedInts(v []int) []int {
	out := append([]int{}, v...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// logits runs g in inference on n seeded random inputs (seededInputs).
func logits(t *testing.T, g *graph.Graph, n int) []float32 {
	t.Helper()
	p, err := engine.Compile(g, n, engine.Options{Inference: true})
	if err != nil {
		t.Fatal(err)
	}
	x, _ := seededInputs(g, n)
	copy(p.Value(g.Inputs[0]).Data, x)
	p.Forward(false)
	return append([]float32{}, p.Value(g.Outputs[0]).Data...)
}

// seededInputs returns n standard-normal inputs of g's input shape (the same for every
// graph of that shape) and the batch's shape.
func seededInputs(g *graph.Graph, n int) ([]float32, []int64) {
	shape := []int64{int64(n)}
	size := n
	for _, d := range g.Shapes[g.Inputs[0]][1:] {
		shape = append(shape, int64(d))
		size *= d
	}
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, size)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x, shape
}

// maxDiff returns the largest |a[i] − b[i]|.
func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// A pruned Inception-style net exports what the masked model computes. An architecture
// cuts every branch of both concatenations (each branch its own channel group; random
// indices), with every layer left float so that the export is the pruned model alone; it is
// frozen, written and read back. The file, run by qnas and by ONNX Runtime (at disable and
// all), gives the logits of the full model with the cut channels masked to zero within
// 1e-4, every layer has the MACs and parameters the architecture promised (inspect --arch),
// and the layers reading the concatenations read fewer channels.
func TestPrunedConcatExportIsMaskedModel(t *testing.T) {
	trainSet, err := data.Embedded(data.Train)
	if err != nil {
		t.Fatal(err)
	}
	trainSet = data.Subset(trainSet, 128)
	for _, model := range []string{"inception_bn.onnx", "inception.onnx"} {
		g := load(t, model)
		s, err := supernet.NewSpace(g)
		if err != nil {
			t.Fatal(err)
		}
		a := &supernet.Arch{Default: &supernet.LayerSpec{WBits: []int{quant.Float}, ABits: quant.Float}, Layers: map[string]supernet.LayerSpec{}}
		r := rand.New(rand.NewPCG(7, 8))
		var readers []*supernet.Layer
		for _, l := range s.Layers {
			if len(l.In) < 2 {
				continue
			}
			readers = append(readers, l)
			for _, gr := range l.In {
				n := max(1, gr.Channels*(2+r.IntN(6))/10)
				a.Layers[gr.Producers[0].Name] = supernet.LayerSpec{Keep: &supernet.Keep{Indices: sortedInts(r.Perm(gr.Channels)[:n])}}
			}
		}
		if len(readers) != 2 || len(a.Layers) != 8 {
			t.Fatalf("%s: %d layers read %d concatenated groups; want 2 reading 8", model, len(readers), len(a.Layers))
		}
		res, err := s.Resolve(a)
		if err != nil {
			t.Fatal(err)
		}
		keep := map[*supernet.Group][]int{}
		for _, gr := range s.Groups {
			if k := res.GroupKeep(gr); k != nil {
				keep[gr] = k
			}
		}
		masked, err := s.Masked(keep)
		if err != nil {
			t.Fatal(err)
		}
		trained, err := search.Calibrated(res, trainSet, search.QuantizeConfig{CalibBatches: 1, Batch: 64, Norm: fixtureNorm})
		if err != nil {
			t.Fatal(err)
		}
		m, err := export.Freeze(trained, res)
		if err != nil {
			t.Fatal(err)
		}
		path, back := writeAndRead(t, m)

		got := map[string]graph.LayerSummary{}
		for _, l := range graph.Summarize(back.Graph).Layers {
			got[l.Name] = l
		}
		for _, l := range s.Layers {
			kept, keptIn := res.Kept(l), res.KeptIn(l)
			if e := got[l.Name]; e.MACs != l.MACs(keptIn, kept) || e.Params != l.Params(keptIn, kept) {
				t.Errorf("%s %s: export has %d MACs, %d params; the architecture promised %d, %d",
					model, l.Name, e.MACs, e.Params, l.MACs(keptIn, kept), l.Params(keptIn, kept))
			}
		}
		for _, l := range readers {
			if res.KeptIn(l) >= l.InC {
				t.Errorf("%s: %s reads %d of %d channels", model, l.Name, res.KeptIn(l), l.InC)
			}
		}

		const n = 8
		want := logits(t, masked, n)
		scale := 0.0
		for _, v := range want {
			scale = math.Max(scale, math.Abs(float64(v)))
		}
		d := maxDiff(logits(t, back.Graph, n), want)
		t.Logf("%s: max |export − masked| = %.2g (logits up to %.3g)", model, d, scale)
		if d > 1e-4*max(1, scale) {
			t.Errorf("%s: the export's logits differ from the masked model's by %.3g", model, d)
		}
		t.Run(model+"/ONNX Runtime", func(t *testing.T) {
			ortrun.RequireORT(t)
			x, shape := seededInputs(masked, n)
			for _, level := range []ortrun.OptLevel{ortrun.OptDisable, ortrun.OptAll} {
				out, err := ortrun.Run(path, map[string]ortrun.Tensor{g.Inputs[0]: {Shape: shape, Data: x}}, g.Outputs, ortrun.Options{GraphOptimization: level, Threads: 2})
				if err != nil {
					t.Fatalf("%s at %s: %v", model, level, err)
				}
				if d := maxDiff(out[g.Outputs[0]].Data, want); d > 1e-4*max(1, scale) {
					t.Errorf("%s: ONNX Runtime at %s: the export's logits differ from the masked model's by %.3g", model, level, d)
				}
			}
		})
	}
}

// --pack stores the weights of a w4a4 model in INT4 containers: at most 0.55 of the bytes,
// and ONNX Runtime predicts the same at every optimization level.
func TestPackHalvesWeights(t *testing.T) {
	ortrun.RequireORT(t)
	test, err := data.Embedded(data.Test)
	if err != nil {
		t.Fatal(err)
	}
	test = data.Subset(test, 500)
	for _, e := range allExports(t) {
		if e.arch != "w4a4" {
			continue
		}
		packed := strings.TrimSuffix(e.path, ".onnx") + "_packed.onnx"
		if _, err := e.m.Write(packed, e.path, export.WriteOptions{Pack: true}); err != nil {
			t.Fatal(err)
		}
		total := func(path string) int64 {
			g, err := graph.Load(path, graph.ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for _, b := range export.WeightBytes(g) {
				n += b
			}
			return n
		}
		before, after := total(e.path), total(packed)
		fi1, _ := os.Stat(e.path)
		fi2, _ := os.Stat(packed)
		t.Logf("%s: weight bytes %d → %d (%.3f); file %d → %d bytes", e.model, before, after, float64(after)/float64(before), fi1.Size(), fi2.Size())
		// On a ResNet the filters are large and the per-filter scales, zero points and
		// int32 biases (13 bytes a filter) small beside them. A depthwise filter holds 9
		// weights, so on MobileNetV2 that overhead keeps the ratio near 0.6; the
		// Inception-style net's 1×1 filters over 16 or 32 channels and the ConvNeXt-style
		// net's stem filters (4 weights) are small too.
		limit := 0.55
		switch {
		case strings.HasPrefix(e.model, "mbv2"):
			limit = 0.65
		case strings.HasPrefix(e.model, "inception"), strings.HasPrefix(e.model, "cnx"):
			limit = 0.6
		}
		if float64(after) > limit*float64(before) {
			t.Errorf("%s: packed weights take %d bytes, %.2f of %d (limit %.2f)", e.model, after, float64(after)/float64(before), before, limit)
		}
		want := predict(t, e.m.Graph, test)
		for _, level := range levels {
			got := ortPredict(t, packed, test, level)
			if agree, _, _ := agreement(want, got, test.Labels); agree != 1 {
				t.Errorf("%s packed at %s: ONNX Runtime agrees with the unpacked model on %.3f", e.model, level, agree)
			}
		}
	}
}

// A model qnas wrote converts to every format and back, from the file alone, to the same
// bytes: QDQ → QDQ, QDQ → QONNX → QDQ, QDQ → packed → QDQ.
func TestFormatsRoundTrip(t *testing.T) {
	for _, e := range allExports(t) {
		orig, err := os.ReadFile(e.path)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		via := func(name string, opts export.WriteOptions) {
			mid := filepath.Join(dir, name+".onnx")
			m, err := export.Read(e.path, graph.ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.Write(mid, e.path, opts); err != nil {
				t.Fatalf("%s %s → %s: %v", e.model, e.arch, name, err)
			}
			back, err := export.Read(mid, graph.ImportOptions{})
			if err != nil {
				t.Fatalf("%s %s: reading the %s file: %v", e.model, e.arch, name, err)
			}
			out := filepath.Join(dir, name+"_back.onnx")
			if _, err := back.Write(out, mid, export.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, orig) {
				t.Errorf("%s %s: QDQ → %s → QDQ changed the file (%d → %d bytes)", e.model, e.arch, name, len(orig), len(b))
			}
		}
		via("qdq", export.WriteOptions{})
		via("qonnx", export.WriteOptions{Format: export.FormatQONNX})
		via("packed", export.WriteOptions{Pack: true})
		via("ir10", export.WriteOptions{IRVersion: 10})
	}
}

// The bits travel three ways: each layer's doc_string, the model's metadata (and, at IR 10,
// the node's metadata_props), and the encodings sidecar, which agree with the integers
// and scales in the graph.
func TestBitsAreRecorded(t *testing.T) {
	for _, e := range allExports(t) {
		if e.arch != "mixed" && e.arch != "pruned" {
			continue
		}
		mp, err := onnxio.Load(e.path, onnxio.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		docs := map[string]string{}
		for _, n := range mp.Proto.GetGraph().GetNode() {
			docs[n.GetName()] = n.GetDocString()
		}
		meta := map[string]string{}
		for _, p := range mp.Proto.GetMetadataProps() {
			meta[p.GetKey()] = p.GetValue()
		}
		var layers []export.LayerInfo
		if err := json.Unmarshal([]byte(meta[export.MetaLayers]), &layers); err != nil {
			t.Fatalf("%s: metadata %s: %v", e.path, export.MetaLayers, err)
		}
		if _, err := supernet.ParseArch([]byte(meta[export.MetaArch])); err != nil {
			t.Errorf("%s: metadata %s: %v", e.path, export.MetaArch, err)
		}
		b, err := os.ReadFile(export.OutputFiles(e.path).Encodings)
		if err != nil {
			t.Fatal(err)
		}
		var enc export.Encodings
		if err := json.Unmarshal(b, &enc); err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			if !strings.HasPrefix(docs[l.Name], "qnas: ") {
				t.Errorf("%s: node %s has doc_string %q", e.path, l.Name, docs[l.Name])
			}
			w, ok := enc.Params[l.Weight]
			if !ok || len(w.Bitwidth) != l.KeptFilters() || len(w.Scale) != l.KeptFilters() {
				t.Errorf("%s: encodings of %s: %+v", e.path, l.Weight, w)
				continue
			}
			ints := e.m.Graph.Consts[l.Weight]
			per := ints.Len() / l.KeptFilters()
			for c, bits := range w.Bitwidth {
				if bits != l.WBits[c] {
					t.Errorf("%s: %s filter %d: encodings say %d bits, metadata %d", e.path, l.Name, c, bits, l.WBits[c])
				}
				lim := int64(quant.WeightMax(bits))
				for i := c * per; i < (c+1)*per && l.WAxis == 0; i++ {
					if ints.I[i] < -lim || ints.I[i] > lim {
						t.Fatalf("%s: %s filter %d: integer %d outside its %d-bit grid", e.path, l.Name, c, ints.I[i], bits)
					}
				}
			}
			if a, ok := enc.Activations[l.Input]; l.ABits != quant.Float && (!ok || a.Bitwidth != l.ABits || a.Signed != l.ASigned) {
				t.Errorf("%s: activation encoding of %s: %+v, metadata %d bits signed %v", e.path, l.Name, a, l.ABits, l.ASigned)
			}
		}
	}
	// IR 10: node metadata_props.
	e := allExports(t)[2]
	p := filepath.Join(t.TempDir(), "ir10.onnx")
	if _, err := e.m.Write(p, e.path, export.WriteOptions{IRVersion: 10}); err != nil {
		t.Fatal(err)
	}
	mp, err := onnxio.Load(p, onnxio.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, node := range mp.Proto.GetGraph().GetNode() {
		for _, kv := range node.GetMetadataProps() {
			if kv.GetKey() == "qnas.wbits" {
				n++
			}
		}
	}
	if n != len(e.m.Layers) || mp.Proto.GetIrVersion() != 10 {
		t.Errorf("IR %d: %d nodes carry qnas.wbits, want %d", mp.Proto.GetIrVersion(), n, len(e.m.Layers))
	}
}

// With two fine-tuning epochs or more, the last trains what the export computes
// (BatchNorms on fixed statistics with their shifts on the integer grids, biases rounded as
// export rounds them): the model trained is the model exported, to the prediction, at bits
// where rounding the biases only at export moves several percent of them — on the
// BatchNorm-kept MobileNetV2, on its folded twin (BatchNorms restored for training) and on
// the ConvNeXt-style net, whose MatMul layers' biases (separate Adds) train with the
// weights. ONNX Runtime predicts what qnas predicts of each export.
func TestTrainedModelIsExportedModel(t *testing.T) {
	trainSet, test := embeddedData(t)
	for _, model := range []string{"mbv2_bn.onnx", "mbv2.onnx", "cnx.onnx"} {
		t.Run(model, func(t *testing.T) {
			g, s := restoredSpace(t, model, trainSet)
			before := map[string][]float32{}
			for _, c := range s.ChannelParams {
				before[c] = slices.Clone(g.Consts[c].F)
			}
			if model == "cnx.onnx" && len(before) == 0 {
				t.Fatal("no channel parameters (MatMul biases) in the space")
			}
			res, trained := fineTuneMixed(t, s, trainSet)
			n := 0
			for _, nd := range trained.Nodes {
				if nd.Op == supernet.OpFrozenBatchNorm {
					n++
				}
				if nd.Op == "BatchNormalization" {
					t.Errorf("BatchNorm %s after a quantized conv was not frozen for the last epoch", nd.Name)
				}
			}
			if n == 0 {
				t.Fatal("no FrozenBatchNorm in the last epoch's graph")
			}
			eg, err := supernet.ExportForm(trained)
			if err != nil {
				t.Fatal(err)
			}
			m, err := export.Freeze(eg, res)
			if err != nil {
				t.Fatal(err)
			}
			for c, v := range before {
				if slices.Equal(trained.Consts[c].F, v) {
					t.Errorf("channel parameter %s did not train", c)
				}
				if !slices.Equal(m.Graph.Consts[c].F, trained.Consts[c].F) {
					t.Errorf("channel parameter %s: the export does not hold the trained values", c)
				}
			}
			want, margins := predictMargins(t, m.Graph, test, fixtureNorm)
			agree, accT, accF := agreement(predict(t, trained, test), want, test.Labels)
			t.Logf("mixed-precision %s: trained vs exported agreement %.4f, accuracy %.4f vs %.4f", model, agree, accT, accF)
			if agree < 0.999 {
				t.Errorf("the exported model agrees with the trained one on %.2f%% of the images", 100*agree)
			}
			t.Run("ONNX Runtime", func(t *testing.T) {
				ortrun.RequireORT(t)
				path := filepath.Join(t.TempDir(), "m.onnx")
				if _, err := m.Write(path, "", export.WriteOptions{}); err != nil {
					t.Fatal(err)
				}
				// At level disable ONNX Runtime runs the QDQ graph in float, as qnas does. At
				// level all it runs integer kernels (QLinearConv), which sum exactly where the
				// float graph rounds, so an activation on a rounding boundary can move one
				// step: at 2 bits a third of its range, enough to flip a near-tie. There, a
				// prediction may differ only where qnas's top two logits are within 5 % of its
				// logits' spread (seen: 4 of 1 000 images on an AMD host, at most 1 on an Intel one; margins
				// 0.3–3.4 %).
				for _, level := range []ortrun.OptLevel{ortrun.OptDisable, ortrun.OptAll} {
					got := ortPredict(t, path, test, level)
					agree, _, _ := agreement(want, got, test.Labels)
					if level == ortrun.OptDisable {
						if agree < 0.999 {
							t.Errorf("ONNX Runtime at %s agrees with qnas on %.2f%% of the images", level, 100*agree)
						}
						continue
					}
					var notNearTies int
					for i := range want {
						if want[i] != got[i] && margins[i] >= 0.05 {
							notNearTies++
						}
					}
					if agree < 0.99 || notNearTies > 0 {
						t.Errorf("ONNX Runtime at %s agrees with qnas on %.2f%% of the images; %d of the others are not near-ties", level, 100*agree, notNearTies)
					}
				}
			})
		})
	}
}

// writeAndRead writes m as QDQ to a temporary file and reads it back.
func writeAndRead(t *testing.T, m *export.Model) (string, *export.Model) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.onnx")
	if _, err := m.Write(path, "", export.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	back, err := export.Read(path, graph.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return path, back
}

// embeddedData returns 1 024 images of the embedded training split, and its test split.
func embeddedData(t *testing.T) (trainSet, test *data.Dataset) {
	t.Helper()
	test, err := data.Embedded(data.Test)
	if err != nil {
		t.Fatal(err)
	}
	if trainSet, err = data.Embedded(data.Train); err != nil {
		t.Fatal(err)
	}
	return data.Subset(trainSet, 1024), test
}

// restoredSpace loads a fixture with BatchNorms restored after its folded convs, as
// quantize trains it, and builds its search space.
func restoredSpace(t *testing.T, model string, trainSet *data.Dataset) (*graph.Graph, *supernet.Space) {
	t.Helper()
	g, _, err := search.RestoreBatchNorm(load(t, model), trainSet, fixtureNorm, 4, 128, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := supernet.NewSpace(g)
	if err != nil {
		t.Fatal(err)
	}
	return g, s
}

// fineTuneMixed fine-tunes a random mixed-precision architecture of s two epochs, the last
// on the form export writes.
func fineTuneMixed(t *testing.T, s *supernet.Space, trainSet *data.Dataset) (*supernet.Resolved, *graph.Graph) {
	t.Helper()
	res, err := s.Resolve(mixedArch(s, rand.New(rand.NewPCG(2, 5))))
	if err != nil {
		t.Fatal(err)
	}
	trained, _, err := search.Quantize(res, trainSet, search.QuantizeConfig{Epochs: 2, CalibBatches: 4, Batch: 64, LR: 0.01,
		Momentum: 0.9, Norm: fixtureNorm})
	if err != nil {
		t.Fatal(err)
	}
	return res, trained
}
