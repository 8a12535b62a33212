package main

import (
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/field"
)

// flagOf maps the library's option fields (qnas.Options and the fields lower packages
// name) to the flags that set them, so that errors and notes name what the user typed.
var flagOf = map[string]string{
	"Budget":                         "--budget",
	"CostModel":                      "--cost",
	"Target":                         "--target",
	"Resume":                         "--resume",
	"Options.Resume":                 "--resume",
	"QuantizeOptions.Epochs":         "--epochs",
	"OptimizeOptions.FineTuneEpochs": "--ft-epochs",
	"Epochs":                         "--epochs",
	"ArchSource":                     "--arch",
	"Arch":                           "--arch",
	"SearchEpochs":                   "--search-epochs",
	"Method":                         "--method",
	"OptimizeOptions.Method":         "--method",
	"SensitivityImages":              "--sensitivity-images",
	"FineTuneEpochs":                 "--ft-epochs",
	"FineTuneFrom":                   "--ft-from",
	"ArchLR":                         "--arch-lr",
	"InitLogits":                     "--init-logits",
	"OptimizeOptions.InitLogits":     "--init-logits",
	"InitSpread":                     "--init-spread",
	"Warmup":                         "--warmup",
	"Sampling":                       "--sampling",
	"OptimizeOptions.Sampling":       "--sampling",
	"WidthPrices":                    "--width-prices",
	"FinalCheck":                     "--final-check",
	"Seeds":                          "--seeds",
	"Data.Dir":                       "--data",
	"Data.Mean":                      "--mean",
	"Data.Std":                       "--std",
	"Data.LimitTrain":                "--limit-train",
	"Data.LimitTest":                 "--limit-test",
	"Training.Calib":                 "--calib",
	"Training.Batch":                 "--batch",
	"Training.LR":                    "--lr",
	"Training.Momentum":              "--momentum",
	"Training.WeightDecay":           "--wd",
	"Training.Distill":               "--distill",
	"Training.DistillTemp":           "--distill-temp",
	"Output.Path":                    "-o",
	"Output.Format":                  "--format",
	"Output.Pack":                    "--pack",
	"Output.IRVersion":               "--ir",
	"Output.Report":                  "--report",
	"Space.WBits":                    "--wbits",
	"Space.ABits":                    "--abits",
	"Space.Granularity":              "--granularity",
	"Space.Widths":                   "--widths",
	"LoaderOptions.BatchSize":        "--batch",
	"SearchOptions.WBits":            "--wbits",
	"SearchOptions.ABits":            "--abits",
	"SearchOptions.Widths":           "--widths",
}

// dottedField matches the dotted field names a message may mention besides its subject.
var dottedField = regexp.MustCompile(`\b[A-Z][A-Za-z]*\.[A-Z][A-Za-z]*\b`)

// renameFields returns a message of the library with every field it names renamed to its
// flag: the subject of err's field error, and dotted names elsewhere in the text.
func renameFields(err error) string {
	msg, _ := field.Rename(err, func(name string) string { return flagOf[name] })
	return renameDotted(msg)
}

func renameDotted(s string) string {
	return dottedField.ReplaceAllStringFunc(s, func(name string) string {
		if f, ok := flagOf[name]; ok {
			return f
		}
		return name
	})
}

// isOptionError reports whether err is a bad option (exit status 2).
func isOptionError(err error) bool {
	var fe *field.Error
	return errors.As(err, &fe)
}

// cliProgress shows a run's notes and progress bars on stderr.
type cliProgress struct{ w io.Writer }

func (p cliProgress) Note(line string) { fmt.Fprintln(p.w, "qnas: "+renameDotted(line)) }
func (p cliProgress) Bars() io.Writer  { return p.w }

// checkFloats refuses, as a usage error naming the flag, the first value outside its range.
func checkFloats(fs ...field.Float) error {
	if err := field.CheckFloats(fs...); err != nil {
		return usageError{err}
	}
	return nil
}

// parseNormFlag reads --mean or --std (nil when empty: the model's metadata decides).
func parseNormFlag(flag, s string, positive bool) ([]float32, error) {
	v, err := data.ParseValues(flag, s, positive)
	if err != nil {
		return nil, usageError{err}
	}
	return v, nil
}
