// Package onnxio loads and saves ONNX models safely and byte-exactly.
//
// Decoding never panics and never allocates memory in proportion to sizes a file
// merely claims: the input is read up to Limits.MaxModelBytes, unmarshalled with
// unknown fields kept (so a model decoded and encoded again is byte-identical to its
// input), and validated (see Validate). Tensor values are read with TensorFloat32s and
// TensorInt64s from typed fields, raw_data or external files, which must stay inside
// the model's folder. Writes are atomic (see WriteFileAtomic) and SaveChecked never
// replaces the model that was read. Problems are reported as *Error, which names the
// file and the protobuf field path of the offending part.
package onnxio

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/qnas/qnas/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Model is a loaded ONNX model.
type Model struct {
	// Proto is the decoded model.
	Proto *onnxpb.ModelProto
	// Path is the file the model was loaded from, as given to Load.
	Path string
	// Dir is the folder external data locations are relative to: the folder of Path.
	Dir string
}

// Decode reads a serialized ModelProto from r, at most lim.MaxModelBytes of it (a
// longer input is an error, detected without reading further), and validates it with
// Validate. Errors are *Error.
func Decode(r io.Reader, lim Limits) (*onnxpb.ModelProto, error) {
	lim = lim.orDefault()
	b, err := readLimited(r, lim.MaxModelBytes, 0)
	if err != nil {
		return nil, err
	}
	return DecodeBytes(b, lim)
}

// DecodeBytes is Decode for a model already in memory.
func DecodeBytes(b []byte, lim Limits) (*onnxpb.ModelProto, error) {
	lim = lim.orDefault()
	if int64(len(b)) > lim.MaxModelBytes {
		return nil, tooLarge(lim.MaxModelBytes)
	}
	m := &onnxpb.ModelProto{}
	if err := unmarshal(b, m); err != nil {
		return nil, err
	}
	if err := safely(func() error { return Validate(m, lim) }); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeTensor reads a serialized TensorProto (such as the input_*.pb and output_*.pb
// files of ONNX test cases) from r, at most lim.MaxModelBytes of it, and validates it
// like the tensors of a model.
func DecodeTensor(r io.Reader, lim Limits) (*onnxpb.TensorProto, error) {
	lim = lim.orDefault()
	b, err := readLimited(r, lim.MaxModelBytes, 0)
	if err != nil {
		return nil, err
	}
	t := &onnxpb.TensorProto{}
	if err := unmarshal(b, t); err != nil {
		return nil, err
	}
	if err := safely(func() error { return ValidateTensor(t, lim) }); err != nil {
		return nil, err
	}
	return t, nil
}

// Encode writes m in the protobuf wire format. Fields are written in field-number
// order and unknown fields are kept, so a model decoded from ONNX's own serialization
// encodes to the same bytes.
func Encode(w io.Writer, m *onnxpb.ModelProto) error {
	return encode(w, m)
}

// EncodeTensor writes t in the protobuf wire format.
func EncodeTensor(w io.Writer, t *onnxpb.TensorProto) error {
	return encode(w, t)
}

func encode(w io.Writer, m proto.Message) error {
	if m == nil || !m.ProtoReflect().IsValid() {
		return &Error{Msg: "cannot encode a nil message"}
	}
	b, err := proto.MarshalOptions{}.Marshal(m)
	if err != nil {
		return &Error{Msg: "cannot encode: " + err.Error(), Err: err}
	}
	_, err = w.Write(b)
	return err
}

// Load reads, decodes and validates the model file at path. Errors are *Error naming
// the file.
func Load(path string, lim Limits) (*Model, error) {
	lim = lim.orDefault()
	f, err := openRead(path)
	if err != nil {
		return nil, &Error{File: path, Msg: unwrapPath(err).Error(), Err: err}
	}
	defer f.Close()
	var hint int64
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		if fi.Size() > lim.MaxModelBytes {
			return nil, &Error{File: path, Msg: fmt.Sprintf("file has %d bytes, more than the limit of %d", fi.Size(), lim.MaxModelBytes)}
		}
		hint = fi.Size()
	}
	b, err := readLimited(f, lim.MaxModelBytes, hint)
	if err != nil {
		return nil, withFile(err, path)
	}
	m, err := DecodeBytes(b, lim)
	if err != nil {
		return nil, withFile(err, path)
	}
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return &Model{Proto: m, Path: path, Dir: dir}, nil
}

// Save writes m to path atomically (see WriteFileAtomic).
func Save(path string, m *onnxpb.ModelProto) error {
	return WriteFileAtomic(path, func(w io.Writer) error { return Encode(w, m) })
}

// SaveChecked is Save that refuses to write over inputPath, the model m was read
// from: path must not name the same file, also not through a symbolic or hard link.
// An empty inputPath checks nothing.
func SaveChecked(path, inputPath string, m *onnxpb.ModelProto) error {
	if err := CheckNotSameFile(path, inputPath); err != nil {
		return err
	}
	return Save(path, m)
}

// Save writes the model to path with SaveChecked, so the file it was loaded from is
// never replaced. A model with externally stored tensors may only be saved into its
// own folder, where their locations still resolve; call InlineExternalData first to
// save it elsewhere.
func (m *Model) Save(path string) error {
	if m == nil || m.Proto == nil {
		return &Error{File: path, Msg: "model is nil"}
	}
	if HasExternalData(m.Proto) {
		dir := filepath.Dir(path)
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		if !sameDir(dir, m.Dir) {
			return &Error{File: path, Msg: fmt.Sprintf("model has external data relative to %s; inline it before saving into another folder", m.Dir)}
		}
	}
	return SaveChecked(path, m.Path, m.Proto)
}

func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// CheckNotSameFile returns an *Error naming both paths if outPath and inputPath name
// the same file: the same path, or links (symbolic or hard) to one file. An empty
// inputPath or an outPath that does not exist yet passes.
func CheckNotSameFile(outPath, inputPath string) error {
	if inputPath == "" {
		return nil
	}
	if SameFile(outPath, inputPath) {
		return &Error{File: outPath, Msg: fmt.Sprintf("refusing to overwrite the input model %s (output %s is the same file)", inputPath, outPath)}
	}
	return nil
}

// WriteFileAtomic writes a file through write so that path holds either its old
// content or the complete new one, never a partial file: write fills a temporary file
// in path's folder, which is flushed, fsynced, closed and renamed to path; then the
// folder is fsynced. On any error, or a panic in write, the temporary file is removed
// and path is left untouched. The new file keeps the permissions of the file it
// replaces, or gets 0644. Only a regular file is replaced: a path that is a directory, a
// device, a FIFO, a socket or a symbolic link is refused (CheckOutputPath). Errors are
// *Error naming path.
func WriteFileAtomic(path string, write func(io.Writer) error) error {
	p, err := prepareFile(path, write)
	if err != nil {
		return err
	}
	return p.commit()
}

// FileContent is one file for WriteFilesAtomic.
type FileContent struct {
	Path  string
	Write func(io.Writer) error
}

// WriteFilesAtomic writes several files as WriteFileAtomic does, all or none: every file
// is written completely to its temporary file first, and only when all are written are
// they renamed into place, in the order given (so the last one's presence means the
// others are there). An error before that leaves every path untouched.
func WriteFilesAtomic(files []FileContent) error {
	for _, f := range files {
		if err := CheckOutputPath(f.Path); err != nil {
			return err
		}
	}
	var pending []*pendingFile
	defer func() {
		for _, p := range pending {
			p.abort()
		}
	}()
	for _, f := range files {
		p, err := prepareFile(f.Path, f.Write)
		if err != nil {
			return err
		}
		pending = append(pending, p)
	}
	for len(pending) > 0 {
		p := pending[0]
		pending = pending[1:]
		if err := p.commit(); err != nil {
			return err
		}
	}
	return nil
}

// pendingFile is a file written and fsynced under no name or a temporary one, waiting to
// be renamed into place.
type pendingFile struct {
	path, dir, tmp string // tmp: the temporary name ("" for an unnamed file)
	f              *os.File
	done           bool
}

func (p *pendingFile) fail(what string, e error) error {
	return &Error{File: p.path, Msg: what + ": " + e.Error(), Err: e}
}

// prepareFile writes the content of path into a temporary file in its folder.
func prepareFile(path string, write func(io.Writer) error) (_ *pendingFile, err error) {
	if err := CheckOutputPath(path); err != nil {
		return nil, err
	}
	perm := os.FileMode(0o644)
	if fi, err := os.Lstat(path); err == nil {
		perm = fi.Mode().Perm()
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	p := &pendingFile{path: path, dir: dir}
	// Prefer an unnamed file (Linux O_TMPFILE): a crash, even SIGKILL, leaves nothing.
	f, unnamed := createUnnamed(dir, perm)
	if !unnamed {
		var err error
		if f, err = os.CreateTemp(dir, "."+base+".tmp*"); err != nil {
			return nil, p.fail("cannot create a temporary file", unwrapPath(err))
		}
		p.tmp = f.Name()
	}
	p.f = f
	ok := false
	defer func() { // an error or a panic in write leaves nothing
		if !ok {
			p.abort()
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		return nil, p.fail("write failed", err)
	}
	if err := bw.Flush(); err != nil {
		return nil, p.fail("write failed", unwrapPath(err))
	}
	if err := f.Chmod(perm); err != nil {
		return nil, p.fail("cannot set permissions", unwrapPath(err))
	}
	if err := f.Sync(); err != nil {
		return nil, p.fail("fsync failed", unwrapPath(err))
	}
	if !unnamed {
		if err := f.Close(); err != nil {
			return nil, p.fail("close failed", unwrapPath(err))
		}
	}
	ok = true
	return p, nil
}

// commit renames the written file into place and fsyncs the folder.
func (p *pendingFile) commit() error {
	if p.tmp == "" {
		if err := publishUnnamed(p.f, p.path); err != nil {
			return p.fail("cannot link the temporary file into place", err)
		}
		p.f.Close()
	} else if err := os.Rename(p.tmp, p.path); err != nil {
		return p.fail("cannot rename the temporary file into place", err)
	}
	p.done = true
	if err := syncDir(p.dir); err != nil {
		return p.fail("written, but fsync of the folder failed", err)
	}
	return nil
}

// abort drops a file that was not committed.
func (p *pendingFile) abort() {
	if p.done {
		return
	}
	p.done = true
	p.f.Close()
	if p.tmp != "" {
		os.Remove(p.tmp)
	}
}

// syncDir fsyncs a folder so a rename in it is durable. Systems and file systems that
// cannot fsync folders are not an error.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return unwrapPath(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return unwrapPath(err)
	}
	return nil
}

// readLimited reads r to its end, refusing inputs longer than max bytes without
// reading more than max+1 of them. hint, if positive, is the expected size.
func readLimited(r io.Reader, max int64, hint int64) ([]byte, error) {
	var buf bytes.Buffer
	if hint > 0 && hint <= max {
		buf.Grow(int(hint) + bytes.MinRead)
	}
	lr := r
	if max < 1<<62 {
		lr = io.LimitReader(r, max+1)
	}
	if _, err := buf.ReadFrom(lr); err != nil {
		return nil, &Error{Msg: "read failed: " + unwrapPath(err).Error(), Err: err}
	}
	if int64(buf.Len()) > max {
		return nil, tooLarge(max)
	}
	return buf.Bytes(), nil
}

func tooLarge(max int64) *Error {
	return &Error{Msg: fmt.Sprintf("input is larger than the limit of %d bytes", max)}
}

// unmarshal decodes b into m, keeping unknown fields. It turns a panic of the
// protobuf runtime into an *Error; none is known, this is a last line of defence.
func unmarshal(b []byte, m proto.Message) error {
	err := safely(func() error {
		return proto.UnmarshalOptions{}.Unmarshal(b, m)
	})
	if err != nil {
		if _, ok := err.(*Error); ok {
			return err
		}
		return &Error{Msg: "not a valid ONNX protobuf: " + err.Error(), Err: err}
	}
	return nil
}

// safely runs f, converting a panic into an *Error whose message starts with
// "internal error".
func safely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &Error{Msg: fmt.Sprintf("internal error: %v", r)}
		}
	}()
	return f()
}
