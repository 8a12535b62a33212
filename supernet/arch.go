package supernet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/qnas/qnas/internal/quant"
	"github.com/qnas/qnas/onnxio"
)

// ArchFormat is the format tag of architecture files.
const ArchFormat = "qnas.arch/1"

// Arch is an architecture as written in a qnas.arch/1 file: per layer (by node name) the
// weight bits (one value, or one per group of consecutive filters), the input activation
// bits and the kept filters, and a default for the layers not listed.
type Arch struct {
	Default *LayerSpec
	Layers  map[string]LayerSpec
}

// LayerSpec is one layer's entry; zero fields were not given.
type LayerSpec struct {
	WBits []int // one value for the layer, or one per group of consecutive filters
	ABits int
	Keep  *Keep
}

// Keep is a layer's kept filters: a count (ranked by importance) or explicit indices.
type Keep struct {
	Count   int
	Indices []int
}

// MaxArchBytes bounds an architecture file, checked before it is read (a per-filter
// architecture of a network with a million filters takes a few MiB).
const MaxArchBytes = 64 << 20

// ReadArch reads an architecture file of at most MaxArchBytes; errors name the file.
func ReadArch(path string) (*Arch, error) {
	b, err := onnxio.ReadFileLimited(path, MaxArchBytes)
	if err != nil {
		return nil, err
	}
	a, err := ParseArch(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// ParseArch decodes a qnas.arch/1 document. It checks the syntax and value ranges; Resolve
// checks the architecture against a model.
func ParseArch(b []byte) (*Arch, error) {
	var doc map[string]json.RawMessage
	if err := strictUnmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not a %s file: %v", ArchFormat, err)
	}
	var format string
	if err := json.Unmarshal(doc["format"], &format); err != nil || format != ArchFormat {
		return nil, fmt.Errorf(`"format" must be %q`, ArchFormat)
	}
	a := &Arch{Layers: map[string]LayerSpec{}}
	for k, v := range doc {
		switch k {
		case "format":
		case "default":
			d, err := parseLayerSpec(v)
			if err != nil {
				return nil, fmt.Errorf("default: %v", err)
			}
			if len(d.WBits) > 1 || d.Keep != nil {
				return nil, fmt.Errorf("default: give one wbits value and no keep (lists and kept filters are per layer)")
			}
			a.Default = &d
		case "layers":
			var layers map[string]json.RawMessage
			if err := strictUnmarshal(v, &layers); err != nil {
				return nil, fmt.Errorf(`"layers" must be an object of layer names: %v`, err)
			}
			for name, lv := range layers {
				spec, err := parseLayerSpec(lv)
				if err != nil {
					return nil, fmt.Errorf("layer %q: %v", name, err)
				}
				a.Layers[name] = spec
			}
		default:
			return nil, fmt.Errorf("unknown key %q (keys: format, default, layers)", k)
		}
	}
	return a, nil
}

// strictUnmarshal decodes one JSON value and refuses trailing data.
func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

func parseLayerSpec(b []byte) (LayerSpec, error) {
	var s LayerSpec
	var m map[string]json.RawMessage
	if err := strictUnmarshal(b, &m); err != nil || m == nil {
		return s, fmt.Errorf("want an object with wbits, abits, keep")
	}
	for k, v := range m {
		switch k {
		case "wbits":
			bits, err := intOrList(v)
			if err != nil || len(bits) == 0 {
				return s, fmt.Errorf("wbits must be a bitwidth or a non-empty list of them")
			}
			for _, b := range bits {
				if !quant.ValidBits(b) {
					return s, fmt.Errorf("wbits %d: want %d..%d, or %d for float", b, quant.MinBits, quant.MaxBits, quant.Float)
				}
			}
			if slices.Contains(bits, quant.Float) && slices.ContainsFunc(bits, func(b int) bool { return b != quant.Float }) {
				return s, fmt.Errorf("wbits %v mixes float (32) with integer bitwidths; a layer is quantized or float", bits)
			}
			s.WBits = bits
		case "abits":
			var ab int
			if err := json.Unmarshal(v, &ab); err != nil || !quant.ValidBits(ab) {
				return s, fmt.Errorf("abits must be one bitwidth, %d..%d or %d for float", quant.MinBits, quant.MaxBits, quant.Float)
			}
			s.ABits = ab
		case "keep":
			var n int
			if err := json.Unmarshal(v, &n); err == nil {
				if n < 1 {
					return s, fmt.Errorf("keep %d: keep at least one filter", n)
				}
				s.Keep = &Keep{Count: n}
				continue
			}
			idx, err := intOrList(v)
			if err != nil || len(idx) == 0 {
				return s, fmt.Errorf("keep must be a filter count or a non-empty list of filter indices")
			}
			s.Keep = &Keep{Indices: idx}
		default:
			return s, fmt.Errorf("unknown key %q (keys: wbits, abits, keep)", k)
		}
	}
	return s, nil
}

func intOrList(b []byte) ([]int, error) {
	var one int
	if err := json.Unmarshal(b, &one); err == nil {
		return []int{one}, nil
	}
	var list []int
	err := json.Unmarshal(b, &list)
	return list, err
}

// Choice is one layer's resolved architecture.
type Choice struct {
	WBits []int // per filter of the input model (len Layer.Filters); Float for a float layer
	ABits int   // the input activation's bits; Float for a float input
	Keep  []int // kept filter indices, ascending; nil when every filter is kept
}

// Resolved is an architecture applied to a model: a Choice per layer, in Space order.
type Resolved struct {
	Space   *Space
	Choices []Choice
}

// Kept returns the number of filters layer l keeps.
func (r *Resolved) Kept(l *Layer) int {
	if k := r.Choices[l.Index].Keep; k != nil {
		return len(k)
	}
	return l.Filters
}

// KeptIn returns the number of input channels (Gemm, MatMul: columns) layer l reads after
// pruning.
func (r *Resolved) KeptIn(l *Layer) int {
	if l.Depthwise {
		return r.Kept(l)
	}
	return l.keptInputs(func(g *Group) int {
		if k := r.GroupKeep(g); k != nil {
			return len(k)
		}
		return g.Channels
	})
}

// MACs returns the multiply-accumulates per sample of the space's layers under r.
func (r *Resolved) MACs() int64 {
	var n int64
	for _, l := range r.Space.Layers {
		n += l.MACs(r.KeptIn(l), r.Kept(l))
	}
	return n
}

// GroupKeep returns the kept channels of a group (nil: all).
func (r *Resolved) GroupKeep(g *Group) []int {
	if len(g.Producers) == 0 {
		return nil
	}
	return r.Choices[g.Producers[0].Index].Keep
}

// Resolve applies an architecture to the space: defaults filled in, per-group bit lists
// expanded to per-filter bits, kept-filter counts ranked by importance, and every value
// checked against the model. Errors name the layer.
func (s *Space) Resolve(a *Arch) (*Resolved, error) {
	for name := range a.Layers {
		if s.byName[name] == nil {
			return nil, fmt.Errorf("layer %q is not a Conv, Gemm or MatMul layer of the model (%s)", name, s.layerList())
		}
	}
	r := &Resolved{Space: s, Choices: make([]Choice, len(s.Layers))}
	groupKeep := map[*Group][]int{}
	groupKeepBy := map[*Group]string{}
	for _, l := range s.Layers {
		spec, listed := a.Layers[l.Name]
		if !listed && a.Default == nil {
			return nil, fmt.Errorf("layer %q is not listed and the file has no default", l.Name)
		}
		c := Choice{}
		wb := spec.WBits
		if wb == nil {
			if a.Default == nil || a.Default.WBits == nil {
				return nil, fmt.Errorf("layer %q: no wbits, and no default wbits", l.Name)
			}
			wb = a.Default.WBits
		}
		if l.Filters%len(wb) != 0 {
			return nil, fmt.Errorf("layer %q: wbits has %d values for %d filters (a list's length must divide the filter count)", l.Name, len(wb), l.Filters)
		}
		per := l.Filters / len(wb)
		c.WBits = make([]int, l.Filters)
		for f := range c.WBits {
			c.WBits[f] = wb[f/per]
		}
		c.ABits = spec.ABits
		if c.ABits == 0 {
			if a.Default == nil || a.Default.ABits == 0 {
				return nil, fmt.Errorf("layer %q: no abits, and no default abits", l.Name)
			}
			c.ABits = a.Default.ABits
			if l.First && c.ABits < 8 {
				c.ABits = 8 // the network input stays at 8 bits unless the layer says otherwise
			}
		}
		if spec.Keep != nil {
			keep, err := s.resolveKeep(l, spec.Keep)
			if err != nil {
				return nil, fmt.Errorf("layer %q: %v", l.Name, err)
			}
			if prev, ok := groupKeep[l.Out]; ok && !slices.Equal(prev, keep) {
				return nil, fmt.Errorf("layers %q and %q share their output channels (one dependency group) but keep different filters (%d and %d)",
					groupKeepBy[l.Out], l.Name, len(prev), len(keep))
			}
			groupKeep[l.Out], groupKeepBy[l.Out] = keep, l.Name
		}
		r.Choices[l.Index] = c
	}
	for _, l := range s.Layers {
		if k := groupKeep[l.Out]; len(k) < l.Filters {
			r.Choices[l.Index].Keep = k
		}
	}
	return r, nil
}

func (s *Space) resolveKeep(l *Layer, k *Keep) ([]int, error) {
	n := l.Out.Channels
	var keep []int
	if k.Indices == nil {
		if k.Count > n {
			return nil, fmt.Errorf("keep %d: the layer has %d filters", k.Count, n)
		}
		keep = slices.Clone(s.Importance(l.Out)[:k.Count])
	} else {
		seen := map[int]bool{}
		for _, i := range k.Indices {
			if i < 0 || i >= n {
				return nil, fmt.Errorf("keep: filter index %d is outside 0..%d", i, n-1)
			}
			if seen[i] {
				return nil, fmt.Errorf("keep: filter %d is listed twice", i)
			}
			seen[i] = true
		}
		keep = slices.Clone(k.Indices)
	}
	sort.Ints(keep)
	if len(keep) < n && !l.Out.Prunable {
		return nil, fmt.Errorf("keep %d of %d: its filters cannot be pruned (%s)", len(keep), n, l.Out.Reason)
	}
	return keep, nil
}

func (s *Space) layerList() string {
	names := make([]string, 0, len(s.Layers))
	for _, l := range s.Layers {
		names = append(names, l.Name)
	}
	if len(names) > 6 {
		return fmt.Sprintf("its %d layers are %s, …; see qnas inspect", len(names), strings.Join(names[:6], ", "))
	}
	return "its layers: " + strings.Join(names, ", ")
}

// Arch returns the resolved architecture as a file: every layer listed in graph order,
// weight bits as one value or the fewest equal groups of consecutive filters, kept filters
// as indices (so the file means the same after the weights change).
func (r *Resolved) Arch() *Arch {
	a := &Arch{Layers: map[string]LayerSpec{}}
	for _, l := range r.Space.Layers {
		c := r.Choices[l.Index]
		spec := LayerSpec{WBits: compressBits(c.WBits), ABits: c.ABits}
		if c.Keep != nil {
			spec.Keep = &Keep{Indices: slices.Clone(c.Keep)}
		}
		a.Layers[l.Name] = spec
	}
	return a
}

// compressBits returns per-filter bits as the fewest groups of consecutive filters.
func compressBits(bits []int) []int {
	n := len(bits)
	for g := 1; g <= n; g++ {
		if n%g != 0 {
			continue
		}
		per := n / g
		ok := true
		for i := range bits {
			if bits[i] != bits[i/per*per] {
				ok = false
				break
			}
		}
		if ok {
			out := make([]int, g)
			for i := range out {
				out[i] = bits[i*per]
			}
			return out
		}
	}
	return slices.Clone(bits)
}

// MarshalArch writes an architecture as JSON: layers in the given order (names not in
// order follow, sorted), one layer per line.
func MarshalArch(a *Arch, order []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\"format\": %q,\n", ArchFormat)
	if a.Default != nil {
		fmt.Fprintf(&b, " \"default\": %s,\n", specJSON(*a.Default))
	}
	names := slices.Clone(order)
	var rest []string
	for k := range a.Layers {
		if !slices.Contains(order, k) {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	names = append(names, rest...)
	b.WriteString(" \"layers\": {")
	first := true
	for _, n := range names {
		spec, ok := a.Layers[n]
		if !ok {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		q, _ := json.Marshal(n)
		fmt.Fprintf(&b, "\n  %s: %s", q, specJSON(spec))
	}
	b.WriteString("}}\n")
	return b.Bytes()
}

func specJSON(s LayerSpec) string {
	var parts []string
	if len(s.WBits) == 1 {
		parts = append(parts, fmt.Sprintf(`"wbits": %d`, s.WBits[0]))
	} else if s.WBits != nil {
		parts = append(parts, fmt.Sprintf(`"wbits": %s`, intsJSON(s.WBits)))
	}
	if s.ABits != 0 {
		parts = append(parts, fmt.Sprintf(`"abits": %d`, s.ABits))
	}
	if s.Keep != nil {
		if s.Keep.Indices != nil {
			parts = append(parts, fmt.Sprintf(`"keep": %s`, intsJSON(s.Keep.Indices)))
		} else {
			parts = append(parts, fmt.Sprintf(`"keep": %d`, s.Keep.Count))
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func intsJSON(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprint(x)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
