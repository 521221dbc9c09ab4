"""A real two-node SLURM cluster on this one machine for the tests, brought up without systemd.

``slurm_cluster`` (a pytest session fixture) installs Debian's ``slurm-wlm`` and ``munge`` with
apt-get when ``slurmctld`` is missing and we are root, then starts a private cluster:

* everything lives in a fresh ``/tmp/mlff2d-slurm-XXXX`` directory: munge key and socket,
  ``slurm.conf``/``gres.conf``, state, spool, logs and pid files; clients find it through
  ``SLURM_CONF`` (set in ``os.environ`` for the session, so Snakemake, its SLURM plugin and the
  jobs, which SLURM starts with ``--export=ALL``, all talk to this cluster);
* its own ports (free ones, chosen at start), so it never meets a system SLURM or a cluster of
  another test session on the same machine;
* ``munged`` as user munge, ``slurmctld`` and the ``slurmd``s as root in their forking mode;
* two nodes on this one machine, each a ``slurmd`` of its own (``slurmd -N <node>``, its own
  port, spool, pid and log file), each with the machine's CPUs and memory: ``n1`` has 4 fake
  GPUs (``gres.conf`` with empty files as devices), so that ``--gpus=4`` can be submitted and
  scheduled on a machine without GPUs; ``n2`` has none;
* two partitions, as on a real site: ``mlff2dcpu`` (the default, node ``n2``, no GPUs, 1 day)
  and ``mlff2dgpu`` (node ``n1``, the GPUs, 2 days), which ``mlff2d slurm-profile`` finds.

Only two things skip the tests: not being root, and not being able to install the packages
(``ClusterUnavailable``). Anything that goes wrong after that (a bad generated slurm.conf, a
daemon that does not come up) is a bug here or in the machine, and fails them
(``ClusterStartError``, with the daemons' logs).

Pitfalls handled here (see also ../shared/FACTS.md, "SLURM on one machine"):

* no accounting database: ``sacct`` fails, so the profile's ``slurm-status-command: squeue``
  needs ``MinJobAge`` well above the plugin's status-check delays (finished jobs must stay
  visible to ``squeue``); the test runs pass ``--slurm-status-command squeue`` too;
* ``DefMemPerCPU``: without it a job without ``--mem`` takes the whole node;
* ``JobCompType=jobcomp/filetxt`` writes one line per finished job (id, name, state, time
  limit, ...): the record that jobs went through SLURM, since there is no ``sacct``;
* ``JobAcctGatherParams=OverMemoryKill`` enforces ``--mem`` without cgroups (a step above its
  memory is killed, the job ends ``OUT_OF_MEMORY``);
* the Snakemake SLURM job step (snakemake-executor-plugin-slurm-jobstep 0.6) removes every
  ``SLURM_*`` variable, ``SLURM_CONF`` included, before its ``srun`` inside the job, so that
  ``srun`` would look for ``/etc/slurm/slurm.conf``: ``<root>/bin`` holds small wrappers of the
  client commands (``srun``, ``sbatch``, ``squeue``, ...) that set ``SLURM_CONF`` and are put
  first on ``PATH`` (a real cluster has its configuration in the standard place, or configless);
* ``AuthInfo=cred_expire``: a requeued job waits this long before it starts again (default 120 s);
* stale clusters of earlier sessions (their owner holds a lock on ``owner.lock``; a directory
  whose lock is free belongs to a dead session) are stopped by their own pid files and removed.

``python tests/slurm_cluster.py`` starts one by hand and prints the ``SLURM_CONF`` to export.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PREFIX = "mlff2d-slurm-"
#: Fake GPUs on the node (count-only GRES).
N_GPUS = 4
GPU_TYPE = "fakegpu"
#: The node's feature (for ``--constraint``).
FEATURE = "testnode"
#: The default partition (CPU node only) and the partition with the GPU node.
PARTITION = "mlff2dcpu"
GPU_PARTITION = "mlff2dgpu"
GPU_NODE, CPU_NODE = "n1", "n2"
NODES = (GPU_NODE, CPU_NODE)
#: Partition time limits as sinfo prints them.
TIME_LIMITS = {PARTITION: "1-00:00:00", GPU_PARTITION: "2-00:00:00"}
PACKAGES = ("slurm-wlm", "munge")
#: Client commands wrapped so that they find this cluster's slurm.conf (see the module docstring).
CLIENTS = ("srun", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "sacct", "sacctmgr", "sshare", "salloc")


class ClusterUnavailable(RuntimeError):
    """SLURM cannot be installed here: not root, or apt-get cannot install it (tests skip)."""


class ClusterStartError(RuntimeError):
    """SLURM is installed but the test cluster did not come up (tests fail, with the logs)."""


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    partition: str = PARTITION
    gpu_partition: str = GPU_PARTITION
    nodes: tuple[str, ...] = NODES
    n_gpus: int = N_GPUS
    lock: object | None = None

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this cluster: SLURM_CONF, and the client shims first on PATH."""
        return {"SLURM_CONF": str(self.conf), "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}

    def run(self, *cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def jobcomp(self) -> list[dict[str, str]]:
        """Finished jobs as recorded by jobcomp/filetxt: one dict per job (JobId, JobName,
        JobState, TimeLimit, ...; WorkDir etc.)."""
        path = self.root / "jobcomp.txt"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            rows.append(dict(re.findall(r"(\w+)=(\S*)", line)))
        return rows

    def squeue(self) -> list[tuple[str, str]]:
        """(job id, state) of every job the controller still knows (MinJobAge keeps finished ones)."""
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i|%T", check=False).stdout
        return [tuple(line.split("|", 1)) for line in out.split()]  # type: ignore[misc]

    def log(self, name: str = "slurmctld") -> str:
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        _stop_daemons(self.root)
        if self.lock is not None:
            self.lock.close()  # type: ignore[attr-defined]
            self.lock = None
        shutil.rmtree(self.root, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_pidfile(pidfile: Path, timeout: float = 15) -> None:
    """SIGTERM (then SIGKILL) the process named by ``pidfile``, if it is one of ours."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return
    if str(pidfile.parents[1]) not in cmdline:  # a reused pid: not a daemon of this directory
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while _pid_alive(pid) and time.time() < deadline:
        time.sleep(0.2)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def _stop_daemons(root: Path) -> None:
    """Stop the slurmds, slurmctld and munged of the cluster in ``root`` by their pid files."""
    for pidfile in (*sorted((root / "run").glob("slurmd*.pid")), root / "run" / "slurmctld.pid",
                    root / "run" / "munged.pid"):
        _stop_pidfile(pidfile)


def cleanup_stale(tmp: Path | None = None) -> None:
    """Stop and remove clusters left behind by dead sessions (their owner lock is free)."""
    tmp = tmp or Path(tempfile.gettempdir())
    for root in tmp.glob(f"{PREFIX}*"):
        lock_path = root / "owner.lock"
        try:
            handle = open(lock_path, "a")
        except OSError:
            shutil.rmtree(root, ignore_errors=True)
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live session owns it
            handle.close()
            continue
        _stop_daemons(root)
        handle.close()
        shutil.rmtree(root, ignore_errors=True)


def ensure_installed() -> None:
    """Install slurm-wlm and munge with apt-get when slurmctld is missing (root only)."""
    if all(shutil.which(p) for p in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable("SLURM is not installed and we are not root (apt-get install slurm-wlm munge)")
    if not shutil.which("apt-get"):
        raise ClusterUnavailable("SLURM is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]):
        try:
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as exc:
            raise ClusterUnavailable(f"{' '.join(cmd)} timed out") from exc
        if res.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(cmd)} failed: {res.stderr.strip()[-500:]}")
    if not all(shutil.which(p) for p in ("slurmctld", "slurmd", "sbatch", "munged")):
        raise ClusterUnavailable("apt-get install slurm-wlm munge did not provide slurmctld/slurmd/munged")


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4000


def slurm_conf(root: Path, ports: list[int], cpus: int, mem_mb: int) -> str:
    """slurm.conf of the cluster in ``root``: ports[0] for slurmctld, one port per node after it."""
    host = socket.gethostname().split(".")[0]
    run, log, state = root / "run", root / "log", root / "state"
    return f"""\
# A private two-node test cluster on one machine (tests/slurm_cluster.py)
ClusterName=mlff2dtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root / 'munge' / 'munge.socket'},cred_expire=10
StateSaveLocation={state}
SlurmdSpoolDir={root / 'spool'}/%n
SlurmctldPidFile={run / 'slurmctld.pid'}
SlurmdPidFile={run / 'slurmd-%n.pid'}
SlurmctldLogFile={log / 'slurmctld.log'}
SlurmdLogFile={log / 'slurmd-%n.log'}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root / 'jobcomp.txt'}
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=3600
KillWait=5
InactiveLimit=0
ReturnToService=2
JobRequeue=1
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={GPU_NODE} NodeAddr=127.0.0.1 NodeHostname={host} Port={ports[1]} CPUs={cpus} RealMemory={mem_mb} Gres=gpu:{GPU_TYPE}:{N_GPUS} Feature={FEATURE} State=UNKNOWN
NodeName={CPU_NODE} NodeAddr=127.0.0.1 NodeHostname={host} Port={ports[2]} CPUs={cpus} RealMemory={mem_mb} Feature={FEATURE} State=UNKNOWN
PartitionName={PARTITION} Nodes={CPU_NODE} Default=YES MaxTime={TIME_LIMITS[PARTITION]} State=UP
PartitionName={GPU_PARTITION} Nodes={GPU_NODE} MaxTime={TIME_LIMITS[GPU_PARTITION]} State=UP
"""


def start_cluster(timeout: float = 90) -> SlurmCluster:
    """Install if needed, then start munged, slurmctld and the slurmds; wait for the nodes to be idle.

    Raises ClusterUnavailable where SLURM cannot be installed, ClusterStartError where it is
    installed but does not come up."""
    ensure_installed()
    if os.geteuid() != 0:
        raise ClusterUnavailable("starting a private SLURM cluster needs root (slurmd runs jobs as any user)")
    cleanup_stale()
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    root.chmod(0o755)  # munged (user munge) must reach its directory
    lock = open(root / "owner.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    for sub in ("run", "log", "state", "spool", "munge", "bin", *(f"spool/{n}" for n in NODES)):
        (root / sub).mkdir()
    cluster = SlurmCluster(root=root, conf=root / "slurm.conf", lock=lock)
    for name in CLIENTS:
        real = shutil.which(name)
        if real:
            shim = cluster.bin / name
            shim.write_text(f'#!/bin/sh\nSLURM_CONF={cluster.conf} exec {real} "$@"\n')
            shim.chmod(0o755)
    try:
        _start(cluster, timeout)
    except Exception as exc:
        logs = {"slurmctld": cluster.log(), **{f"slurmd-{n}": cluster.log(f"slurmd-{n}") for n in NODES},
                "munged": _read(root / "munge" / "munged.log")}
        cluster.stop()
        text = "\n".join(f"--- {name}:\n{log[-1200:]}" for name, log in logs.items())
        detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else ""
        raise ClusterStartError(f"the test SLURM cluster did not start: {exc} {detail or ''}\nlogs:\n{text}") from exc
    return cluster


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _start(cluster: SlurmCluster, timeout: float) -> None:
    root = cluster.root
    munge_dir = root / "munge"
    munge = pwd.getpwnam("munge")
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for path in (munge_dir, key):
        os.chown(path, munge.pw_uid, munge.pw_gid)
    munge_dir.chmod(0o711)  # munged insists that every client can reach its socket
    subprocess.run(
        ["runuser", "-u", "munge", "--", "munged", f"--key-file={key}", f"--socket={munge_dir / 'munge.socket'}",
         f"--pid-file={munge_dir / 'munged.pid'}", f"--log-file={munge_dir / 'munged.log'}",
         f"--seed-file={munge_dir / 'munged.seed'}"],
        check=True, capture_output=True, text=True, timeout=30,
    )
    (root / "run" / "munged.pid").symlink_to(munge_dir / "munged.pid")

    cpus = os.cpu_count() or 1
    mem = max(1000, _mem_mb() - 512)
    ports = _free_ports(1 + len(NODES))
    cluster.conf.write_text(slurm_conf(root, ports, cpus, mem))
    # fake GPU device files: slurmd counts a GPU per File entry (count-only gpu GRES reports 0)
    (root / "dev").mkdir()
    for i in range(N_GPUS):
        (root / "dev" / f"fakegpu{i}").touch()
    (root / "gres.conf").write_text(
        f"AutoDetect=off\nNodeName={GPU_NODE} Name=gpu Type={GPU_TYPE} File={root / 'dev'}/fakegpu[0-{N_GPUS - 1}]\n"
    )
    env = {**os.environ, "SLURM_CONF": str(cluster.conf)}
    subprocess.run(["slurmctld", "-f", str(cluster.conf)], env=env, check=True, capture_output=True, text=True,
                   timeout=60)
    for node in NODES:
        subprocess.run(["slurmd", "-f", str(cluster.conf), "-N", node], env=env, check=True, capture_output=True,
                       text=True, timeout=60)
    deadline = time.time() + timeout
    states: dict[str, str] = {}
    while time.time() < deadline:
        res = subprocess.run(["sinfo", "--noheader", "-N", "-o", "%N %t"], env=env, capture_output=True, text=True,
                             timeout=20)
        states = dict(line.split() for line in res.stdout.splitlines() if len(line.split()) == 2)
        if sorted(states) == sorted(NODES) and set(states.values()) == {"idle"}:
            return
        if any(s.startswith(("inval", "drain")) for s in states.values()):
            break
        time.sleep(1)
    raise ClusterStartError(f"nodes not idle after {timeout} s (sinfo: {states!r})")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running two-node SLURM cluster; SLURM_CONF points at it for the session.

    Skips where SLURM cannot be installed (not root, apt-get fails); any other start-up error
    (ClusterStartError) fails the tests that use it."""
    try:
        cluster = start_cluster()
    except ClusterUnavailable as exc:
        pytest.skip(f"no SLURM cluster: {exc}")
    saved = {k: os.environ.get(k) for k in cluster.env}
    os.environ.update(cluster.env)
    try:
        yield cluster
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        cluster.stop()


if __name__ == "__main__":
    c = start_cluster()
    c.lock = None  # keep it running after this process exits; stop it with cleanup_stale()
    print(f"export SLURM_CONF={c.conf} PATH={c.bin}:$PATH")
