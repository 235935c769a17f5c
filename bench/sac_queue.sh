#!/bin/bash
# A two-lane job queue for the issue-22 SAC runs on a shared CPU (run by hand):
#   bench/sac_queue.sh QUEUE_FILE LANE [WAIT_FOR_FILE]
# Each line of QUEUE_FILE is one command (run from the repo root under nice, one torch thread); a lane claims the
# next unclaimed line (mkdir QUEUE_FILE.claims/<line number> is atomic), runs it, and polls for lines appended
# later; it stops when the file has a line "STOP" and nothing unclaimed is left before it. WAIT_FOR_FILE: start
# only once that file exists (e.g. the last result of an earlier lane).
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD:$PWD/clients VJEPA_ROBOT_TORCH_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
. /work/main/.venv/bin/activate 2>/dev/null || true
Q=$1; LANE=$2; WAIT=$3
mkdir -p "$Q.claims"
while [ -n "$WAIT" ] && [ ! -e "$WAIT" ]; do sleep 20; done
while true; do
  n=0; ran=0
  while IFS= read -r line; do
    n=$((n + 1))
    [ "$line" = "STOP" ] && exit 0
    [ -z "$line" ] && continue
    if mkdir "$Q.claims/$n" 2>/dev/null; then
      echo "[$(date +%T)] lane $LANE job $n: $line"
      nice -n 10 bash -c "$line"
      echo "[$(date +%T)] lane $LANE job $n done rc=$?"
      ran=1; break
    fi
  done < "$Q"
  [ $ran = 0 ] && sleep 30
done
