#!/usr/bin/env bash
# Stop the test SLURM cluster that tests/slurm/start_cluster.sh started: slurmd, slurmctld
# and munged, each by the pid this script's sibling recorded, never by process name.
# Removes the slurm.conf that start_cluster.sh wrote (never another one): with it, every SLURM client
# asks the stopped controller and waits out its timeout, and every later `snakemake` start waits 9 s
# for `scontrol show config` (the SLURM executor plugin asks it when Snakemake loads its plugins).
# Leaves the installed packages, the rest of /etc/slurm and the fake /dev/fakegpu* devices in place
# (start_cluster.sh rewrites them anyway).
set -uo pipefail
QUIET=0
[ "${1:-}" = --quiet ] && QUIET=1
RUN_DIR=/run/robustcert-slurm
say() { [ "$QUIET" = 1 ] || echo "$@"; }

[ "$(id -u)" = 0 ] || { echo "stop_cluster.sh: needs root"; exit 2; }

stop_pidfile() {  # name pidfile
    local name=$1 pidfile=$2 pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null
            say "$name ($pid) did not stop on SIGTERM, killed"
        else
            say "stopped $name ($pid)"
        fi
    fi
    rm -f "$pidfile"
}

# jobs still running would be orphaned; cancel them while slurmctld still answers
if command -v scancel >/dev/null 2>&1 && [ -s "$RUN_DIR/slurmctld.pid" ] && kill -0 "$(cat "$RUN_DIR/slurmctld.pid")" 2>/dev/null; then
    timeout 10 scancel --state=PENDING,RUNNING --full -u root >/dev/null 2>&1 || true
fi
stop_pidfile slurmd "$RUN_DIR/slurmd.pid"
stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"
stop_pidfile munged "$RUN_DIR/munged.pid"
CONF=/etc/slurm/slurm.conf
if [ -f "$CONF" ] && head -1 "$CONF" | grep -q "written by robustcert tests/slurm/start_cluster.sh"; then
    rm -f "$CONF"
    say "removed $CONF"
fi
exit 0
