#!/usr/bin/env bash
# Tests a qnas sweep on a real Slurm. Installs Debian's slurm-wlm and munge if missing
# (apt; needs root), starts munged, slurmctld and slurmd on this machine with a one-node
# configuration it writes into a temporary folder (own ports, socket, state and logs, so a
# Slurm or munge already on the machine is left alone), emits a sweep of three points (budgets
# 0.125 and 0.25 and a uniform w4a4 baseline of resnet8_bn on the embedded Fashion-MNIST
# subset, short schedule) as a job array plus the dependent merge, submits them with the
# emitted submit.sh, waits for both, and checks the job states, sweep.json, sweep.csv, the
# plots and index.html. On exit it stops the daemons it started (by their pid files) and
# only those. Prints the wall time. Keeps its folder with KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

if [ "$(id -u)" != 0 ]; then
  echo "slurm_test.sh: needs root (apt-get, and slurmd runs jobs as their user)" >&2
  exit 2
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q slurm-wlm munge >/dev/null
fi
installed=$(date +%s)
bash scripts/deps.sh build >/dev/null

work=$(mktemp -d /tmp/qnas-slurm.XXXXXX)
chmod 700 "$work"
mkdir -p "$work/bin" "$work/munge" "$work/spool" "$work/state"
go build -o "$work/bin/qnas" ./cmd/qnas

stop_daemons() {
  local status=$?
  for pidfile in "$work/slurmd.pid" "$work/slurmctld.pid" "$work/munge/munged.pid"; do
    if [ -s "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  if [ "$status" != 0 ]; then
    echo "--- slurmctld.log"; tail -20 "$work/slurmctld.log" 2>/dev/null || true
    echo "--- slurmd.log"; tail -20 "$work/slurmd.log" 2>/dev/null || true
    echo "--- job logs"; tail -n 20 "$work"/sweep/logs/* 2>/dev/null || true
    echo "slurm_test.sh: FAILED (folder kept: $work)" >&2
  elif [ "${KEEP:-}" = 1 ]; then
    echo "folder kept: $work"
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap stop_daemons EXIT

# munge: its own key, socket and pid file.
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
munged --force --socket="$work/munge/munge.socket" --key-file="$work/munge/munge.key" \
  --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" --seed-file="$work/munge/munged.seed"

# Slurm: one node (this machine, all its CPUs), one partition, no accounting, no cgroups.
node=$(hostname -s)
cpus=$(nproc)
cat >"$work/slurm.conf" <<EOF
ClusterName=qnastest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/munge.socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=2000 State=UNKNOWN
PartitionName=qnas Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$work/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N "$node"
for _ in $(seq 100); do
  state=$(sinfo -h -N -o %t 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
[ "$state" = idle ] || { echo "slurm_test.sh: the node did not come up (state '$state')" >&2; exit 1; }
up=$(date +%s)

# The sweep: emitted, submitted with its own submit.sh, waited for.
sw=$work/sweep
"$work/bin/qnas" sweep "$PWD/testdata/models/resnet8_bn.onnx" --budgets 0.125,0.25 --uniform 4:4 \
  --data embedded --mean 0.2860 --std 0.3530 --limit-train 1500 --method search --search-epochs 1 --ft-epochs 0 \
  -o "$sw" --emit slurm --slurm-cpus 1 --slurm-mem 900M --slurm-time 00:20:00
sub=$("$sw/submit.sh")
echo "$sub"
array=$(echo "$sub" | sed -n 's/.*job array \([0-9]*\).*/\1/p')
merge=$(echo "$sub" | sed -n 's/.*merge: job \([0-9]*\).*/\1/p')
for _ in $(seq 600); do
  [ -z "$(squeue -h -j "$array,$merge" 2>/dev/null)" ] && break
  sleep 1
done
[ -z "$(squeue -h -j "$array,$merge")" ] || { echo "slurm_test.sh: jobs still queued after 10 minutes" >&2; squeue; exit 1; }
done_at=$(date +%s)

# Every array task and the merge completed.
states=$(scontrol -o show job "$array" | grep -o 'JobState=[A-Z_]*' | sort | uniq -c | tr -s ' ')
mstate=$(scontrol -o show job "$merge" | grep -o 'JobState=[A-Z_]*')
echo "array $array:$states; merge $merge: $mstate"
[ "$states" = " 3 JobState=COMPLETED" ] || { echo "slurm_test.sh: array tasks did not all complete" >&2; exit 1; }
[ "$mstate" = JobState=COMPLETED ] || { echo "slurm_test.sh: the merge did not complete" >&2; exit 1; }
grep -q "dependency\|Dependency" "$sw/submit.sh"

# The tables, plots and page.
python3 - "$sw" <<'EOF'
import csv, json, struct, sys, os
sw = sys.argv[1]
res = json.load(open(os.path.join(sw, "sweep.json")))
assert res["points"] == 3 and res["finished"] == 3, res
kinds = sorted((r["kind"], r.get("budget"), r.get("wbits")) for r in res["rows"])
assert kinds == [("mixed", 0.125, None), ("mixed", 0.25, None), ("uniform", None, 4)], kinds
for r in res["rows"]:
    assert 0 < r["cost_ratio"] <= 0.26 and 0 < r["accuracy"] <= 1 and r["weight_bytes"] > 0 and r["macs"] > 0, r
    assert os.path.exists(os.path.join(sw, r["path"])), r["path"]
assert len(res["frontier"]) == 1 and [b["budget"] for b in res["budgets"]] == [0.125, 0.25]
rows = list(csv.DictReader(open(os.path.join(sw, "sweep.csv"))))
assert len(rows) == 3 and set(rows[0]) >= {"budget", "seed", "kind", "cost_ratio", "accuracy", "path"}
for name in ["pareto.png", "bits-0.125.png", "bits-0.25.png"]:
    b = open(os.path.join(sw, name), "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", name
    w, h = struct.unpack(">II", b[16:24])
    assert w >= 1000 and h >= 400, (name, w, h)
for name in ["pareto.svg", "bits-0.25.svg"]:
    assert b"<svg" in open(os.path.join(sw, name), "rb").read(200), name
page = open(os.path.join(sw, "index.html")).read()
assert page.count("data:image/png;base64,") == 3 and "3 of 3 points" in page and "http" not in page
print("sweep.json: %d rows; accuracy %s" % (len(res["rows"]), ", ".join("%s %.3f" % (os.path.dirname(r["path"]), r["accuracy"]) for r in res["rows"])))
EOF
for k in 0 1 2; do grep -q "wrote $sw/" "$sw/logs/point-$k.out"; done
grep -q "merged 3 of 3 points" "$sw/logs/merge.out"

end=$(date +%s)
echo "slurm_test.sh: PASS in $((end - start)) s (install $((installed - start)) s, build and daemons $((up - installed)) s, jobs $((done_at - up)) s, checks $((end - done_at)) s)"
