#!/usr/bin/env bash
# Install Debian's SLURM (slurm-wlm 22.05 on Debian 12) and munge for the
# `slurm`-marked tests (tests/test_slurm_smoke.py), and iproute2 (`ip`) for the
# two-node cluster in network namespaces (tests/slurm_netns.py).
#
# Idempotent and quiet: a no-op when the binaries are already there; prints one
# line on success and the apt log on failure.
#
# It only installs packages.  It writes no /etc/slurm config, creates no munge
# key and starts no daemon: tests/slurm_cluster.py (LocalSlurm) generates its own
# slurm.conf/gres.conf/munge key in a temp dir (SLURM_CONF, AuthInfo=socket=...)
# and starts/stops its own munged, slurmctld and slurmd.  Package postinst
# scripts are kept from starting the system services (policy-rc.d), so nothing
# is left running after the install.
#
# Needs root (or passwordless sudo) and the Debian package mirror.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi

have_all() {
    local b
    for b in munged slurmctld slurmd sbatch squeue sinfo scontrol scancel srun ip nsenter unshare; do
        command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || return 1
    done
}

if ! have_all; then
    log="$(mktemp /tmp/install-slurm.XXXXXX.log)"
    export DEBIAN_FRONTEND=noninteractive
    policy_created=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        policy_created=1
    fi
    rc=0
    {
        $SUDO apt-get update -qq &&
        $SUDO apt-get install -y -qq --no-install-recommends slurm-wlm munge iproute2 util-linux
    } >"$log" 2>&1 || rc=$?
    if [ "$policy_created" -eq 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
    if [ "$rc" -ne 0 ] || ! have_all; then
        echo "install-slurm: apt-get failed (rc=$rc); log follows" >&2
        cat "$log" >&2
        exit 1
    fi
    rm -f "$log"
fi

echo "install-slurm: $(/usr/sbin/slurmctld -V), $(/usr/sbin/munged -V 2>&1 | head -1)"
