package onnxio

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/qnas/qnas/onnxio/onnxpb"
)

// externalInfo is the parsed external_data of a tensor.
type externalInfo struct {
	location  string
	offset    int64
	length    int64
	hasLength bool
}

// parseExternal reads the external_data keys of t. It returns a non-empty message when
// they are malformed: a key other than location, offset, length and checksum, a
// repeated key, a missing location, a location that is absolute or leaves the model's
// folder, or an offset or length that is not a non-negative decimal integer.
func parseExternal(t *onnxpb.TensorProto) (externalInfo, string) {
	var info externalInfo
	var seen [4]bool
	for _, kv := range t.ExternalData {
		k, v := kv.GetKey(), kv.GetValue()
		idx := -1
		switch k {
		case "location":
			idx = 0
			info.location = v
		case "offset", "length":
			idx = 1
			if k == "length" {
				idx = 2
			}
			x, err := strconv.ParseInt(v, 10, 64)
			if err != nil || x < 0 {
				return info, fmt.Sprintf("external data %s %q is not a non-negative integer", k, v)
			}
			if k == "offset" {
				info.offset = x
			} else {
				info.length, info.hasLength = x, true
			}
		case "checksum":
			idx = 3
		default:
			return info, fmt.Sprintf("unknown external data key %q", k)
		}
		if seen[idx] {
			return info, fmt.Sprintf("external data key %q is repeated", k)
		}
		seen[idx] = true
	}
	if !seen[0] || info.location == "" {
		return info, "external data has no location"
	}
	if !localLocation(info.location) {
		return info, fmt.Sprintf("external data location %q is absolute or leaves the model's folder", info.location)
	}
	return info, ""
}

// localLocation reports whether an external data location names a file inside the
// model's folder syntactically: relative, and no ".." that climbs out of it.
func localLocation(loc string) bool {
	for i := 0; i < len(loc); i++ {
		if loc[i] == 0 {
			return false
		}
	}
	// ONNX writes locations with forward slashes; accept them on every system and
	// refuse backslash-rooted or drive-qualified forms everywhere.
	if loc[0] == '/' || loc[0] == '\\' || (len(loc) >= 2 && loc[1] == ':') {
		return false
	}
	return filepath.IsLocal(filepath.FromSlash(loc))
}

// ReadExternalData reads the data of an externally stored tensor (data_location
// EXTERNAL) from the file its location key names, relative to dir (the folder of the
// model file). The location must stay inside dir, also after following symbolic links;
// the file must be a regular file holding the offset and the tensor's bytes. It reads
// exactly the tensor's size, never more, and returns the bytes in raw_data layout.
func ReadExternalData(t *onnxpb.TensorProto, dir string, lim Limits) ([]byte, error) {
	return readExternal(nil, t, dir, lim.orDefault())
}

func readExternal(p *path, t *onnxpb.TensorProto, dir string, lim Limits) ([]byte, error) {
	if t == nil {
		return nil, errAt(p, "tensor is nil")
	}
	l, err := layout(p, t, lim)
	if err != nil {
		return nil, err
	}
	if !l.external {
		return nil, errAt(p, "tensor is not stored externally")
	}
	if l.segment {
		return nil, errAt(p, "segmented tensors are not supported")
	}
	if l.bytes > lim.MaxTotalTensorBytes {
		return nil, errAt(p, "tensor of %d bytes exceeds the limit of %d bytes", l.bytes, lim.MaxTotalTensorBytes)
	}
	info, _ := parseExternal(t) // validated by layout
	f, err := openInside(dir, info.location)
	if err != nil {
		return nil, errAt(p, "external data %q: %v", info.location, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, errAt(p, "external data %q: %v", info.location, err)
	}
	if info.offset > fi.Size() || l.bytes > fi.Size()-info.offset {
		return nil, errAt(p, "external data %q has %d bytes, too short for %d bytes at offset %d",
			info.location, fi.Size(), l.bytes, info.offset)
	}
	buf := make([]byte, l.bytes)
	if _, err := f.ReadAt(buf, info.offset); err != nil && !(errors.Is(err, io.EOF) && l.bytes == 0) {
		return nil, errAt(p, "external data %q: %v", info.location, err)
	}
	return buf, nil
}

// openInside opens the regular file loc relative to dir, refusing any location that
// resolves outside dir. os.Root makes the open itself immune to symbolic links that
// point out of dir; the EvalSymlinks check before it gives a clear message.
func openInside(dir, loc string) (*os.File, error) {
	if !localLocation(loc) {
		return nil, errors.New("location is absolute or leaves the model's folder")
	}
	if dir == "" {
		dir = "."
	}
	rel := filepath.FromSlash(loc)
	base, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, unwrapPath(err)
	}
	full, err := filepath.EvalSymlinks(filepath.Join(dir, rel))
	if err != nil {
		return nil, unwrapPath(err)
	}
	if r, err := filepath.Rel(base, full); err != nil || !filepath.IsLocal(r) {
		return nil, fmt.Errorf("resolves to %s, outside the model's folder %s", full, base)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer root.Close()
	// Refuse devices, pipes and folders before opening (opening a FIFO would block).
	fi, err := root.Stat(rel)
	if err != nil {
		return nil, unwrapPath(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	f, err := root.Open(rel)
	if err != nil {
		return nil, unwrapPath(err)
	}
	if fi2, err := f.Stat(); err != nil || !fi2.Mode().IsRegular() || !os.SameFile(fi, fi2) {
		f.Close()
		return nil, errors.New("file changed while being opened")
	}
	return f, nil
}

// unwrapPath strips the operation and path from an *os.PathError, whose message
// would otherwise repeat a path the caller already reports.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// InlineExternalData reads the data of every externally stored tensor of m — graph
// initializers, Constant and other node attributes, sparse tensors, subgraphs, function
// bodies and training graphs — into raw_data and removes its external_data and
// data_location, so that m can be saved anywhere. Data is read relative to m.Dir. All
// tensors are read before any is changed: on error m is left as it was.
func InlineExternalData(m *Model, lim Limits) error {
	lim = lim.orDefault()
	if m == nil || m.Proto == nil {
		return &Error{Msg: "model is nil"}
	}
	type pending struct {
		t    *onnxpb.TensorProto
		data []byte
	}
	var todo []pending
	var total int64
	w := walker{lim: lim}
	w.tensor = func(p *path, t *onnxpb.TensorProto) error {
		if t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			return nil
		}
		data, err := readExternal(p, t, m.Dir, lim)
		if err != nil {
			return err
		}
		if int64(len(data)) > lim.MaxTotalTensorBytes-total {
			return errAt(p, "external data of the model exceeds the limit of %d bytes", lim.MaxTotalTensorBytes)
		}
		total += int64(len(data))
		todo = append(todo, pending{t, data})
		return nil
	}
	if err := w.model(m.Proto); err != nil {
		return withFile(err, m.Path)
	}
	for _, x := range todo {
		x.t.RawData = x.data
		x.t.ExternalData = nil
		x.t.DataLocation = nil
	}
	return nil
}

// HasExternalData reports whether any tensor of m is stored externally.
func HasExternalData(m *onnxpb.ModelProto) bool {
	found := false
	stop := errors.New("stop")
	w := walker{lim: Limits{MaxGraphDepth: math.MaxInt, MaxNodes: math.MaxInt}}
	w.tensor = func(_ *path, t *onnxpb.TensorProto) error {
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			found = true
			return stop
		}
		return nil
	}
	_ = w.model(m)
	return found
}
