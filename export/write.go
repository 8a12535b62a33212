package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/qnas/qnas/internal/field"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/quant"
	"github.com/qnas/qnas/onnxio"
	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Formats of the written model.
const (
	FormatQDQ   = "qdq"
	FormatQONNX = "qonnx"
)

// Metadata keys of a model qnas wrote.
const (
	MetaLayers = "qnas.layers" // JSON: []LayerInfo
	MetaArch   = "qnas.arch"   // the qnas.arch/1 document it applies
	MetaFormat = "qnas.format" // "qdq", "qdq+pack" or "qonnx"
	MetaOpset  = "qnas.opset"  // a packed model's opset before packing raised it to 21
)

// WriteOptions controls Write.
type WriteOptions struct {
	Format string // FormatQDQ (default) or FormatQONNX
	// Pack stores the weights of every layer whose kept filters all fit in 4 bits as INT4
	// initializers (opset 21, IR 10).
	Pack bool
	// IRVersion of the file: 0 means 8 (10 with Pack); 10 or more also writes each layer's
	// bits into its node's metadata_props.
	IRVersion       int64
	ProducerVersion string
}

// Files names what Write writes for OUT.onnx: the model, OUT.encodings.json and
// OUT.arch.json (OUT.onnx minus its extension).
type Files struct{ Model, Encodings, Arch string }

// OutputFiles returns the files Write writes for the model path out.
func OutputFiles(out string) Files {
	base := strings.TrimSuffix(out, filepath.Ext(out))
	return Files{Model: out, Encodings: base + ".encodings.json", Arch: base + ".arch.json"}
}

// Write writes the model to out in the chosen format, and its encodings and architecture
// beside it (OutputFiles), all or none (onnxio.WriteFilesAtomic), the model last. No file
// is written over input (the model it was made from) or over a special file.
func (m *Model) Write(out, input string, opts WriteOptions) (Files, error) {
	files := OutputFiles(out)
	for _, f := range []string{files.Model, files.Encodings, files.Arch} {
		if err := onnxio.CheckNotSameFile(f, input); err != nil {
			return files, err
		}
	}
	mp, err := m.ONNX(opts)
	if err != nil {
		return files, err
	}
	enc, err := json.MarshalIndent(m.Encodings(), "", " ")
	if err != nil {
		return files, err
	}
	bytesOf := func(b []byte) func(io.Writer) error {
		return func(w io.Writer) error { _, err := w.Write(b); return err }
	}
	return files, onnxio.WriteFilesAtomic([]onnxio.FileContent{
		{Path: files.Encodings, Write: bytesOf(append(enc, '\n'))},
		{Path: files.Arch, Write: bytesOf(m.Arch)},
		{Path: files.Model, Write: func(w io.Writer) error { return onnxio.Encode(w, mp) }},
	})
}

// ONNX returns the model as an ONNX message in the chosen format.
func (m *Model) ONNX(opts WriteOptions) (*onnxpb.ModelProto, error) {
	format := opts.Format
	if format == "" {
		format = FormatQDQ
	}
	if format != FormatQDQ && format != FormatQONNX {
		return nil, field.Errorf("WriteOptions.Format", " %q: want %s or %s", format, FormatQDQ, FormatQONNX)
	}
	if opts.Pack && format != FormatQDQ {
		return nil, field.Errorf("WriteOptions.Pack", " applies to the QDQ format (QONNX keeps float weights)")
	}
	g := m.Graph.Clone()
	if err := upgradeOpset(g, 13); err != nil {
		return nil, err
	}
	ir := opts.IRVersion
	if ir == 0 {
		ir = 8
	}
	tag := format
	if opts.Pack {
		if g.Opset < 21 {
			g.Meta[MetaOpset] = fmt.Sprint(g.Opset)
		}
		if err := upgradeOpset(g, 21); err != nil {
			return nil, err
		}
		ir = max(ir, 10)
		if err := pack(g, m.Layers); err != nil {
			return nil, err
		}
		tag += "+pack"
	}
	var fn *onnxpb.FunctionProto
	if format == FormatQONNX {
		var err error
		if fn, err = toQONNX(g, m.Layers); err != nil {
			return nil, err
		}
	}
	layers, err := json.Marshal(m.Layers)
	if err != nil {
		return nil, err
	}
	g.Meta[MetaLayers] = string(layers)
	g.Meta[MetaArch] = string(bytes.TrimSpace(m.Arch))
	g.Meta[MetaFormat] = tag
	mp, err := g.ToONNX(graph.WriteOptions{ProducerVersion: opts.ProducerVersion, IRVersion: ir})
	if err != nil {
		return nil, err
	}
	if fn != nil {
		mp.Functions = append(mp.Functions, fn)
	}
	if ir >= 10 {
		nodeMetadata(mp, m.Layers)
	}
	return mp, nil
}

// nodeMetadata writes each layer's bits into its node's metadata_props (IR ≥ 10).
func nodeMetadata(mp *onnxpb.ModelProto, layers []LayerInfo) {
	byName := map[string]LayerInfo{}
	for _, l := range layers {
		byName[l.Name] = l
	}
	for _, n := range mp.GetGraph().GetNode() {
		l, ok := byName[n.GetName()]
		if !ok {
			continue
		}
		kv := func(k, v string) {
			n.MetadataProps = append(n.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(k), Value: proto.String(v)})
		}
		kv("qnas.wbits", intsJSON(l.WBits))
		kv("qnas.abits", fmt.Sprint(l.ABits))
		kv("qnas.filters", fmt.Sprint(l.Filters))
		if l.Kept != nil {
			kv("qnas.kept", intsJSON(l.Kept))
		}
	}
}

func intsJSON(v []int) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// opsetChanges lists ops whose signature changed between opset 9 and 13 in ways qnas does
// not rewrite: a model of an older opset that still holds them after canonicalization is
// refused rather than written at an opset whose meaning differs.
var opsetChanges = map[string]int{"Squeeze": 13, "Unsqueeze": 13, "Split": 13, "ReduceSum": 13, "Pad": 11,
	"Upsample": 10, "Resize": 13, "Slice": 10}

// upgradeOpset raises g's opset to at least v, moving an old Clip's min/max attributes to
// inputs and refusing the ops whose meaning changed.
func upgradeOpset(g *graph.Graph, v int) error {
	if g.Opset >= v {
		return nil
	}
	for _, n := range g.Nodes {
		if since, ok := opsetChanges[n.Op]; ok && g.Opset < since {
			return fmt.Errorf("node %q (%s): the model is opset %d and this op changed by opset %d; export the model at opset %d or later", n.Name, n.Op, g.Opset, since, v)
		}
		if n.Op == "Clip" && (n.Has("min") || n.Has("max")) {
			lo, hi, err := g.ClipBoundsOf(n)
			if err != nil {
				return err
			}
			n.Inputs = []string{n.Inputs[0], n.Name + "/min", n.Name + "/max"}
			g.Consts[n.Inputs[1]] = graph.NewFloat(nil, []float32{lo})
			g.Consts[n.Inputs[2]] = graph.NewFloat(nil, []float32{hi})
			delete(n.Attrs, "min")
			delete(n.Attrs, "max")
		}
	}
	g.Opset = v
	return nil
}

// pack turns the int8 weights of every layer whose kept filters all fit in 4 bits into
// INT4 initializers (zero points too).
func pack(g *graph.Graph, layers []LayerInfo) error {
	for _, l := range layers {
		if l.Weight == "" || slices.ContainsFunc(l.WBits, func(b int) bool { return b > 4 }) {
			continue
		}
		w := g.Consts[l.Weight]
		if w == nil || w.DType != graph.Int8 {
			return fmt.Errorf("layer %q: weight %q is not an int8 initializer", l.Name, l.Weight)
		}
		for _, v := range w.I {
			if v < -8 || v > 7 {
				return fmt.Errorf("layer %q: weight %q holds %d, outside int4", l.Name, l.Weight, v)
			}
		}
		w.DType = graph.Int4
		for _, n := range g.Nodes {
			if n.Op == "DequantizeLinear" && n.Inputs[0] == l.Weight && len(n.Inputs) > 2 {
				if z := g.Consts[n.Inputs[2]]; z != nil {
					z.DType = graph.Int4
				}
			}
		}
	}
	return nil
}

// Encodings is the sidecar NAME.encodings.json (docs/formats.md): per quantized tensor its
// bitwidth(s), scale(s), zero point(s) and signedness.
type Encodings struct {
	Format      string                 `json:"format"`
	Activations map[string]ActEncoding `json:"activation_encodings"`
	Params      map[string]WEncoding   `json:"param_encodings"`
}

// ActEncoding is one activation quantizer, keyed by the value the layer reads.
type ActEncoding struct {
	Layer    string  `json:"layer"`
	Input    string  `json:"input"` // the float value it quantizes
	Bitwidth int     `json:"bitwidth"`
	Signed   bool    `json:"signed"`
	Scale    float32 `json:"scale"`
	Offset   int     `json:"offset"`
	Min      float32 `json:"min"`
	Max      float32 `json:"max"`
}

// WEncoding is one layer's weight quantization, per output channel, keyed by the integer
// initializer.
type WEncoding struct {
	Layer     string    `json:"layer"`
	Axis      int       `json:"axis"`
	Bitwidth  []int     `json:"bitwidth"`
	Signed    bool      `json:"signed"`
	Symmetric bool      `json:"is_symmetric"`
	Scale     []float32 `json:"scale"`
	Offset    []int     `json:"offset"`
}

// EncodingsFormat is the format tag of the encodings sidecar.
const EncodingsFormat = "qnas.encodings/1"

// Encodings collects the model's quantization parameters.
func (m *Model) Encodings() Encodings {
	e := Encodings{Format: EncodingsFormat, Activations: map[string]ActEncoding{}, Params: map[string]WEncoding{}}
	g := m.Graph
	producers := g.Producers()
	for _, l := range m.Layers {
		if l.Weight != "" {
			var scale []float32
			for _, n := range g.Nodes {
				if n.Op == "DequantizeLinear" && n.Inputs[0] == l.Weight {
					scale = g.Consts[n.Inputs[1]].F
				}
			}
			e.Params[l.Weight] = WEncoding{Layer: l.Name, Axis: l.WAxis, Bitwidth: l.WBits, Signed: true, Symmetric: true,
				Scale: scale, Offset: make([]int, len(scale))}
		}
		if l.ABits != quant.Float {
			in := l.Input
			for p := producers[in]; p != nil && p.Op != "Clip"; p = producers[p.Inputs[0]] {
				in = p.Inputs[0]
			}
			if p := producers[in]; p != nil {
				in = p.Inputs[0]
			}
			lo := float32(0)
			if l.ASigned {
				lo = -l.AClip
			}
			e.Activations[l.Input] = ActEncoding{Layer: l.Name, Input: in, Bitwidth: l.ABits, Signed: l.ASigned,
				Scale: quant.ActScale(l.AClip, l.ABits, l.ASigned), Min: lo, Max: l.AClip}
		}
	}
	return e
}
