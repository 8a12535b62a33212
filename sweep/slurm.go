package sweep

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Files EmitSlurm writes into SWEEPDIR.
const (
	SlurmArrayFile  = "sweep.sbatch"
	SlurmMergeFile  = "merge.sbatch"
	SlurmSubmitFile = "submit.sh"
	SlurmLogDir     = "logs"
)

// SlurmOptions are the resources of a sweep's Slurm jobs.
type SlurmOptions struct {
	// Qnas is the qnas command as the compute nodes run it (default "qnas" on their PATH);
	// an absolute path on the shared file system is safest.
	Qnas      string
	CPUs      int      // CPUs per point (default 2); also the point's --threads
	Mem       string   // memory per point (sbatch --mem, such as 8G); empty: the cluster's default
	Time      string   // time limit per point (sbatch --time, such as 12:00:00); empty: the partition's
	Partition string   // empty: the cluster's default
	Account   string   // empty: the user's default
	Parallel  int      // at most this many points at once (the array's %N); 0: no limit
	Extra     []string // further sbatch options for every job, such as --qos=long
}

// EmitSlurm writes the sweep's Slurm jobs into SWEEPDIR: sweep.sbatch, a job array with one
// task per point (task K runs `qnas sweep --point K -o SWEEPDIR`, which skips a finished
// point); merge.sbatch, `qnas sweep merge SWEEPDIR`; and submit.sh, which submits the array
// and then the merge with --dependency=afterany on it (the merge reads whatever finished,
// so it runs even when some points failed). SWEEPDIR, the model, the data and the qnas
// binary must be at the same paths on every node. It returns the files written.
func EmitSlurm(plan *Plan, o SlurmOptions) ([]string, error) {
	if len(plan.Points) == 0 {
		return nil, fmt.Errorf("%s: the sweep has no points", plan.Dir())
	}
	if strings.ContainsAny(plan.Dir(), " \t\n%'\"\\$") {
		return nil, fmt.Errorf("%s: a Slurm sweep folder cannot hold spaces, quotes, %% or $ (sbatch's #SBATCH lines take it verbatim)", plan.Dir())
	}
	if o.Qnas == "" {
		o.Qnas = "qnas"
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.CPUs < 0 || o.Parallel < 0 {
		return nil, fmt.Errorf("Slurm CPUs per point (%d) and points at once (%d) must not be negative", o.CPUs, o.Parallel)
	}
	for _, v := range []string{o.Qnas, o.Mem, o.Time, o.Partition, o.Account} {
		if strings.ContainsAny(v, " \t\n") {
			return nil, fmt.Errorf("Slurm option %q: no spaces", v)
		}
	}
	for _, e := range o.Extra {
		if !strings.HasPrefix(e, "-") || strings.ContainsAny(e, "\n") {
			return nil, fmt.Errorf("Slurm option %q: want one sbatch option such as --qos=long", e)
		}
	}
	dir := plan.Dir()
	logs := filepath.Join(dir, SlurmLogDir)
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	qnas := shellCommand([]string{o.Qnas})
	common := func(b *strings.Builder) {
		for _, kv := range [][2]string{{"partition", o.Partition}, {"account", o.Account}} {
			if kv[1] != "" {
				fmt.Fprintf(b, "#SBATCH --%s=%s\n", kv[0], kv[1])
			}
		}
		for _, e := range o.Extra {
			fmt.Fprintf(b, "#SBATCH %s\n", e)
		}
	}

	var arr strings.Builder
	fmt.Fprintf(&arr, "#!/bin/bash\n# qnas sweep of %s: one task per point (K = $SLURM_ARRAY_TASK_ID), each writing only\n", plan.Model)
	fmt.Fprintf(&arr, "# its own folder of %s. Submit with %s, which also queues the merge.\n", dir, SlurmSubmitFile)
	fmt.Fprintf(&arr, "#SBATCH --job-name=qnas-sweep\n#SBATCH --array=0-%d", len(plan.Points)-1)
	if o.Parallel > 0 {
		fmt.Fprintf(&arr, "%%%d", o.Parallel)
	}
	fmt.Fprintf(&arr, "\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=%d\n", o.CPUs)
	if o.Mem != "" {
		fmt.Fprintf(&arr, "#SBATCH --mem=%s\n", o.Mem)
	}
	if o.Time != "" {
		fmt.Fprintf(&arr, "#SBATCH --time=%s\n", o.Time)
	}
	fmt.Fprintf(&arr, "#SBATCH --output=%s/point-%%a.out\n", logs)
	common(&arr)
	fmt.Fprintf(&arr, "set -eu\nexec %s sweep --point \"$SLURM_ARRAY_TASK_ID\" --threads \"${SLURM_CPUS_PER_TASK:-%d}\" -o %s\n", qnas, o.CPUs, dir)

	var merge strings.Builder
	fmt.Fprintf(&merge, "#!/bin/bash\n# Tables, plots and index.html of the finished points of %s.\n", dir)
	fmt.Fprintf(&merge, "#SBATCH --job-name=qnas-sweep-merge\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=1\n#SBATCH --time=00:30:00\n")
	fmt.Fprintf(&merge, "#SBATCH --output=%s/merge.out\n", logs)
	common(&merge)
	fmt.Fprintf(&merge, "set -eu\nexec %s sweep merge %s\n", qnas, dir)

	var submit strings.Builder
	fmt.Fprintf(&submit, `#!/bin/sh
# Submits the %d points of %s as a Slurm job array, then the merge, which starts when
# every task has ended (afterany: the merge reads whatever finished).
set -eu
array=$(sbatch --parsable %s/%s)
array=${array%%%%;*}
merge=$(sbatch --parsable --dependency=afterany:"$array" %s/%s)
merge=${merge%%%%;*}
echo "points: job array $array (%d tasks), logs in %s; merge: job $merge"
`, len(plan.Points), dir, dir, SlurmArrayFile, dir, SlurmMergeFile, len(plan.Points), logs)

	files := []struct {
		name string
		body string
	}{{SlurmArrayFile, arr.String()}, {SlurmMergeFile, merge.String()}, {SlurmSubmitFile, submit.String()}}
	var out []string
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := writeBytes(path, []byte(f.body)); err != nil {
			return out, err
		}
		if err := os.Chmod(path, 0o755); err != nil {
			return out, err
		}
		out = append(out, path)
	}
	return out, nil
}
