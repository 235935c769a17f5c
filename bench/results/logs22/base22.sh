#!/bin/bash
cd /work/wt/sac22
export PYTHONPATH=/work/wt/sac22:/work/wt/sac22/clients VJEPA_ROBOT_TORCH_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
. /work/main/.venv/bin/activate
K=vjepa-robot-runs/sac22
( for s in 0 2 4; do nice -n 10 python bench/sac_sweep.py --name base22 --seed $s --keep $K; done ) > bench/results/logs22/base22_a.log 2>&1 &
( for s in 1 3; do nice -n 10 python bench/sac_sweep.py --name base22 --seed $s --keep $K; done ) > bench/results/logs22/base22_b.log 2>&1 &
wait
