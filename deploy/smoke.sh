#!/usr/bin/env bash
# The compose stack, by hand, end to end: build, up, wait healthy, the SDK quickstart, the token, down/up persistence.
#
#   bash deploy/smoke.sh                 # needs: a Docker engine, Compose v2 (`docker compose`), the base image
#                                        # python:3.11-slim (or access to pull it) and the PyTorch wheel index;
#                                        # on the host: a Python with the SDK (pip install ./clients)
#
# It runs as its own compose project (vjepa-robot-smoke) on free host ports with a fresh token, so it never touches
# a stack you already run; it removes its containers and volumes at the end unless KEEP=1.
# Environment: PYTHON (host interpreter with the SDK, default python3), QUICKSTART_EPISODES / QUICKSTART_STEPS
# (default 3 / 30: small, so the CPU stack finishes in minutes), KEEP=1 (leave the stack up), COMPOSE_FILES
# (default "-f docker-compose.yml"; add "-f docker-compose.gpu.yml" on a GPU host).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PROJECT=${SMOKE_PROJECT:-vjepa-robot-smoke}
read -r -a FILES <<< "${COMPOSE_FILES:--f docker-compose.yml}"
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

export VJEPA_ROBOT_BIND=127.0.0.1
export VJEPA_ROBOT_ENCODER_PORT=${VJEPA_ROBOT_ENCODER_PORT:-$(free_port)}
export VJEPA_ROBOT_TRAINER_PORT=${VJEPA_ROBOT_TRAINER_PORT:-$(free_port)}
export VJEPA_ROBOT_TOKEN=${VJEPA_ROBOT_TOKEN:-$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')}
export VJEPA_ROBOT_ENCODER_URL="http://127.0.0.1:${VJEPA_ROBOT_ENCODER_PORT}"
export VJEPA_ROBOT_TRAINER_URL="http://127.0.0.1:${VJEPA_ROBOT_TRAINER_PORT}"
export QUICKSTART_EPISODES=${QUICKSTART_EPISODES:-3} QUICKSTART_STEPS=${QUICKSTART_STEPS:-30}
compose() { docker compose -p "$PROJECT" "${FILES[@]}" "$@"; }
step() { printf '\n== %s\n' "$*"; }

cleanup() {
    local rc=$?
    if [ "$rc" != 0 ]; then compose ps || true; compose logs --tail 50 || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "KEEP=1: the stack stays up (docker compose -p $PROJECT down -v to remove it)"
    else compose down -v --remove-orphans >/dev/null 2>&1 || true; fi
    exit "$rc"
}
trap cleanup EXIT

step "docker compose build"
start=$(date +%s)
compose build
echo "built in $(( $(date +%s) - start )) s"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^vjepa-robot-' || true

step "up, wait until both services are healthy"
start=$(date +%s)
compose up -d --wait --wait-timeout 600
echo "healthy in $(( $(date +%s) - start )) s"

step "safe by default: published on 127.0.0.1 only"
for svc_port in "encoder 8001" "trainer 8002"; do
    set -- $svc_port
    published=$(compose port "$1" "$2")
    echo "$1 -> $published"
    case "$published" in 127.0.0.1:*) ;; *) echo "FAIL: $1 is published on $published, not 127.0.0.1"; exit 1 ;; esac
done

step "the token: 401 without it, 200 with it (both services)"
for url in "$VJEPA_ROBOT_ENCODER_URL/info" "$VJEPA_ROBOT_TRAINER_URL/runs"; do
    "$PYTHON" - "$url" <<'EOF'
import os, sys, httpx
url = sys.argv[1]
assert httpx.get(url, timeout=10).status_code == 401, f"{url} answered without the token"
r = httpx.get(url, headers={"Authorization": f"Bearer {os.environ['VJEPA_ROBOT_TOKEN']}"}, timeout=10)
assert r.status_code == 200, f"{url} refused the token: {r.status_code} {r.text[:200]}"
print(url, "401 without the token, 200 with it")
EOF
done

step "the SDK quickstart against the stack (the trainer reaches the encoder by service name, with the token)"
"$PYTHON" examples/quickstart.py | tee /tmp/vjepa-robot-smoke-quickstart.txt
grep -q "bc succeeded" /tmp/vjepa-robot-smoke-quickstart.txt

step "down / up: datasets, embeddings and runs persist in the named volumes"
before=$("$PYTHON" -c 'from vjepa_robot_client import TrainerClient; tr = TrainerClient(); print(sorted(r.run_id for r in tr.runs()))')
compose down
compose up -d --wait --wait-timeout 600
"$PYTHON" - "$before" <<'EOF'
import sys
from vjepa_robot_client import TrainerClient
tr = TrainerClient()
assert tr.dataset("quickstart").status.value == "ready", "the quickstart dataset did not survive down/up"
after = str(sorted(r.run_id for r in tr.runs()))
assert after == sys.argv[1], f"runs before {sys.argv[1]} != after {after}"
print("after down/up: dataset 'quickstart' ready, runs", after)
EOF

echo
echo "smoke test passed"
