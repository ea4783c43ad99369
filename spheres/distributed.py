"""Runs over several processes: JAX's multi-controller model, one process per host.

Every process runs the same command; `initialize` connects them (``jax.distributed.initialize``)
before JAX touches a device, after which ``jax.devices()`` lists every process's devices and the
``data`` mesh (`spheres.sharding`) spans them all. Process 0 is the *writer*: it alone reads and
writes the run directory; the others receive what it read (`on_writer`, `broadcast_bytes`), so the
directory need not be on a shared filesystem.

    spheres run EXP --coordinator HOST:PORT --num-processes N --process-id I

or, under a scheduler whose variables JAX understands (SLURM with several tasks, Open MPI, Cloud
TPU pods, Kubernetes), ``--distributed`` (also implied by ``SLURM_NTASKS`` > 1 or
``OMPI_COMM_WORLD_SIZE`` > 1): ``jax.distributed.initialize()`` without arguments.

With explicit arguments the processes first meet on the coordinator's port (`_rendezvous`), which
turns the failures JAX reports by aborting the process (an unreachable coordinator, a process that
never starts, disagreeing counts) into one clear line within ``timeout`` seconds. The connections of
that meeting stay open as a watchdog: when a process dies (killed, crashed, out of memory) every
other process stops at once with one line naming it, instead of waiting in a collective for JAX's
heartbeat timeout. See docs/multi-process.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

import numpy as np


class DistributedError(ValueError):
    """A bad launch (flags, coordinator, process count): the message says what to fix."""


class PeerError(ValueError):
    """An error raised on the writer (process 0), re-raised on every other process."""


EXIT_PEER_LOST = 1          # another process died or failed: rerun every process to resume
DEFAULT_TIMEOUT = 300       # seconds to wait for the coordinator and every process at start-up
_GRACE = 10.0               # seconds a process whose peer reported an error waits for its own


@dataclasses.dataclass(frozen=True)
class Launch:
    """How this process joins a run: explicit (coordinator, count, id) or ``auto`` (from the
    cluster's environment variables)."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False
    timeout: int = DEFAULT_TIMEOUT

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.coordinator.rpartition(":")
        return host.strip("[]"), int(port)


def cluster_environment(environ=None) -> str | None:
    """The scheduler whose variables say this is one of several processes, or None: ``slurm``
    (``SLURM_NTASKS`` > 1; a job array's single-task jobs are independent runs), ``openmpi``."""
    env = os.environ if environ is None else environ

    def count(name):
        try:
            return int(env.get(name, "1"))
        except ValueError:
            return 1

    if "SLURM_JOB_ID" in env and "SLURM_PROCID" in env and count("SLURM_NTASKS") > 1:
        return "slurm"
    if "OMPI_MCA_orte_hnp_uri" in env and count("OMPI_COMM_WORLD_SIZE") > 1:
        return "openmpi"
    return None


def parse_launch(coordinator: str | None, num_processes: int | None, process_id: int | None, *,
                 auto: bool = False, timeout: int = DEFAULT_TIMEOUT, environ=None) -> Launch | None:
    """Check the launch flags; None for a single-process run. Raises `DistributedError` naming the
    fix for: flags given without the others, a malformed ``HOST:PORT``, a count below 1, a process
    id outside ``[0, count)``, a timeout below 1 s."""
    given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    if timeout is None or timeout < 1:
        raise DistributedError(f"--init-timeout must be at least 1 second (got {timeout})")
    if all(v is None for v in given.values()):
        if auto or cluster_environment(environ):
            return Launch(auto=True, timeout=int(timeout))
        return None
    if auto:
        raise DistributedError("--distributed reads the cluster's variables; it does not go with "
                               "--coordinator, --num-processes or --process-id")
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise DistributedError(f"{', '.join(missing)} missing: --coordinator HOST:PORT, "
                               f"--num-processes N and --process-id I go together")
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise DistributedError(f"--coordinator {coordinator!r}: expected HOST:PORT with a port in "
                               f"1..65535, e.g. 127.0.0.1:12355 (the address of process 0)")
    if num_processes < 1:
        raise DistributedError(f"--num-processes must be at least 1 (got {num_processes})")
    if not 0 <= process_id < num_processes:
        raise DistributedError(f"--process-id {process_id} is outside 0..{num_processes - 1} "
                               f"(--num-processes {num_processes}): number the processes from 0")
    if num_processes == 1:
        return None
    return Launch(coordinator, num_processes, process_id, timeout=int(timeout))


# ------------------------------------------------------------------------------ start-up

_WATCH: "_Watchdog | None" = None


def initialize(launch: Launch | None) -> None:
    """Join the run described by ``launch`` (nothing for None); must come before any JAX call that
    touches a device. CPU collectives go through gloo."""
    global _WATCH
    if launch is None:
        return
    peers = None if launch.auto else _rendezvous(launch)
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        if launch.auto:
            jax.distributed.initialize(initialization_timeout=launch.timeout)
        else:
            jax.distributed.initialize(launch.coordinator, launch.num_processes, launch.process_id,
                                       initialization_timeout=launch.timeout,
                                       shutdown_timeout_seconds=min(launch.timeout, 60))
            _WATCH = _Watchdog(peers, launch.process_id, launch.num_processes)
    except RuntimeError as e:      # called twice, or after JAX already started its backends
        raise DistributedError(f"cannot start the multi-process run: {e}") from None
    # JAX's preemption handler takes SIGTERM; a scheduler's SIGTERM should stop the run (the peers
    # then stop through the watchdog) and the rerun resumes from the last checkpoint
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _rendezvous(launch: Launch) -> dict[int, socket.socket]:
    """Meet every process on the coordinator's port before JAX does: process 0 listens and every
    other process connects (retrying until ``timeout``) and says ``(count, id)``. Returns the open
    connections (process 0: one per peer; others: the one to process 0)."""
    host, port = launch.host_port
    n, me, deadline = launch.num_processes, launch.process_id, time.time() + launch.timeout
    hello = struct.Struct("!4sII")
    if me != 0:
        last = None
        while time.time() < deadline:
            try:
                conn = socket.create_connection((host, port), timeout=5)
                conn.sendall(hello.pack(b"SPHR", n, me))
                reply = conn.recv(64)
                if not reply:       # an old listener closing: try again
                    conn.close()
                    raise ConnectionResetError("closed")
                if not reply.startswith(b"ok"):
                    raise DistributedError(f"process 0 at {launch.coordinator} refused process "
                                           f"{me}: {reply.decode(errors='replace').strip()}")
                conn.settimeout(None)
                return {0: conn}
            except OSError as e:
                last = e
                time.sleep(0.5)
        raise DistributedError(f"cannot reach the coordinator {launch.coordinator} within "
                               f"{launch.timeout} s ({getattr(last, 'strerror', None) or last}); "
                               f"start process 0 there, check HOST:PORT and the firewall, or raise "
                               f"--init-timeout")
    try:
        srv = socket.create_server(("", port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as e:
        raise DistributedError(f"process 0 cannot listen on port {port} ({e.strerror}); choose a "
                               f"free port for --coordinator") from None
    peers: dict[int, socket.socket] = {}
    try:
        while len(peers) < n - 1:
            left = deadline - time.time()
            if left <= 0:
                absent = sorted(set(range(1, n)) - set(peers))
                raise DistributedError(f"only {len(peers) + 1} of {n} processes connected to "
                                       f"{launch.coordinator} within {launch.timeout} s (missing "
                                       f"process ids {', '.join(map(str, absent))}); start every "
                                       f"process, or raise --init-timeout")
            srv.settimeout(min(left, 5))
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                magic, their_n, their_id = hello.unpack(conn.recv(hello.size, socket.MSG_WAITALL))
            except (OSError, struct.error):
                conn.close()
                continue
            problem = (f"--num-processes {their_n} differs from process 0's {n}" if their_n != n
                       else f"process id {their_id} is already connected" if their_id in peers
                       else "" if magic == b"SPHR" else "not a spheres process")
            if problem:
                conn.sendall(f"refused: {problem}".encode())
                conn.close()
                if magic == b"SPHR":
                    raise DistributedError(f"process {their_id} {problem}; every process needs the "
                                           f"same --num-processes and its own --process-id")
                continue
            conn.sendall(b"ok")
            conn.settimeout(None)
            peers[their_id] = conn
    except BaseException:
        for c in peers.values():
            c.close()
        raise
    finally:
        srv.close()
    return peers


class _Watchdog:
    """Stops this process when another one of the run dies. Each connection of the rendezvous
    carries one byte at the end: ``B`` (finished) or ``E`` (failed with an error of its own); a
    connection that closes without it means the process died.

    Process 0 hosts JAX's coordination service, and JAX aborts every other process the moment that
    service goes away. So process 0, when it leaves early (its own error, or a peer lost), first
    waits for the other processes to close their connections, that is to exit, for at most
    ``2 * _GRACE`` seconds: a peer with the same error reports it itself, and one waiting in a
    collective stops after ``_GRACE`` with the line naming process 0."""

    def __init__(self, peers: dict[int, socket.socket], me: int, n: int):
        self.peers, self.me, self.n = dict(peers), me, n
        self._all = list(peers.values())       # every connection, also those already finished
        self._done = False
        threading.Thread(target=self._watch, name="spheres-peer-watchdog", daemon=True).start()

    def _watch(self) -> None:
        failed_at = None
        while self.peers and not self._done:
            socks = {s: pid for pid, s in self.peers.items()}
            ready, _, _ = select.select(list(socks), [], [], 1.0)
            for s in ready:
                pid = socks[s]
                try:
                    msg = s.recv(1)
                except OSError:
                    msg = b""
                if self._done:
                    return
                if msg == b"B":
                    del self.peers[pid]
                elif msg == b"E":
                    del self.peers[pid]
                    failed_at = failed_at or (pid, time.time())
                else:
                    self._die(f"process {pid} of {self.n} stopped without finishing (killed, "
                              f"crashed or out of memory); stopping process {self.me} too. Rerun "
                              f"the same command on every process to resume from the last checkpoint")
            if failed_at and time.time() - failed_at[1] > _GRACE and not self._done:
                self._die(f"process {failed_at[0]} of {self.n} failed (see its error); stopping "
                          f"process {self.me} too")

    def finish(self, ok: bool) -> None:
        """Send ``B`` (``ok``) or ``E`` to the peers still running; on process 0 after a failure,
        return only once they have exited (or ``2 * _GRACE`` seconds have passed)."""
        self._done = True
        for s in list(self.peers.values()):     # the watch thread may still drop a finished peer
            try:
                s.sendall(b"B" if ok else b"E")
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if not ok and self.me == 0:
            self._outlive(2 * _GRACE)
        for s in self._all:
            s.close()

    def _outlive(self, timeout: float) -> None:
        """Wait until every peer has closed its connection (it exited), at most ``timeout`` s. The
        watch thread may read the same sockets, hence non-blocking reads."""
        deadline, waiting = time.time() + timeout, list(self._all)
        while waiting and (left := deadline - time.time()) > 0:
            ready, _, _ = select.select(waiting, [], [], min(left, 1.0))
            for s in ready:
                try:
                    gone = not s.recv(64, socket.MSG_DONTWAIT)
                except BlockingIOError:         # the watch thread took the byte
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    waiting.remove(s)

    def _die(self, message: str) -> None:
        print(f"spheres: error: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        if self.me == 0:            # the others stop after _GRACE, before the service goes
            self.finish(False)
        os._exit(EXIT_PEER_LOST)


def finish(ok: bool) -> None:
    """Tell the other processes this one is done (``ok``) or failed with its own error."""
    if _WATCH is not None:
        _WATCH.finish(ok)


def abandon(code: int) -> None:
    """Exit now without JAX's shutdown handshake (which waits for processes that may be gone)."""
    finish(False)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def native_stdout_to_stderr(active: bool = True):
    """Send what native code prints on stdout (gloo's connection messages) to stderr while the
    block runs, so that stdout carries only the result table."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# ------------------------------------------------------------------------------ the writer

def process_count() -> int:
    import jax

    return jax.process_count()


def jax_process() -> int:
    import jax

    return jax.process_index()


def process_count_if_started() -> int:
    """``jax.process_count()`` if this process joined a multi-process run, else 1 (without starting
    JAX's backends)."""
    if "jax" not in sys.modules:
        return 1
    import jax

    return jax.process_count() if jax.distributed.is_initialized() else 1


def is_writer() -> bool:
    """True on process 0 (and on a single-process run): the process that writes the run directory."""
    import jax

    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches ``barrier(name)`` (nothing on one process)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def broadcast_bytes(data: bytes | None) -> bytes:
    """Process 0's ``data`` on every process (the others pass None)."""
    if process_count() == 1:
        return data
    from jax.experimental import multihost_utils

    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(data) if is_writer() else 0)))
    buf = (np.frombuffer(data, np.uint8) if is_writer() else np.zeros(size, np.uint8))
    buf = np.concatenate([buf, np.zeros(1, np.uint8)])      # never an empty array
    return np.asarray(multihost_utils.broadcast_one_to_all(buf)).astype(np.uint8).tobytes()[:size]


def broadcast_tree(tree):
    """Process 0's pytree of arrays on every process (the others pass arrays of the same shapes)."""
    if process_count() == 1:
        return tree
    import jax
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(tree))


def on_writer(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` run on process 0 only; its JSON-able result (or its error, re-raised
    as `PeerError` with the same message) on every process."""
    if process_count() == 1:
        return fn(*args, **kwargs)
    if is_writer():
        try:
            result = fn(*args, **kwargs)
        except Exception as e:
            broadcast_bytes(json.dumps({"error": str(e) or type(e).__name__}).encode())
            raise
        broadcast_bytes(json.dumps({"result": result}).encode())
        return result
    outcome = json.loads(broadcast_bytes(None))
    if "error" in outcome:
        raise PeerError(outcome["error"])
    return outcome["result"]
