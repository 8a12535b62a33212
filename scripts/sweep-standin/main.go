// Command sweep-standin stands in for `qnas sweep` until the command exists, so that the
// sweep package and its Slurm jobs can be tested on real points now: it parses the sweep
// command line (a subset of its flags), and runs each point as a child `qnas optimize` or
// `qnas quantize` process (the qnas binary beside this one, or --qnas), exactly the command
// line the plan records for it. Everything else is the sweep package: the plan, --jobs,
// the Slurm files, the merge. scripts/slurm_test.sh uses it; `qnas sweep` replaces it.
//
//	sweep-standin sweep MODEL --budgets 0.125,0.25 [--seeds N] [--seed S] [--uniform 4:4,..]
//	    [--data D --mean M --std S --limit-train N --search-epochs N --ft-epochs N]
//	    -o SWEEPDIR [--jobs N --threads N | --emit slurm --slurm-cpus N --slurm-mem M ...]
//	sweep-standin sweep --point K [--threads N] -o SWEEPDIR
//	sweep-standin sweep merge SWEEPDIR
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/qnas/qnas/sweep"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sweep-standin:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 || args[0] != "sweep" {
		return fmt.Errorf("usage: sweep-standin sweep ... (see the source)")
	}
	args = args[1:]
	if len(args) == 2 && args[0] == "merge" {
		res, err := sweep.Merge(args[1])
		if err != nil {
			return err
		}
		fmt.Printf("merged %d of %d points into %s\n", res.Finished, res.Points, args[1])
		return nil
	}
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	var (
		out, budgets, uniform, emit, qnas                 string
		seeds, jobs, threads, point                       int
		seed                                              uint64
		data, mean, std, limitTrain, searchEp, ftEp       string
		slurmCPUs, slurmParallel                          int
		slurmMem, slurmTime, slurmPartition, slurmAccount string
	)
	fs.StringVar(&out, "o", "", "SWEEPDIR")
	fs.StringVar(&budgets, "budgets", "", "cost ratios")
	fs.IntVar(&seeds, "seeds", 1, "seeds per point")
	fs.Uint64Var(&seed, "seed", 0, "first seed")
	fs.StringVar(&uniform, "uniform", "", "uniform baselines W:A,...")
	fs.StringVar(&data, "data", "", "")
	fs.StringVar(&mean, "mean", "", "")
	fs.StringVar(&std, "std", "", "")
	fs.StringVar(&limitTrain, "limit-train", "", "")
	fs.StringVar(&searchEp, "search-epochs", "", "")
	fs.StringVar(&ftEp, "ft-epochs", "", "")
	fs.IntVar(&jobs, "jobs", 1, "points at once")
	fs.IntVar(&threads, "threads", 2, "threads in all (split between --jobs)")
	fs.IntVar(&point, "point", -1, "run only point K")
	fs.StringVar(&emit, "emit", "", "slurm: write the Slurm jobs instead of running")
	fs.StringVar(&qnas, "qnas", "", "the qnas binary (default: beside this one)")
	fs.IntVar(&slurmCPUs, "slurm-cpus", 2, "")
	fs.IntVar(&slurmParallel, "slurm-parallel", 0, "")
	fs.StringVar(&slurmMem, "slurm-mem", "", "")
	fs.StringVar(&slurmTime, "slurm-time", "", "")
	fs.StringVar(&slurmPartition, "slurm-partition", "", "")
	fs.StringVar(&slurmAccount, "slurm-account", "", "")
	model := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		model, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if out == "" {
		return fmt.Errorf("-o SWEEPDIR is required")
	}
	if qnas == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		qnas = filepath.Join(filepath.Dir(self), "qnas")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runPoint := execRunner(qnas, threads/max(jobs, 1))

	if point >= 0 {
		plan, err := sweep.Load(out)
		if err != nil {
			return err
		}
		ran, err := sweep.RunPoint(ctx, plan, point, runPoint)
		if err == nil && !ran {
			fmt.Printf("point %d has finished before\n", point)
		}
		return err
	}
	bs, err := sweep.ParseBudgets(budgets)
	if err != nil {
		return err
	}
	spec := sweep.Spec{Model: model, Budgets: bs, Seeds: seeds, Seed: seed}
	for _, u := range strings.Split(uniform, ",") {
		if u == "" {
			continue
		}
		var b sweep.Bits
		if _, err := fmt.Sscanf(u, "%d:%d", &b.WBits, &b.ABits); err != nil {
			return fmt.Errorf("--uniform %q: want W:A pairs", uniform)
		}
		spec.Uniform = append(spec.Uniform, b)
	}
	for _, f := range [][2]string{{"--data", data}, {"--mean", mean}, {"--std", std}, {"--limit-train", limitTrain}} {
		if f[1] != "" {
			spec.OptimizeArgs = append(spec.OptimizeArgs, f[0], f[1])
			spec.QuantizeArgs = append(spec.QuantizeArgs, f[0], f[1])
		}
	}
	if searchEp != "" {
		spec.OptimizeArgs = append(spec.OptimizeArgs, "--search-epochs", searchEp)
	}
	if ftEp != "" {
		spec.OptimizeArgs = append(spec.OptimizeArgs, "--ft-epochs", ftEp)
		spec.QuantizeArgs = append(spec.QuantizeArgs, "--epochs", ftEp)
	}
	plan, err := sweep.Open(out, spec)
	if err != nil {
		return err
	}
	switch emit {
	case "":
		res, err := sweep.Run(ctx, plan, runPoint, sweep.RunOptions{Jobs: jobs, Progress: os.Stderr})
		if res != nil {
			fmt.Printf("merged %d of %d points into %s\n", res.Finished, res.Points, out)
		}
		return err
	case "slurm":
		self, err := os.Executable()
		if err != nil {
			return err
		}
		files, err := sweep.EmitSlurm(plan, sweep.SlurmOptions{Qnas: self, CPUs: slurmCPUs, Mem: slurmMem, Time: slurmTime,
			Partition: slurmPartition, Account: slurmAccount, Parallel: slurmParallel})
		for _, f := range files {
			fmt.Println("wrote", f)
		}
		return err
	default:
		return fmt.Errorf("--emit %q: want slurm", emit)
	}
}

// execRunner runs a point as the child process `qnas <plan.Command(p)> --threads N`; an
// interrupt reaches the child as SIGINT, so that it checkpoints.
func execRunner(qnas string, threads int) sweep.RunFunc {
	return func(ctx context.Context, plan *sweep.Plan, p sweep.Point) (string, error) {
		args := append(plan.Command(p), "--threads", strconv.Itoa(max(threads, 1)))
		cmd := exec.CommandContext(ctx, qnas, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("qnas %s: %w", strings.Join(args[:2], " "), err)
		}
		return plan.ReportPath(p), nil
	}
}
