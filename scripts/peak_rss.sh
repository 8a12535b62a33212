#!/usr/bin/env bash
# Peak resident memory of a qnas command, phase by phase (run by hand, not in CI):
#   scripts/peak_rss.sh LOG qnas ARGS...
# runs the command with its stderr and stdout in LOG, samples its resident set size
# (/proc/PID/status, VmRSS) every 0.3 s, and prints, for each phase in the order the phases
# ran, the largest size sampled while its progress line was the last one in LOG (a phase
# that starts by allocating is charged to the line before it), then the peak of the whole run.
# The samples are in LOG.rss. Go returns freed memory to the system only slowly, so a phase
# after a large one shows that one's size, not its own.
set -euo pipefail
log=$1
shift
"$@" >"$log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
	rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
	phase=$(tail -c 300 "$log" | tr '\r' '\n' | grep -a -v '^$' | tail -1 | sed 's/ *[0-9]*%.*//; s/:.*//' | tr ' ' '_' || true)
	echo "${phase:-start} ${rss:-0}"
	sleep 0.3
done >"$log.rss"
status=0
wait "$pid" || status=$?
awk '$2 > 0 { if ($1 != last) { order[++n] = $1; last = $1 } if ($2 > peak[$1]) peak[$1] = $2; if ($2 > top) top = $2 }
	END { for (i = 1; i <= n; i++) if (!seen[order[i]]++) printf "%8.0f MiB  %s\n", peak[order[i]] / 1024, order[i];
	      printf "%8.0f MiB  peak\n", top / 1024 }' "$log.rss"
exit "$status"
