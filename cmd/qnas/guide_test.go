package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qnas/qnas/internal/blas"
	"github.com/qnas/qnas/internal/data"
	"github.com/qnas/qnas/internal/ortrun"
	"github.com/qnas/qnas/internal/testenv"
)

// TestGuide runs docs/guide.md: every qnas command it shows, in order, in one temporary
// folder, so that later commands read what earlier ones wrote. The guide's conventions,
// which this test enforces (the guide states them in its last section):
//
//   - ```sh blocks hold qnas commands only (a trailing \ continues a line), comments and
//     blank lines; anything else in them fails the test, so no command is skipped silently.
//   - A ```text block right after a ```sh block (nothing but blank lines between) is output
//     of that block's last command: each line must occur in its stdout, in order, with any
//     number standing for any number and runs of spaces for any spaces; "…" lines are
//     left-out lines.
//   - ```shell blocks hold the commands this test does not run; each must be a key of
//     notRunHere, whose value says what runs it.
//   - The ```go block must occur verbatim in guide_ort_test.go, which compiles it and runs
//     it on the model the commands wrote (without cgo or ONNX Runtime that part skips, as
//     every ONNX Runtime test does). ```python, ```cpp and ```json blocks are not run: no
//     Python ONNX Runtime or C++ headers here.
//   - A fence with another language, or none, fails the test.
//   - The backquoted names in the first column of section 5's tables must be fields of the
//     reports the commands wrote (--report), and every field of those reports and of their
//     layers must be named there.
//
// The commands run as in the repository root: the files under testdata/ they name are
// copied into the folder first. The inputs the guide asks the reader to bring are made by
// guideInputs. With -short, and in the pure-Go build, only the guide's structure is
// checked.
func TestGuide(t *testing.T) {
	blocks := readGuide(t)
	var cmds []guideCommand
	outputs := map[int]guideBlock{} // command index → the output it must print
	shown := map[string]bool{}      // commands of ```shell blocks
	var goBlocks []string
	for i, b := range blocks {
		switch b.lang {
		case "sh":
			cs, err := shCommands(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) == 0 {
				t.Fatalf("docs/guide.md:%d: a sh block without a command", b.line)
			}
			cmds = append(cmds, cs...)
		case "text":
			if i > 0 && blocks[i-1].lang == "sh" && b.follows {
				outputs[len(cmds)-1] = b
			}
		case "shell":
			for _, c := range joinLines(b.body) {
				if _, ok := notRunHere[c.text]; !ok {
					t.Errorf("docs/guide.md:%d: %q is shown but not run: run it in a sh block (if it is a qnas command) or add it to notRunHere with what runs it", c.line+b.line, c.text)
				}
				shown[c.text] = true
			}
		case "go":
			goBlocks = append(goBlocks, strings.Join(b.body, "\n")+"\n")
		case "python", "cpp", "json":
		default:
			t.Errorf("docs/guide.md:%d: fence language %q: want sh, text, shell, go, python, cpp or json", b.line, b.lang)
		}
	}
	for c := range notRunHere {
		if !shown[c] {
			t.Errorf("notRunHere lists %q, which docs/guide.md no longer shows", c)
		}
	}
	checkGoBlocks(t, goBlocks)
	for name := range guideInputs {
		if !slices.ContainsFunc(cmds, func(c guideCommand) bool { return slices.Contains(c.args, name) }) {
			t.Errorf("guideInputs makes %s, which no command of docs/guide.md reads", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if testing.Short() {
		t.Skipf("runs the guide's %d commands (training included)", len(cmds))
	}
	if blas.Name() != "openblas" {
		// The pure-Go build (CI's purego suite) did not finish them in 10 minutes on the busy
		// 2-core machine (over 3 min of CPU, against 71 s in the default build): too long for
		// the suite, for no behaviour of the commands of its own.
		t.Skipf("the guide's commands run in the default build; this one multiplies matrices with %s", blas.Name())
	}

	dir := t.TempDir()
	for _, c := range cmds {
		for _, a := range c.args {
			if strings.HasPrefix(a, "testdata/") {
				copyRepoFile(t, dir, a)
			}
		}
	}
	for name, prepare := range guideInputs {
		prepare(t, filepath.Join(dir, name))
	}
	var reports []string
	start := time.Now()
	for i, c := range cmds {
		t0 := time.Now()
		cmd := qnasCmd(c.args...)
		cmd.Dir = dir
		if !filepath.IsAbs(cmd.Path) {
			cmd.Path, _ = filepath.Abs(cmd.Path)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("docs/guide.md:%d: %s: %v\nstdout:\n%s\nstderr:\n%s", c.line, c.text, err, stdout.String(), lastLines(stderr.String(), 20))
		}
		t.Logf("%5.1fs  docs/guide.md:%d: %s", time.Since(t0).Seconds(), c.line, c.text)
		if b, ok := outputs[i]; ok {
			if err := matchOutput(b.body, stdout.String()); err != nil {
				t.Errorf("docs/guide.md:%d: the output shown for %s: %v\nstdout:\n%s", b.line, c.text, err, stdout.String())
			}
		}
		if k := slices.Index(c.args, "--report"); k >= 0 && k+1 < len(c.args) {
			reports = append(reports, filepath.Join(dir, c.args[k+1]))
		}
	}
	t.Logf("%d commands in %.1fs", len(cmds), time.Since(start).Seconds())
	checkReportFields(t, reports)
	t.Run("go", func(t *testing.T) {
		ortrun.RequireORT(t)
		guideDeploy(t, dir)
	})
}

// notRunHere are the commands the guide shows in ```shell blocks, and what runs them.
var notRunHere = map[string]string{
	"scripts/deps.sh build":                          "scripts/test.sh (CI, .ci/run) runs scripts/deps.sh test, which installs these packages and those of the tests",
	"go build ./cmd/qnas":                            "scripts/test.sh (CI) builds cmd/qnas this way in go vet ./... and go test ./...; scripts/demo.sh builds it with -o",
	"CGO_ENABLED=0 go build -tags purego ./cmd/qnas": "scripts/test.sh (CI): CGO_ENABLED=0 go test -tags purego ./... builds and tests it",
	"./scripts/test.sh":                              "CI (.ci/run)",
	"./scripts/demo.sh":                              "nothing in CI: run by hand (its qnas optimize is section 2's on ResNet-20 with the default schedule)",
	"r8-cluster/submit.sh":                           "scripts/slurm_test.sh, run by hand as root (not in CI): it submits the submit.sh of a sweep emitted the same way to a real Slurm",
}

// guideInputs make the files the guide asks the reader to bring.
var guideInputs = map[string]func(t *testing.T, path string){
	// A model as PyTorch exports it by default: BatchNorm folded into the convolutions.
	"model.onnx": func(t *testing.T, path string) {
		b, err := os.ReadFile(testenv.Path("testdata", "models", "resnet8.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	},
	// An image folder: every second image of the built-in Fashion-MNIST subset, as PNG.
	"mydata": writeImageFolder,
}

// fashionClasses name the image folder's class folders so that they sort in label order.
var fashionClasses = []string{"0-tshirt", "1-trouser", "2-pullover", "3-dress", "4-coat",
	"5-sandal", "6-shirt", "7-sneaker", "8-bag", "9-boot"}

// writeImageFolder writes every second image of both splits of the built-in data as
// DIR/train/<class>/N.png and DIR/test/<class>/N.png (2 000 and 500 images).
func writeImageFolder(t *testing.T, dir string) {
	for _, split := range []data.Split{data.Train, data.Test} {
		d, err := data.Embedded(split)
		if err != nil {
			t.Fatal(err)
		}
		size := d.SampleSize()
		for i := 0; i < d.N; i += 2 {
			folder := filepath.Join(dir, split.String(), fashionClasses[d.Labels[i]])
			if err := os.MkdirAll(folder, 0o755); err != nil {
				t.Fatal(err)
			}
			img := &image.Gray{Pix: d.Pixels[i*size : (i+1)*size], Stride: d.W, Rect: image.Rect(0, 0, d.W, d.H)}
			var b bytes.Buffer
			if err := png.Encode(&b, img); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(folder, fmt.Sprintf("%04d.png", i)), b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// guideDeploy runs the guide's Go block on the models in dir (set by guide_ort_test.go
// where cgo builds it).
var guideDeploy func(t *testing.T, dir string)

// guideBlock is a fenced block of docs/guide.md.
type guideBlock struct {
	lang    string
	line    int // of the opening fence
	body    []string
	follows bool // only blank lines between the previous block's end and this one
}

// guideCommand is a command line of a block: its words, and where it starts.
type guideCommand struct {
	line int
	text string
	args []string // without "qnas"
}

func readGuide(t *testing.T) []guideBlock {
	t.Helper()
	b, err := os.ReadFile(testenv.Path("docs", "guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []guideBlock
	var cur *guideBlock
	follows := false
	for i, line := range strings.Split(string(b), "\n") {
		if cur != nil {
			if strings.TrimSpace(line) == "```" {
				blocks = append(blocks, *cur)
				cur, follows = nil, true
			} else {
				cur.body = append(cur.body, line)
			}
			continue
		}
		if lang, ok := strings.CutPrefix(line, "```"); ok {
			cur = &guideBlock{lang: strings.TrimSpace(lang), line: i + 1, follows: follows}
			continue
		}
		if strings.TrimSpace(line) != "" {
			follows = false
		}
	}
	if cur != nil {
		t.Fatalf("docs/guide.md:%d: the block is not closed", cur.line)
	}
	return blocks
}

// joinLines returns the command lines of a block body: continuations (a trailing \)
// joined, comment and blank lines dropped; line is relative to the fence.
func joinLines(body []string) []guideCommand {
	var out []guideCommand
	var cur *guideCommand
	for i, line := range body {
		s := strings.TrimSpace(line)
		if cur == nil && (s == "" || strings.HasPrefix(s, "#")) {
			continue
		}
		if cur == nil {
			cur = &guideCommand{line: i + 1}
		}
		s, more := strings.CutSuffix(s, `\`)
		cur.text = strings.TrimSpace(cur.text + " " + strings.TrimSpace(s))
		if !more {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out
}

// shellSyntax is what a command of a sh block may not contain: the test runs its words
// as they are, without a shell.
var shellSyntax = regexp.MustCompile("[\"'`$*?~|&;<>(){}\\[\\]!#\\\\]")

// shCommands returns the qnas commands of a sh block, or an error naming a line that is
// not one.
func shCommands(b guideBlock) ([]guideCommand, error) {
	cmds := joinLines(b.body)
	for i := range cmds {
		c := &cmds[i]
		c.line += b.line
		words := strings.Fields(c.text)
		if words[0] != "qnas" {
			return nil, fmt.Errorf("docs/guide.md:%d: %q in a sh block is not a qnas command (sh blocks are run; show other commands in a shell block)", c.line, c.text)
		}
		if shellSyntax.MatchString(c.text) {
			return nil, fmt.Errorf("docs/guide.md:%d: %q needs a shell (quotes, variables, globs, redirections or comments): the test runs plain words", c.line, c.text)
		}
		c.args = words[1:]
	}
	return cmds, nil
}

// number is a number as the commands print them: 93.20, 9,345,920, -6.36.
const number = `[-+]?[0-9]+(?:[.,][0-9]+)*`

var numberRe = regexp.MustCompile(number)

// outputPattern turns a line of shown output into a pattern of a printed line: numbers
// stand for any number, runs of spaces for any spaces.
func outputPattern(line string) *regexp.Regexp {
	line = strings.Join(strings.Fields(line), " ")
	var b strings.Builder
	last := 0
	for _, m := range numberRe.FindAllStringIndex(line, -1) {
		b.WriteString(regexp.QuoteMeta(line[last:m[0]]))
		b.WriteString(number)
		last = m[1]
	}
	b.WriteString(regexp.QuoteMeta(line[last:]))
	return regexp.MustCompile("^" + b.String() + "$")
}

// matchOutput checks that every shown line occurs in got, in order.
func matchOutput(shown []string, got string) error {
	var lines []string
	for _, l := range strings.Split(got, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	i := 0
	for _, s := range shown {
		if s = strings.TrimSpace(s); s == "" || s == "…" {
			continue
		}
		re := outputPattern(s)
		for i < len(lines) && !re.MatchString(lines[i]) {
			i++
		}
		if i == len(lines) {
			return fmt.Errorf("no line matches %q (after the lines matched before it)", s)
		}
		i++
	}
	return nil
}

// checkGoBlocks checks that the guide's Go code is the code guide_ort_test.go compiles.
func checkGoBlocks(t *testing.T, blocks []string) {
	t.Helper()
	if len(blocks) != 1 {
		t.Errorf("docs/guide.md has %d go blocks; guide_ort_test.go holds one", len(blocks))
		return
	}
	src, err := os.ReadFile("guide_ort_test.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), blocks[0]) {
		t.Errorf("the go block of docs/guide.md is not in guide_ort_test.go, which compiles and runs it: copy it there verbatim")
	}
}

// backquoted finds `name` in a table cell.
var backquoted = regexp.MustCompile("`([a-z_0-9]+)`")

// checkReportFields compares the fields section 5 names with the reports' fields.
func checkReportFields(t *testing.T, reports []string) {
	t.Helper()
	b, err := os.ReadFile(testenv.Path("docs", "guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## 5. Reading the report\n")
	if !ok {
		t.Fatal(`docs/guide.md has no section "## 5. Reading the report"`)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	named := map[string]bool{}
	for _, line := range strings.Split(sec, "\n") {
		if cells := strings.Split(line, "|"); len(cells) > 2 && strings.HasPrefix(line, "|") {
			for _, m := range backquoted.FindAllStringSubmatch(cells[1], -1) {
				named[m[1]] = true
			}
		}
	}
	if len(reports) < 2 {
		t.Fatalf("the guide's commands wrote %d reports; section 5 describes quantize's and optimize's", len(reports))
	}
	anywhere := map[string]bool{}
	for _, path := range reports {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var top map[string]any
		if err := json.Unmarshal(raw, &top); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		collectKeys(top, anywhere)
		layers, _ := top["layers"].([]any)
		if len(layers) == 0 {
			t.Errorf("%s: no layers", filepath.Base(path))
		}
		for _, obj := range append([]any{top}, layers...) {
			for k := range obj.(map[string]any) {
				if !named[k] {
					t.Errorf("%s has the field %q, which section 5 of docs/guide.md does not describe", filepath.Base(path), k)
				}
			}
		}
	}
	for k := range named {
		if !anywhere[k] && !rareFields[k] {
			t.Errorf("section 5 of docs/guide.md describes %q, which no report of the guide's commands has", k)
		}
	}
}

// rareFields are fields section 5 describes that the guide's runs do not produce.
var rareFields = map[string]bool{
	"saturated_biases": true, // only when an integer bias had to be clamped to int32
	"sensitivity":      true, // only with optimize --method sensitivity
	"pow2_scales":      true, // only with --pow2-scales
}

// collectKeys adds the keys of every object in v to keys.
func collectKeys(v any, keys map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			keys[k] = true
			collectKeys(x, keys)
		}
	case []any:
		for _, x := range v {
			collectKeys(x, keys)
		}
	}
}

// copyRepoFile copies the repository's file rel to the same relative path under dir.
func copyRepoFile(t *testing.T, dir, rel string) {
	t.Helper()
	b, err := os.ReadFile(testenv.Path(filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("a command of docs/guide.md reads %s: %v", rel, err)
	}
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
