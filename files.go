package qnas

import (
	"github.com/qnas/qnas/export"
	"github.com/qnas/qnas/internal/outputs"
)

// namedFile is a path and its role in the run: the option that names it.
type namedFile struct{ role, path string }

// addOutput adds the model an Output writes, its sidecars, its report and the report's bit
// map.
func addOutput(f *outputs.Files, o Output) {
	if o.Path != "" {
		out := export.OutputFiles(o.Path)
		f.Write("Output.Path", out.Model)
		f.Write("the encodings sidecar", out.Encodings)
		f.Write("the architecture sidecar", out.Arch)
	}
	f.Write("Output.Report", o.Report)
	if o.Report != "" {
		f.Write("the report's bit map", BitMapPath(o.Report))
	}
}
