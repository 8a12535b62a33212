// Package ckpt reads and writes the checkpoint files of long runs: a header naming the
// kind of run, every setting the saved state depends on, and the state's length and
// SHA-256; then the state itself (gob). The header is read alone and compared first, so
// a foreign file, a checkpoint of another run, a truncated one or one claiming a huge
// state is refused before any of its state is decoded.
package ckpt

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/qnas/qnas/onnxio"
)

// magic starts every checkpoint file; a little-endian uint32 header length follows.
const magic = "qnas checkpoint\n"

// MaxHeaderBytes bounds the header (the settings), checked before it is read.
const MaxHeaderBytes = 1 << 20

// Setting is one named value a checkpoint must match to be resumed.
type Setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Settings are the values a run's state depends on, in a fixed order.
type Settings []Setting

// Unknown is a setting's value that is not known yet: comparisons skip it.
const Unknown = "\x00unknown"

// Add appends a setting, formatting its value with fmt.Sprint.
func (s *Settings) Add(name string, value any) { *s = append(*s, Setting{name, fmt.Sprint(value)}) }

// Header is what a checkpoint says about itself.
type Header struct {
	Kind     string   `json:"kind"`    // the kind of run: "training", "search"
	Version  int      `json:"version"` // the layout of that kind's state
	Settings Settings `json:"settings"`
	// StateBytes and StateSHA256 describe the state that follows the header (set by Write).
	StateBytes  int64  `json:"state_bytes"`
	StateSHA256 string `json:"state_sha256"`
}

// Write saves a checkpoint atomically (onnxio.WriteFileAtomic): the header h, then state
// encoded with gob.
func Write(path string, h Header, state any) error {
	var body bytes.Buffer
	if err := gob.NewEncoder(&body).Encode(state); err != nil {
		return err
	}
	sum := sha256.Sum256(body.Bytes())
	h.StateBytes, h.StateSHA256 = int64(body.Len()), hex.EncodeToString(sum[:])
	hb, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return onnxio.WriteFileAtomic(path, func(w io.Writer) error {
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(len(hb)))
		for _, b := range [][]byte{[]byte(magic), n[:], hb, body.Bytes()} {
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// open opens a checkpoint for reading; only a regular file is opened (a FIFO would
// block, a device never end).
func open(path string) (*os.File, os.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file, so not a qnas checkpoint", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, unwrap(err))
	}
	return f, fi, nil
}

// ReadHeader reads only the header of the checkpoint at path, and checks that the file
// holds as many bytes of state as the header says. Errors name the file.
func ReadHeader(path string) (*Header, error) {
	f, fi, err := open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, _, err := readHeader(f, fi.Size(), path)
	return h, err
}

func readHeader(f io.Reader, size int64, path string) (*Header, *bufio.Reader, error) {
	r := bufio.NewReader(f)
	head := make([]byte, len(magic)+4)
	if _, err := io.ReadFull(r, head); err != nil || string(head[:len(magic)]) != magic {
		return nil, nil, fmt.Errorf("%s: not a qnas checkpoint", path)
	}
	n := int64(binary.LittleEndian.Uint32(head[len(magic):]))
	if n > MaxHeaderBytes || n > size {
		return nil, nil, fmt.Errorf("%s: checkpoint header of %d bytes (the file has %d; the limit is %d)", path, n, size, MaxHeaderBytes)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, nil, fmt.Errorf("%s: truncated checkpoint header", path)
	}
	var h Header
	if err := json.Unmarshal(hb, &h); err != nil || h.Kind == "" {
		return nil, nil, fmt.Errorf("%s: damaged checkpoint header", path)
	}
	if want := int64(len(head)) + n + h.StateBytes; h.StateBytes < 0 || size != want {
		return nil, nil, fmt.Errorf("%s: the file has %d bytes, its header promises %d (truncated or damaged)", path, size, want)
	}
	return &h, r, nil
}

// Value returns the value of the setting named name, or "" when the header has none.
func (h *Header) Value(name string) string {
	for _, s := range h.Settings {
		if s.Name == name {
			return s.Value
		}
	}
	return ""
}

// Match checks a header against the kind, version and settings of the run that wants to
// resume it; the error names the file and the first setting that differs.
func (h *Header) Match(path string, want Header) error {
	if h.Kind != want.Kind {
		return fmt.Errorf("%s holds the state of a %s run, not of a %s run", path, h.Kind, want.Kind)
	}
	if h.Version != want.Version {
		return fmt.Errorf("%s: %s checkpoint version %d, this qnas reads %d", path, h.Kind, h.Version, want.Version)
	}
	if d := FirstDifference(h.Settings, want.Settings); d != "" {
		return fmt.Errorf("%s was saved by another run: %s (resume with the same model, data and settings, or start afresh)", path, d)
	}
	return nil
}

// FirstDifference describes the first setting in which saved and now differ, or returns
// "" when they are equal.
func FirstDifference(saved, now Settings) string {
	has := func(s Settings, name string) bool {
		for _, x := range s {
			if x.Name == name {
				return true
			}
		}
		return false
	}
	for i := 0; i < max(len(saved), len(now)); i++ {
		switch {
		case i < len(now) && (i >= len(saved) || saved[i].Name != now[i].Name && !has(saved, now[i].Name)):
			return fmt.Sprintf("it does not record %s (now %s)", now[i].Name, short(now[i].Value))
		case i >= len(now) || saved[i].Name != now[i].Name:
			return fmt.Sprintf("it records %s, which this run does not have", saved[i].Name)
		case saved[i].Value != now[i].Value && now[i].Value != Unknown:
			return fmt.Sprintf("%s was %s, now %s", now[i].Name, short(saved[i].Value), short(now[i].Value))
		}
	}
	return ""
}

// short keeps a value printable on one line.
func short(v string) string {
	v = strings.Join(strings.Fields(v), " ")
	if len(v) > 120 {
		v = v[:117] + "…"
	}
	if v == "" {
		return `""`
	}
	return v
}

// Check checks, before any work, that the checkpoint at path can be resumed by the run
// described by want: its header matches, and its state is complete (length and SHA-256;
// it reads the file but decodes nothing). The error names the file.
func Check(path string, want Header) error {
	f, fi, err := open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, r, err := readHeader(f, fi.Size(), path)
	if err != nil {
		return err
	}
	if err := h.Match(path, want); err != nil {
		return err
	}
	hash := sha256.New()
	if _, err := io.Copy(hash, r); err != nil {
		return fmt.Errorf("%s: %w", path, unwrap(err))
	}
	if hex.EncodeToString(hash.Sum(nil)) != h.StateSHA256 {
		return fmt.Errorf("%s: damaged checkpoint state (its SHA-256 differs from the header's)", path)
	}
	return nil
}

// Read restores the checkpoint at path into state (a pointer to the type Write was given)
// after checking its header against want. maxState bounds the encoded state: a header
// promising more is refused before the state is read. Errors name the file.
func Read(path string, want Header, maxState int64, state any) (err error) {
	f, fi, err := open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, r, err := readHeader(f, fi.Size(), path)
	if err != nil {
		return err
	}
	if err := h.Match(path, want); err != nil {
		return err
	}
	if h.StateBytes > maxState {
		return fmt.Errorf("%s: a state of %d bytes is more than this run holds (%d)", path, h.StateBytes, maxState)
	}
	body := make([]byte, h.StateBytes)
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("%s: truncated checkpoint state", path)
	}
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != h.StateSHA256 {
		return fmt.Errorf("%s: damaged checkpoint state (its SHA-256 differs from the header's)", path)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: damaged checkpoint state (%v)", path, p)
		}
	}()
	if err := gob.NewDecoder(bytes.NewReader(body)).Decode(state); err != nil {
		return fmt.Errorf("%s: damaged checkpoint state: %v", path, err)
	}
	return nil
}

// unwrap drops the *os.PathError around err (the caller names the file).
func unwrap(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// StateBound is a generous bound on the gob encoding of n float32 values spread over
// named tensors: the maxState to pass to Read.
func StateBound(floats int64) int64 { return 10*floats + 1<<20 }

// HashBytes returns a short SHA-256 of b, as checkpoint settings record content.
func HashBytes(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])[:16]
}

// FileHash returns a short SHA-256 of a file's content, which checkpoints record of the
// model they were made from.
func FileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Remove deletes a finished run's checkpoint, and only a file that is one.
func Remove(path string) {
	if path == "" {
		return
	}
	if _, err := ReadHeader(path); err == nil {
		os.Remove(path)
	}
}

// Left reports whether a regular file is at path: a checkpoint an earlier run left, which
// a run starting afresh replaces.
func Left(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().IsRegular()
}
