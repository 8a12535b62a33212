package onnxio

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/qnas/qnas/onnxio/onnxpb"
)

// Validate checks a decoded model against lim: a graph is present; every tensor has a
// known data type, non-negative dims, an element count within MaxTensorElements and
// stored data of exactly the size its dims and type call for (or well-formed external
// data keys); all tensor data together stays within MaxTotalTensorBytes; subgraphs
// nest at most MaxGraphDepth deep and the model has at most MaxNodes nodes. The checks
// cost time proportional to the model's size and allocate nothing proportional to
// the sizes tensors claim. Operators, attributes and shapes are not checked.
func Validate(m *onnxpb.ModelProto, lim Limits) error {
	lim = lim.orDefault()
	if m == nil {
		return &Error{Msg: "model is nil"}
	}
	if m.Graph == nil {
		return &Error{Msg: "model has no graph"}
	}
	var total int64
	w := walker{lim: lim}
	w.tensor = func(p *path, t *onnxpb.TensorProto) error {
		size, err := checkTensor(p, t, lim)
		if err != nil {
			return err
		}
		if size > lim.MaxTotalTensorBytes-total {
			return errAt(p, "tensor data of the model exceeds the limit of %d bytes", lim.MaxTotalTensorBytes)
		}
		total += size
		return nil
	}
	w.sparse = func(p *path, s *onnxpb.SparseTensorProto) error { return checkSparse(p, s) }
	return w.model(m)
}

// ValidateTensor checks one tensor as Validate checks the tensors of a model.
func ValidateTensor(t *onnxpb.TensorProto, lim Limits) error {
	lim = lim.orDefault()
	if t == nil {
		return &Error{Msg: "tensor is nil"}
	}
	size, err := checkTensor(nil, t, lim)
	if err == nil && size > lim.MaxTotalTensorBytes {
		err = &Error{Msg: fmt.Sprintf("tensor data exceeds the limit of %d bytes", lim.MaxTotalTensorBytes)}
	}
	return err
}

// NumElements returns the number of elements of t, the product of its dims (1 for a
// scalar). It fails on a negative dimension or a product that overflows int64.
func NumElements(t *onnxpb.TensorProto) (int64, error) {
	return countElements(nil, t.GetDims(), math.MaxInt64)
}

// countElements multiplies dims, refusing negative dims and products above max.
func countElements(p *path, dims []int64, max int64) (int64, error) {
	n := int64(1)
	zero := false
	for i, d := range dims {
		if d < 0 {
			return 0, errAt(p, "dims[%d] = %d is negative", i, d)
		}
		if d == 0 {
			zero = true
		}
	}
	if zero {
		return 0, nil
	}
	for _, d := range dims {
		if n > math.MaxInt64/d {
			return 0, errAt(p, "element count of dims %s overflows int64", fmtDims(dims))
		}
		n *= d
	}
	if n > max {
		return 0, errAt(p, "dims %s give %d elements, more than the limit of %d", fmtDims(dims), n, max)
	}
	return n, nil
}

// fmtDims renders dims for a message, eliding the middle of very long lists.
func fmtDims(dims []int64) string {
	const show = 8
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range dims {
		if len(dims) > show && i == show/2 {
			fmt.Fprintf(&b, " …%d more…", len(dims)-show)
		}
		if len(dims) > show && i >= show/2 && i < len(dims)-show/2 {
			continue
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// tensorLayout is what checkTensor learns about a valid tensor.
type tensorLayout struct {
	info     typeInfo
	n        int64 // element count
	bytes    int64 // data size (raw_data size; summed string lengths for STRING)
	external bool
	raw      bool // inline data in raw_data
	segment  bool
}

// checkTensor validates t and returns its data size in bytes.
func checkTensor(p *path, t *onnxpb.TensorProto, lim Limits) (int64, error) {
	l, err := layout(p, t, lim)
	return l.bytes, err
}

// layout validates t (see Validate) and describes where its data lives.
func layout(p *path, t *onnxpb.TensorProto, lim Limits) (tensorLayout, error) {
	var l tensorLayout
	dt := t.GetDataType()
	ti, ok := lookupType(dt)
	if !ok {
		if dt == TypeUndefined {
			return l, errAt(p, "data_type is not set")
		}
		return l, errAt(p, "data_type %d is not a known element type", dt)
	}
	l.info = ti
	n, err := countElements(p, t.Dims, lim.MaxTensorElements)
	if err != nil {
		return l, err
	}
	l.n = n
	if t.Segment != nil {
		b, e := t.Segment.GetBegin(), t.Segment.GetEnd()
		if b < 0 || e < b || e > n {
			return l, errAt(p, "segment [%d, %d) does not lie within the %d elements", b, e, n)
		}
		l.segment = true
	}
	name := DataTypeName(dt)

	// Which inline fields hold data.
	fields := [...]struct {
		f   valueField
		len int
	}{
		{fieldFloat, len(t.FloatData)},
		{fieldInt32, len(t.Int32Data)},
		{fieldString, len(t.StringData)},
		{fieldInt64, len(t.Int64Data)},
		{fieldDouble, len(t.DoubleData)},
		{fieldUint64, len(t.Uint64Data)},
	}
	typed := fieldNone
	typedLen := 0
	for _, f := range fields {
		if f.len == 0 {
			continue
		}
		if typed != fieldNone {
			return l, errAt(p, "data is stored in both %s and %s", typed, f.f)
		}
		typed, typedLen = f.f, f.len
	}
	hasRaw := len(t.RawData) > 0
	if hasRaw && typed != fieldNone {
		return l, errAt(p, "data is stored in both raw_data and %s", typed)
	}

	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		if hasRaw || typed != fieldNone {
			return l, errAt(p, "data_location is EXTERNAL but data is stored inline as well")
		}
		if dt == TypeString {
			return l, errAt(p, "STRING tensors cannot be stored externally")
		}
		info, msg := parseExternal(t)
		if msg != "" {
			return l, errAt(p, "%s", msg)
		}
		l.external = true
		l.bytes = rawBytes(ti.bits, n)
		if info.hasLength && info.length != l.bytes && !l.segment {
			return l, errAt(p, "external data length %d does not match the %d bytes of %d %s elements",
				info.length, l.bytes, n, name)
		}
		return l, nil
	} else if dl := t.GetDataLocation(); dl != onnxpb.TensorProto_DEFAULT {
		return l, errAt(p, "data_location %d is not DEFAULT or EXTERNAL", int32(dl))
	} else if len(t.ExternalData) > 0 {
		return l, errAt(p, "external_data is set but data_location is not EXTERNAL")
	}

	switch {
	case hasRaw:
		if dt == TypeString {
			return l, errAt(p, "STRING tensor has raw_data; strings must be in string_data")
		}
		l.raw = true
		l.bytes = int64(len(t.RawData))
		want := rawBytes(ti.bits, n)
		if l.segment {
			if l.bytes > want {
				return l, errAt(p, "raw_data has %d bytes, more than the %d of %d %s elements", l.bytes, want, n, name)
			}
		} else if l.bytes != want {
			return l, errAt(p, "raw_data has %d bytes, want %d for %d %s elements", l.bytes, want, n, name)
		}
	case typed != fieldNone:
		if typed != ti.field {
			return l, errAt(p, "%s tensor stores its values in %s, want %s", name, typed, ti.field)
		}
		want := typedCount(ti, n)
		got := int64(typedLen)
		if l.segment {
			if got > want {
				return l, errAt(p, "%s has %d values, more than the %d of %d %s elements", typed, got, want, n, name)
			}
		} else if got != want {
			return l, errAt(p, "%s has %d values, want %d for %d %s elements", typed, got, want, n, name)
		}
		if dt == TypeString {
			for _, s := range t.StringData {
				l.bytes += int64(len(s))
			}
		} else {
			l.bytes = rawBytes(ti.bits, n)
		}
	default:
		if n != 0 && !l.segment {
			return l, errAt(p, "%s tensor of %d elements has no data", name, n)
		}
	}
	return l, nil
}

// checkSparse checks the parts of a sparse tensor that are not tensors themselves: its
// dims, and that values and indices have the shapes the dims call for.
func checkSparse(p *path, s *onnxpb.SparseTensorProto) error {
	if _, err := countElements(p, s.Dims, math.MaxInt64); err != nil {
		return err
	}
	if s.Values == nil {
		return errAt(p, "sparse tensor has no values")
	}
	vd := s.Values.Dims
	if len(vd) != 1 {
		return errAt(p, "values have %d dims, want 1", len(vd))
	}
	nnz := vd[0]
	if s.Indices == nil {
		if nnz == 0 {
			return nil
		}
		return errAt(p, "sparse tensor has %d values but no indices", nnz)
	}
	if dt := s.Indices.GetDataType(); dt != TypeInt64 {
		return errAt(p, "indices have data_type %s, want INT64", DataTypeName(dt))
	}
	id := s.Indices.Dims
	switch {
	case len(id) == 1 && id[0] == nnz:
	case len(id) == 2 && id[0] == nnz && id[1] == int64(len(s.Dims)):
	default:
		return errAt(p, "indices have dims %s, want [%d] or [%d %d]", fmtDims(id), nnz, nnz, len(s.Dims))
	}
	return nil
}
