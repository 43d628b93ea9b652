#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine, for tests/test_slurm.py.
#
#   sudo tests/slurm/start_cluster.sh            # install if needed, (re)start, wait until idle
#   sudo tests/slurm/start_cluster.sh --smoke    # ... then prove two gpu jobs get distinct devices
#   sudo tests/slurm/stop_cluster.sh             # stop what this script started
#
# Idempotent: when the cluster this script configured already answers and its node is
# usable, it only re-checks and exits 0. Exit status: 0 ready; 2 this machine cannot run
# it (not root, no apt-get, ...; the reason is printed on a line starting "SKIP:");
# 1 something that should have worked failed (the reason and the daemon logs are printed).
#
# What it sets up: Debian's slurmctld/slurmd (22.05 on Debian 12) and munge, no systemd
# (munged, slurmctld -D, slurmd -D started in the background, pids in $RUN_DIR), one node
# named after `hostname -s` at 127.0.0.1, one default partition "debug", 2 GPUs declared
# as GRES and backed by fake character devices /dev/fakegpu0 and /dev/fakegpu1.
#
# Pitfalls found while building this (keep adding):
#  * The SLURM executor plugin's job step (snakemake-executor-plugin-slurm-jobstep)
#    drops every SLURM_* variable, SLURM_CONF included, before its nested `srun`. A config
#    anywhere but the compiled-in default /etc/slurm/slurm.conf makes that srun fail, so
#    the config is written there (the old one, if any and not ours, is kept as *.orig).
#  * No accounting database here, so `sacct` fails (exit 1, "Slurm accounting storage is
#    disabled"); the plugin's default status command is sacct and Snakemake then waits
#    forever. Run the plugin with `--slurm-status-command squeue` (plugin 2.8.0 option;
#    profile key `slurm-status-command`). BUT 2.8.0 falls back to sacct (one info line)
#    whenever the sacct binary exists and MinJobAge < 3 x
#    --slurm-init-seconds-before-status-checks (default 40 s -> 120 s): MinJobAge must stay
#    >= that (300 here), and squeue only sees a finished job for MinJobAge s after it ends.
#  * `--slurm-no-account` exists in plugin 2.8.0 but is never read. Without an account the
#    plugin guesses one with `sacct -nu USER -o Account%256 | tail -1`, split by shlex so
#    that sacct gets "|", "tail", "-1" as arguments and always fails ("sacct: invalid option
#    -- '1'"); it then warns "Unable to guess SLURM account" and submits without -A, which is
#    what we want here. Real clusters that need an account: set slurm_account yourself.
#  * Status polling in plugin 2.8.0: first poll after --seconds-between-status-checks, then
#    +10 s after every poll that finds nothing finished, back to
#    --slurm-init-seconds-before-status-checks after one that does. A job here takes
#    10-20 s (sbatch -> Snakemake -> srun -> Snakemake -> script), so polling every 1 s
#    means catching most jobs at the third poll (~33 s); the test polls every 20 s instead.
#  * "srun: cluster configuration lacks support for cpu binding" in every job log comes from
#    the job step's `srun --cpu-bind=q` with TaskPlugin=task/none; harmless.
#  * The plugin asks for GPUs with the Snakemake resource `gpu` -> `sbatch --gpus=N` (or
#    `gres="gpu:N"` -> --gres; `gpu_model` -> --gpus=model:N) and the job step repeats
#    `srun --gpus=N` inside the allocation; cpus_per_gpu -> --cpus-per-gpu. Snakemake's
#    own `--resources gpu=N` limit does not apply to remote jobs: SLURM does the counting.
#  * SLURM sets CUDA_VISIBLE_DEVICES from the GRES index (0, 1, ...), also without
#    cgroups and with fake device files. Device fencing (ConstrainDevices) would need the
#    cgroup plugins and a writable cgroup hierarchy, often missing in containers, hence
#    TaskPlugin=task/none and ProctrackType=proctrack/linuxproc: jobs are told their GPU,
#    not fenced in.
#  * gres.conf `File=` must name existing files, else slurmd dies ("fatal: can't stat
#    gres.conf file /dev/..."; check a gres.conf with `slurmd -G`); a character
#    device made with `mknod c 1 3` (same numbers as /dev/null) is accepted. AutoDetect=off,
#    since Debian's build has no NVML and there is no GPU anyway.
#  * SlurmdParameters=config_overrides lets the node declare more CPUs/memory than the
#    machine has (we declare at least 8 CPUs, 16000 MB) so that rules with threads > nproc
#    or a realistic mem_mb are still accepted on a 2-core CI runner instead of being
#    rejected with "Requested node configuration is not available".
#  * Debian's munge package has no runnable daemon without systemd: /run/munge must be
#    created (owner munge) and munged started as user munge.
#  * slurmctld keeps jobs in StateSaveLocation across restarts; we start it with -c (clear)
#    so a restarted test cluster starts empty.
#  * `apt-get install slurm-wlm` pulls ~30 plugin/-dev packages through Recommends;
#    slurmctld slurmd slurm-client munge with --no-install-recommends are enough and quicker.
#  * Jobs run as root here (tests run as root); SLURM allows that. The job's working
#    directory must be reachable at the same path from the node: trivially true here.
set -uo pipefail

SMOKE=0
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "start_cluster.sh: unknown argument $arg" >&2; exit 1 ;;
    esac
done

NODE="$(hostname -s)"
NGPU=2
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
GRES_CONF="$CONF_DIR/gres.conf"
MARK="# written by robustcert tests/slurm/start_cluster.sh"
RUN_DIR=/run/robustcert-slurm
LOG_DIR=/var/log/robustcert-slurm
STATE_DIR=/var/lib/robustcert-slurm
WAIT_S="${SLURM_START_TIMEOUT_S:-60}"

skip() { echo "SKIP: $*"; exit 2; }
fail() {
    echo "FAIL: $*"
    for f in "$LOG_DIR"/*.log; do
        [ -s "$f" ] || continue
        echo "----- last lines of $f -----"
        tail -n 25 "$f"
    done
    exit 1
}

[ "$(id -u)" = 0 ] || skip "starting a SLURM cluster needs root (this is uid $(id -u))"
[ "$(uname -s)" = Linux ] || skip "needs Linux"

# ---------------------------------------------------------------- install
need_install=0
for b in slurmctld slurmd sbatch munged; do
    command -v "$b" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$b" >/dev/null 2>&1 || need_install=1
done
export PATH="$PATH:/usr/sbin:/sbin"
if [ "$need_install" = 1 ]; then
    command -v apt-get >/dev/null 2>&1 || skip "SLURM is not installed and there is no apt-get to install it"
    echo "installing slurmctld slurmd slurm-client munge with apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/tmp/robustcert-slurm-apt.log 2>&1; then
        apt-get update -q >>/tmp/robustcert-slurm-apt.log 2>&1 || skip "apt-get update failed (no package mirror reachable?); see /tmp/robustcert-slurm-apt.log"
        apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >>/tmp/robustcert-slurm-apt.log 2>&1 \
            || skip "apt-get install slurmctld slurmd slurm-client munge failed; see /tmp/robustcert-slurm-apt.log"
    fi
fi
for b in slurmctld slurmd sbatch sinfo scontrol munged; do
    command -v "$b" >/dev/null 2>&1 || skip "$b not found after installation"
done

mkdir -p "$RUN_DIR" "$LOG_DIR" "$STATE_DIR/ctld" "$STATE_DIR/d" "$CONF_DIR"

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_state() { sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n1; }

# ---------------------------------------------------------------- already up?
if grep -qF "$MARK" "$CONF" 2>/dev/null && pid_alive "$RUN_DIR/slurmctld.pid" && pid_alive "$RUN_DIR/slurmd.pid" \
    && scontrol ping >/dev/null 2>&1; then
    case "$(node_state)" in
        idle|mix|mixed|alloc|allocated|comp|completing)
            echo "SLURM cluster already running: node $NODE $(node_state), gres $(sinfo -h -N -n "$NODE" -o '%G')"
            [ "$SMOKE" = 1 ] || exit 0
            ALREADY=1 ;;
    esac
fi

if [ "${ALREADY:-0}" != 1 ]; then
    # stop whatever this script started before (by pid file only)
    "$(dirname "$0")/stop_cluster.sh" --quiet >/dev/null 2>&1 || true

    # ------------------------------------------------------------ fake GPUs
    for i in $(seq 0 $((NGPU - 1))); do
        dev="/dev/fakegpu$i"
        if [ ! -c "$dev" ]; then
            rm -f "$dev"
            mknod -m 666 "$dev" c 1 3 2>/dev/null || skip "cannot create the fake GPU device $dev with mknod (no CAP_MKNOD?)"
        fi
    done

    # ------------------------------------------------------------ munge
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --force --keyfile=/etc/munge/munge.key >/dev/null 2>&1
        fi
        [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
    chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key; chmod 0755 /run/munge
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u munge -- munged --force >"$LOG_DIR/munged.out" 2>&1
        else
            su -s /bin/sh munge -c "munged --force" >"$LOG_DIR/munged.out" 2>&1
        fi
        for _ in $(seq 1 20); do
            munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
            sleep 0.25
        done
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || fail "munged does not answer: $(cat "$LOG_DIR/munged.out" 2>/dev/null)"
        [ -s /run/munge/munged.pid ] && cp /run/munge/munged.pid "$RUN_DIR/munged.pid"
    fi

    # ------------------------------------------------------------ configuration
    hw="$(slurmd -C 2>/dev/null | head -n1)"
    real_cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw"); real_cpus=${real_cpus:-$(nproc)}
    real_mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw"); real_mem=${real_mem:-4000}
    cpus=$(( real_cpus > 8 ? real_cpus : 8 ))
    mem=$(( real_mem > 16000 ? real_mem : 16000 ))
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        # a slurm.conf we did not write: this machine may belong to a real cluster
        [ "${ROBUSTCERT_SLURM_OVERWRITE:-0}" = 1 ] \
            || skip "$CONF exists and was not written by this script (part of a real cluster?); set ROBUSTCERT_SLURM_OVERWRITE=1 to replace it (kept as $CONF.orig)"
        cp -n "$CONF" "$CONF.orig"
        echo "kept the existing $CONF as $CONF.orig"
    fi
    if [ -f "$GRES_CONF" ] && ! grep -qF "$MARK" "$GRES_CONF"; then
        cp -n "$GRES_CONF" "$GRES_CONF.orig"
    fi
    cat >"$CONF" <<EOF
$MARK
# A single-node test cluster; do not use for anything else.
ClusterName=robustcert
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/d
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
GresTypes=gpu
MpiDefault=none
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue must still see finished jobs when Snakemake polls (see the pitfalls above)
MinJobAge=300
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$NGPU State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$GRES_CONF" <<EOF
$MARK
AutoDetect=off
NodeName=$NODE Name=gpu File=/dev/fakegpu[0-$((NGPU - 1))]
EOF
    # cgroup.conf is only read by cgroup plugins; make sure a stale one cannot interfere
    chmod 0644 "$CONF" "$GRES_CONF"

    # ------------------------------------------------------------ daemons
    : >"$LOG_DIR/slurmctld.log"; : >"$LOG_DIR/slurmd.log"
    setsid slurmctld -D -c -f "$CONF" >"$LOG_DIR/slurmctld.out" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/slurmctld.pid"
    for _ in $(seq 1 40); do
        scontrol ping >/dev/null 2>&1 && break
        pid_alive "$RUN_DIR/slurmctld.pid" || fail "slurmctld exited: $(tail -n 5 "$LOG_DIR/slurmctld.out")"
        sleep 0.25
    done
    scontrol ping >/dev/null 2>&1 || fail "slurmctld does not answer scontrol ping"
    setsid slurmd -D -f "$CONF" >"$LOG_DIR/slurmd.out" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/slurmd.pid"

    # ------------------------------------------------------------ wait until idle
    state=""
    for _ in $(seq 1 $((WAIT_S * 2))); do
        pid_alive "$RUN_DIR/slurmd.pid" || fail "slurmd exited: $(tail -n 5 "$LOG_DIR/slurmd.out")"
        state="$(node_state)"
        case "$state" in
            idle) break ;;
            drain|drng|draining|drained|down|down\*|inval|fail)
                scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    [ "$state" = idle ] || fail "node $NODE is '$state', not idle, after ${WAIT_S}s: $(scontrol show node "$NODE" 2>&1 | grep -i -E 'reason|state' | tr -s ' ')"
    gres="$(sinfo -h -N -n "$NODE" -o '%G')"
    case "$gres" in
        *gpu:$NGPU*) ;;
        *) fail "node $NODE came up without the $NGPU GPUs (gres '$gres')" ;;
    esac
    echo "SLURM cluster ready: node $NODE idle, CPUs=$cpus RealMemory=$mem gres $gres, config $CONF"
fi

# ---------------------------------------------------------------- smoke test
if [ "$SMOKE" = 1 ]; then
    out=$(mktemp -d /tmp/robustcert-slurm-smoke.XXXXXX)
    ids=()
    for i in 1 2; do
        # shellcheck disable=SC2016  # expanded in the job, not here
        id=$(sbatch --parsable --gres=gpu:1 --cpus-per-task=1 -o "$out/%j.out" -D "$out" \
            --wrap 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"; sleep 3') || fail "sbatch failed"
        ids+=("$id")
    done
    for _ in $(seq 1 120); do
        [ -z "$(squeue -h -j "$(IFS=,; echo "${ids[*]}")" -t PD,R,CG 2>/dev/null)" ] && break
        sleep 0.5
    done
    devs=$(cat "$out"/*.out 2>/dev/null | sort)
    echo "smoke test, two sbatch --gres=gpu:1 jobs saw:"; while IFS= read -r l; do echo "  $l"; done <<<"$devs"
    n=$(echo "$devs" | grep -c '^CUDA_VISIBLE_DEVICES=[0-9]' || true)
    u=$(echo "$devs" | sort -u | grep -c '^CUDA_VISIBLE_DEVICES=[0-9]' || true)
    rm -rf "$out"
    if [ "$n" != 2 ] || [ "$u" != 2 ]; then
        fail "expected two jobs with distinct CUDA_VISIBLE_DEVICES"
    fi
    echo "smoke test passed"
fi
exit 0
