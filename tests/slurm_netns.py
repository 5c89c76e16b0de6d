"""A throw-away two-node SLURM cluster whose nodes are network namespaces (a helper, not a test module).

``NetnsSlurm`` extends ``LocalSlurm`` (tests/slurm_cluster.py: private munged, generated slurm.conf under one temp
dir, daemons in the foreground, no cgroups) to two compute nodes that talk over a real network:

    root namespace                 <prefix>-sw                    <prefix>-n1 / <prefix>-n2
    slurmctld, munged, sbatch,     bridge "br0"                   eth0 10.R.S.2 (cxr-n1) / 10.R.S.3 (cxr-n2)
    snakemake, squeue              (ports: ctl, n1, n2)           one slurmd each, UTS hostname = node name,
    veth 10.R.S.1 (cxr-ctl) ------ veth ... veth ---------------- /etc/hosts = the fixture's hosts file

* three network namespaces named ``cxrns-<pid>-sw``, ``-n1``, ``-n2`` (``<pid>``: the test process) on a private
  /24 the fixture picks from 10.213.0.0/16 (else 172.29/16, 192.168/16), one not routed anywhere on this
  machine; traffic only ever goes to those addresses (and loopback). The bridge lives in its own namespace, so
  the machine's iptables (e.g. a FORWARD policy DROP with br_netfilter) never sees the frames between the nodes;
* ``slurmctld`` in the root namespace on 10.R.S.1 (where the test, Snakemake and sbatch run), one ``slurmd`` per
  node, started as ``nsenter --net=/run/netns/NS unshare --mount --uts sh -c 'mount --bind HOSTS /etc/hosts;
  hostname N; exec slurmd -N N'`` (not ``ip netns exec``, which remounts /sys and so hides /sys/fs/cgroup from
  slurmd). The bind mount lives in that slurmd's private mount namespace, seen by it and every job step it starts
  and never by the machine; ``socket.gethostname()`` in a job is the node's name, and the names resolve to the
  node addresses only through the fixture's hosts file. slurmctld reaches the nodes by ``NodeAddr=`` and needs
  no name lookup;
* on the nodes, /etc/slurm is the cluster's config folder (bind-mounted like the hosts file), as on a real compute
  node: commands run inside a job (`scontrol` in the launcher of a multi-node job) find the config without
  SLURM_CONF, which Snakemake's jobstep executor strips;
* munge over its unix socket (a path on the shared file system works from every network namespace);
* ``stop()`` kills the daemons and deletes the namespaces (the veth pairs and the bridge go with them); a run that
  crashed before that leaves namespaces whose ``<pid>`` is dead: ``start()`` deletes those first.

Nothing here writes to /etc or to the machine's network configuration outside the interfaces it creates.
Needs root with CAP_NET_ADMIN / CAP_SYS_ADMIN (``skip_reason()`` tries a throw-away namespace) and ``ip``
(iproute2), ``nsenter``, ``unshare``, ``mount``, ``hostname`` (util-linux) besides the SLURM binaries.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from slurm_cluster import LocalSlurm

PREFIX = "cxrns"
NODE_NAMES = ("cxr-n1", "cxr-n2")
CTL_NAME = "cxr-ctl"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def netns_names() -> list[str]:
    r = _ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def remove_stale_namespaces() -> list[str]:
    """Delete ``cxrns-<pid>-*`` namespaces left by an earlier run whose process is gone; returns their names."""
    removed = []
    for name in netns_names():
        m = re.fullmatch(rf"{PREFIX}-(\d+)-\w+", name)
        if m and not _pid_alive(int(m.group(1))):
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


def netns_of_pid(pid: int) -> str | None:
    """Name of the named network namespace process ``pid`` lives in (None: the root one or unnamed)."""
    try:
        ino = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None
    for name in netns_names():
        try:
            if os.stat(f"/run/netns/{name}").st_ino == ino:
                return name
        except OSError:
            continue
    return None


class NetnsSlurm(LocalSlurm):
    """Two-node SLURM: slurmctld here, one slurmd in each of two network namespaces joined by a bridge."""

    def __init__(self, own_name_loopback: bool = False, **kwargs) -> None:
        """own_name_loopback: each node's hosts file maps the node's own name to 127.0.1.1 first (Debian's default
        /etc/hosts), as on many real clusters; the other names map to the test network's addresses."""
        kwargs.setdefault("gpus", 0)
        self.own_name_loopback = own_name_loopback
        kwargs.setdefault("cluster_name", "cxrnet")
        super().__init__(**kwargs)
        self.nodenames = list(NODE_NAMES)
        self.tag = f"{PREFIX}-{os.getpid()}"
        self.namespaces = {n: f"{self.tag}-n{i + 1}" for i, n in enumerate(self.nodenames)}
        self.switch_ns = f"{self.tag}-sw"
        self.subnet: ipaddress.IPv4Network | None = None
        self.addresses: dict[str, str] = {}  # node (and controller) name -> address
        self.ctl_addr = ""
        self.root_veth = f"cxr{os.getpid()}c"[:15]

    # ------------------------------------------------------------------ checks
    @staticmethod
    def skip_reason() -> str | None:
        reason = LocalSlurm.skip_reason()
        if reason:
            return reason
        missing = [b for b in ("ip", "nsenter", "unshare", "mount", "hostname") if shutil.which(b) is None]
        if missing:
            return f"{', '.join(missing)} not installed (iproute2 / util-linux; `bash .ci/install-slurm.sh`)"
        if not os.path.isdir("/etc/slurm"):
            return "/etc/slurm does not exist (Debian's slurm-wlm creates it; `bash .ci/install-slurm.sh`)"
        probe = f"{PREFIX}-{os.getpid()}-probe"
        r = _ip("netns", "add", probe, check=False)
        if r.returncode != 0:
            return f"cannot create a network namespace here (`ip netns add`: {r.stderr.strip()}); needs root " \
                   "with CAP_NET_ADMIN and CAP_SYS_ADMIN"
        try:
            r = _ip("link", "add", f"cxr{os.getpid()}p"[:15], "type", "veth", "peer", "name", "eth0",
                    "netns", probe, check=False)
            if r.returncode != 0:
                return f"cannot create a veth pair here (`ip link add ... type veth`: {r.stderr.strip()})"
            r = subprocess.run(["nsenter", f"--net=/run/netns/{probe}", "unshare", "--mount", "--uts", "true"],
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                return f"cannot create a UTS namespace here (`unshare --uts`: {r.stderr.strip()})"
        finally:
            _ip("netns", "del", probe, check=False)  # takes the veth pair with it
        return None

    # ------------------------------------------------------------------ network
    def _pick_subnet(self) -> ipaddress.IPv4Network:
        """A private /24 (10.213.x, else 172.29.x or 192.168.x) that no address or route of this machine overlaps."""
        used = []
        for args in (("-4", "-o", "addr", "show"), ("-4", "route", "show", "table", "all")):
            out = _ip(*args, check=False).stdout
            for tok in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", out):
                try:
                    used.append(ipaddress.ip_network(tok, strict=False))
                except ValueError:
                    pass
        start = os.getpid() % 250
        for base in ("10.213", "172.29", "192.168"):  # private ranges; the next where a VPN routes all of 10/8
            for k in range(250):
                net = ipaddress.ip_network(f"{base}.{(start + k) % 250 + 1}.0/24")
                if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
                    return net
        raise RuntimeError("no free /24 in 10.213.0.0/16, 172.29.0.0/16 or 192.168.0.0/16 for the test network")

    def _make_network(self) -> None:
        self.subnet = self._pick_subnet()
        hosts = list(self.subnet.hosts())
        self.ctl_addr = str(hosts[0])
        self.addresses = {CTL_NAME: self.ctl_addr}
        for i, node in enumerate(self.nodenames):
            self.addresses[node] = str(hosts[i + 1])
        sw = self.switch_ns
        _ip("netns", "add", sw)
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "link", "set", "br0", "up")
        _ip("-n", sw, "link", "set", "lo", "up")
        # the root namespace's port: 10.R.S.1 here, its peer a bridge port in the switch namespace
        _ip("link", "add", self.root_veth, "type", "veth", "peer", "name", "pc", "netns", sw)
        _ip("addr", "add", f"{self.ctl_addr}/{self.subnet.prefixlen}", "dev", self.root_veth)
        _ip("link", "set", self.root_veth, "up")
        _ip("-n", sw, "link", "set", "pc", "master", "br0", "up")
        for i, (node, ns) in enumerate(self.namespaces.items()):
            _ip("netns", "add", ns)
            _ip("-n", sw, "link", "add", f"p{i + 1}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", sw, "link", "set", f"p{i + 1}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.addresses[node]}/{self.subnet.prefixlen}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        for node in self.nodenames:
            lines = ["127.0.0.1 localhost"]
            if self.own_name_loopback:  # Debian's default: the machine's own name on 127.0.1.1, listed first
                lines.append(f"127.0.1.1 {node}")
            lines += [f"{addr} {name}" for name, addr in self.addresses.items()]
            self.hosts_file(node).write_text("\n".join(lines) + "\n")
        # names come from the hosts file only: no DNS query ever leaves a node
        self.nsswitch_file.write_text("passwd: files\ngroup: files\nshadow: files\nhosts: files\n")

    def _remove_network(self) -> None:
        for ns in [*self.namespaces.values(), self.switch_ns]:
            if ns in netns_names():
                _ip("netns", "del", ns, check=False)
        if _ip("link", "show", self.root_veth, check=False).returncode == 0:
            _ip("link", "del", self.root_veth, check=False)

    def hosts_file(self, node: str) -> Path:
        """The node's /etc/hosts."""
        return self._require_root() / "etc" / f"hosts.{node}"

    @property
    def nsswitch_file(self) -> Path:
        return self._require_root() / "etc" / "nsswitch.conf"

    def in_node(self, node: str, argv: list[str]) -> list[str]:
        """argv run as on ``node``: its network namespace, UTS hostname and hosts file."""
        script = ('mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/nsswitch.conf '
                  '&& mount --bind "$2" /etc/slurm && hostname "$3" && shift 3 && exec "$@"')
        # not `ip netns exec`: it remounts /sys for the namespace, which hides /sys/fs/cgroup from slurmd
        return ["nsenter", f"--net=/run/netns/{self.namespaces[node]}", "unshare", "--mount", "--uts",
                "--propagation", "private", "sh", "-c", script, str(self.hosts_file(node)), str(self.nsswitch_file),
                str(self.conf_dir), node, *argv]

    # ------------------------------------------------------------------ config
    def _write_config(self) -> None:
        super()._write_config()  # gres/cgroup/plugstack/jobcomp.lua files and the srun wrapper
        root = self._require_root()
        conf = self.slurm_conf.read_text()
        conf = conf.replace("(LocalSlurm): single-node test cluster", "(NetnsSlurm): two nodes in network namespaces")
        conf = re.sub(r"(?m)^SlurmctldHost=.*$", f"SlurmctldHost={self.nodename}({self.ctl_addr})", conf)
        conf = re.sub(r"(?m)^SlurmdSpoolDir=.*$", f"SlurmdSpoolDir={root}/spool/%n", conf)
        conf = re.sub(r"(?m)^SlurmdPidFile=.*$", f"SlurmdPidFile={root}/run/slurmd-%n.pid", conf)
        conf = re.sub(r"(?m)^SlurmdLogFile=.*$", f"SlurmdLogFile={root}/log/slurmd-%n.log", conf)
        node_line = re.search(r"(?m)^NodeName=\S+ NodeAddr=\S+ NodeHostname=\S+ (.*) State=UNKNOWN$", conf).group(1)
        nodes = "\n".join(
            f"NodeName={n} NodeAddr={self.addresses[n]} NodeHostname={n} {node_line} State=UNKNOWN"
            for n in self.nodenames
        )
        conf = re.sub(r"(?m)^NodeName=.*$", lambda _m: nodes, conf)
        conf = re.sub(r"(?m)^PartitionName=(\S+) Nodes=\S+", lambda m: f"PartitionName={m.group(1)} Nodes="
                      + ",".join(self.nodenames), conf)
        self.slurm_conf.write_text(conf)
        for n in self.nodenames:
            (root / "spool" / n).mkdir(mode=0o755, exist_ok=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60) -> "NetnsSlurm":
        remove_stale_namespaces()
        return super().start(timeout)  # type: ignore[return-value]

    def _start_munge(self) -> None:
        super()._start_munge()
        self._make_network()  # needs the temp dir (hosts file); before the config, which names the addresses

    def _start_daemons(self, timeout: float) -> None:
        conf = str(self.slurm_conf)
        self._spawn("slurmctld", [self._bins["slurmctld"], "-D", "-c", "-f", conf])
        self._wait_for(self._ctld_up, timeout, "slurmctld to answer `scontrol ping`")
        for n in self.nodenames:
            self._spawn(f"slurmd-{n}", self.in_node(n, [self._bins["slurmd"], "-D", "-f", conf, "-N", n]))
        self._wait_for(self._node_idle, timeout, f"nodes {', '.join(self.nodenames)} to be idle in sinfo")

    def node_states(self) -> dict[str, str]:
        r = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False, timeout=15)
        return dict(line.split() for line in r.stdout.splitlines() if len(line.split()) == 2)

    def node_state(self) -> str:
        states = set(self.node_states().values())
        return states.pop() if len(states) == 1 else ",".join(sorted(states))

    def _node_idle(self) -> bool:
        states = self.node_states()
        return all(states.get(n) == "idle" for n in self.nodenames)

    def stop(self) -> None:
        names = [n for n in self._procs if n.startswith("slurmd-")]
        self.cancel_jobs()
        for name in names:
            self._terminate(self._procs.pop(name))
        try:
            super().stop()  # slurmctld, munged, leftover slurmstepds, the temp dir
        finally:
            self._remove_network()

    # ------------------------------------------------------------------ faults
    def pids_on(self, node: str, cmdline_part: bytes) -> list[int]:
        """Processes of this cluster on ``node`` (its network namespace) whose command line holds ``cmdline_part``."""
        target = os.stat(f"/run/netns/{self.namespaces[node]}").st_ino
        pids = []
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                if cmdline_part not in (pid_dir / "cmdline").read_bytes():
                    continue
                if os.stat(pid_dir / "ns" / "net").st_ino != target:
                    continue
            except OSError:
                continue
            pids.append(int(pid_dir.name))
        return sorted(pids)

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self._node_idle():
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes not idle after {timeout:.0f}s: {self.node_states()}\n{self.logs()}")
            time.sleep(0.2)
