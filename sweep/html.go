package sweep

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// indexPage is index.html: one page that needs nothing but itself (the PNGs inline, no
// network) with the plots, the tables, the time per phase and each point's command.
func indexPage(plan *Plan, res *Result, done []finished) ([]byte, error) {
	img := func(stem string) (template.URL, error) {
		b, err := os.ReadFile(filepath.Join(plan.Dir(), stem+".png"))
		if err != nil {
			return "", err
		}
		return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(b)), nil
	}
	type bitMap struct {
		Budget string
		Stem   string
		Src    template.URL
	}
	page := struct {
		Res      *Result
		Name     string
		Pareto   template.URL
		BitMaps  []bitMap
		Phases   phaseTable
		Commands []string
	}{Res: res, Name: filepath.Base(plan.Model)}
	var err error
	if page.Pareto, err = img(ParetoName); err != nil {
		return nil, err
	}
	for _, br := range res.Budgets {
		src, err := img(br.BitMap)
		if err != nil {
			return nil, err
		}
		page.BitMaps = append(page.BitMaps, bitMap{Budget: formatFloat(br.Budget), Stem: br.BitMap, Src: src})
	}
	page.Phases = phases(done)
	for _, pt := range plan.Points {
		page.Commands = append(page.Commands, shellCommand(plan.Command(pt)))
	}
	var buf bytes.Buffer
	if err := indexTemplate.Execute(&buf, page); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// phaseTable is the seconds each finished point spent per phase, phases in the order they
// first appear.
type phaseTable struct {
	Names  []string
	Rows   []phaseRow
	Totals []string
	Total  string
}

type phaseRow struct {
	Point string
	Cells []string
	Total string
}

func phases(done []finished) phaseTable {
	var t phaseTable
	col := map[string]int{}
	for _, d := range done {
		for _, ph := range d.rep.Phases {
			if _, ok := col[ph.Name]; !ok {
				col[ph.Name] = len(t.Names)
				t.Names = append(t.Names, ph.Name)
			}
		}
	}
	sums := make([]float64, len(t.Names))
	var all float64
	for _, d := range done {
		secs := make([]float64, len(t.Names))
		var total float64
		for _, ph := range d.rep.Phases {
			secs[col[ph.Name]] += ph.Seconds
			total += ph.Seconds
		}
		row := phaseRow{Point: d.Name, Total: duration(total)}
		for i, s := range secs {
			row.Cells = append(row.Cells, duration(s))
			sums[i] += s
		}
		all += total
		t.Rows = append(t.Rows, row)
	}
	for _, s := range sums {
		t.Totals = append(t.Totals, duration(s))
	}
	t.Total = duration(all)
	return t
}

// duration formats seconds as 0.42 s, 12.3 s, 4:05 or 1:02:03.
func duration(s float64) string {
	switch {
	case s == 0:
		return ""
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	case s < 60:
		return fmt.Sprintf("%.1f s", s)
	}
	n := int(s + 0.5)
	if n >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", n/3600, n/60%60, n%60)
	}
	return fmt.Sprintf("%d:%02d", n/60, n%60)
}

var plainArg = regexp.MustCompile(`^[A-Za-z0-9_./:=,+@%-]+$`)

// shellCommand writes argv as a POSIX shell command line.
func shellCommand(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		if plainArg.MatchString(a) {
			parts[i] = a
		} else {
			parts[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(parts, " ")
}

var indexTemplate = template.Must(template.New("index").Funcs(template.FuncMap{
	"pct":   func(v float64) string { return fmt.Sprintf("%.2f", 100*v) },
	"pctp":  func(v *float64) string { return fmt.Sprintf("%+.2f", 100*(*v)) },
	"pctv":  func(v *float64) string { return fmt.Sprintf("%.2f", 100*(*v)) },
	"ratio": func(v float64) string { return fmt.Sprintf("%.4f", v) },
	"num":   func(v float64) string { return fmt.Sprintf("%.4g", v) },
	"g":     formatFloat,
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>qnas sweep: {{.Name}}</title>
<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 1180px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.6em; white-space: pre-wrap; font-size: 0.8em; }
.note { color: #666; font-size: 0.85em; }
</style>
</head>
<body>
<h1>qnas sweep of {{.Name}}</h1>
<p>Model <code>{{.Res.Model}}</code>; cost model {{.Res.CostModel}}, the model at w8a8 costs {{num .Res.ReferenceCost}} {{.Res.CostUnit}};
float accuracy {{pct .Res.FloatAccuracy}}%. {{.Res.Finished}} of {{.Res.Points}} points finished{{if .Res.Missing}} (missing:
{{range $i, $m := .Res.Missing}}{{if $i}}, {{end}}{{$m}}{{end}}){{end}}.</p>

<h2>Accuracy against cost</h2>
<p><img src="{{.Pareto}}" alt="Pareto plot"><br><span class="note">Also as <a href="pareto.svg">pareto.svg</a>.
Searched models: mean over seeds with ± one standard deviation; uniform models labelled wXaY with their frontier
(linear in cost between them); the dashed line is the float model.</span></p>

<h2>Budgets</h2>
<table>
<tr><th>budget</th><th>seeds</th><th>cost ratio</th><th>accuracy %</th><th>± std</th><th>uniform frontier at budget %</th><th>searched − frontier</th><th class="l">note</th></tr>
{{range .Res.Budgets}}<tr><td>{{g .Budget}}</td><td>{{.Seeds}}</td><td>{{ratio .CostRatio}}</td><td>{{pct .Accuracy}}</td><td>{{pct .AccuracyStd}}</td>
<td>{{if .FrontierAtBudget}}{{pctv .FrontierAtBudget}}{{end}}</td><td>{{if .MixedMinusFrontier}}{{pctp .MixedMinusFrontier}}{{end}}</td><td class="l">{{.FrontierNote}}</td></tr>
{{end}}</table>

<h2>Bits per layer</h2>
{{range .BitMaps}}<p><img src="{{.Src}}" alt="bit map at budget {{.Budget}}"><br><span class="note">Also as <a href="{{.Stem}}.svg">{{.Stem}}.svg</a>.</span></p>
{{end}}
<h2>Models</h2>
<table>
<tr><th class="l">kind</th><th>budget</th><th>bits</th><th>seed</th><th>cost ratio</th><th>cost ({{.Res.CostUnit}})</th><th>MACs</th><th>weight bytes</th><th>accuracy %</th><th class="l">model</th></tr>
{{range .Res.Rows}}<tr><td class="l">{{.Kind}}</td><td>{{if .Budget}}{{g .Budget}}{{end}}</td><td>{{if .WBits}}w{{.WBits}}a{{.ABits}}{{end}}</td><td>{{.Seed}}</td>
<td>{{ratio .CostRatio}}</td><td>{{num .Cost}}</td><td>{{.MACs}}</td><td>{{.WeightBytes}}</td><td>{{pct .Accuracy}}</td><td class="l"><a href="{{.Path}}">{{.Path}}</a></td></tr>
{{end}}</table>
<p class="note">The same rows are in <a href="sweep.csv">sweep.csv</a> and <a href="sweep.json">sweep.json</a>.</p>

<h2>Time per phase</h2>
<table>
<tr><th class="l">point</th>{{range .Phases.Names}}<th>{{.}}</th>{{end}}<th>total</th></tr>
{{range .Phases.Rows}}<tr><td class="l">{{.Point}}</td>{{range .Cells}}<td>{{.}}</td>{{end}}<td>{{.Total}}</td></tr>
{{end}}<tr><th class="l">all points</th>{{range .Phases.Totals}}<th>{{.}}</th>{{end}}<th>{{.Phases.Total}}</th></tr>
</table>

<h2>Commands</h2>
<p class="note">Each point on its own (what the sweep runs for it):</p>
<pre>{{range $i, $c := .Commands}}{{if $i}}
{{end}}qnas {{$c}}
{{end}}</pre>
{{if .Res.Warnings}}<h2>Warnings</h2>
<ul>{{range .Res.Warnings}}<li>{{.}}</li>{{end}}</ul>{{end}}
</body>
</html>
`))
