package qnas

import (
	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/graph"
	"github.com/qnas/qnas/internal/field"
)

// Export reads a model qnas wrote (QDQ, packed QDQ or QONNX: the file holds its weights,
// scales, clips and the bits of every layer, which it checks against the graph) and writes
// it again as out says, with its sidecars (out.Report is not used).
func Export(model string, out Output, opts ExportOptions) (export.Files, error) {
	out.Report = ""
	if out.Path == "" {
		return export.Files{}, field.Errorf("Output.Path", " is required")
	}
	if err := out.check(); err != nil {
		return export.Files{}, err
	}
	o := &Options{Output: out, Import: opts.Import}
	s := &session{o: o, model: model}
	if err := s.checkFiles(); err != nil {
		return export.Files{}, err
	}
	m, err := ReadModel(model, opts)
	if err != nil {
		return export.Files{}, err
	}
	return m.Write(out.Path, model, export.WriteOptions{Format: out.Format, Pack: out.Pack, IRVersion: out.IRVersion, ProducerVersion: o.producer()})
}

// ExportOptions are the settings of Export and ReadModel.
type ExportOptions struct {
	Import graph.ImportOptions // bounds on the file read; the zero value keeps the defaults
}

// ReadModel reads a model qnas wrote, checking the metadata it holds (the bits, scales and
// kept filters of every layer, the architecture) against its graph; the architecture it
// applies is Model.Arch, a qnas.arch/1 document.
func ReadModel(model string, opts ExportOptions) (*export.Model, error) {
	return export.Read(model, opts.Import)
}
