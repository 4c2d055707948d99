"""Run a list of pure tasks in-process or on Ray, with retries, progress and no silent gaps.

The same task functions run either way and results come back in task order, so a fixed seed gives
identical numbers in-process, on a local Ray instance and on a cluster. A task that still fails
after its retries (an :class:`~engine.errors.NboError`, which would fail again the same way, is
not retried in-process) comes back as a :class:`TaskFailure` in its slot; callers must treat the
run as partial (:mod:`engine.replay.evaluate` reports it as incomplete and never says "go").
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from engine.errors import InvalidParameterError, NboError, ServiceUnavailableError
from engine.policies.rows import THREADS_ENV

LOOPBACK = "127.0.0.1"
#: Seconds a connection to ``--ray-address`` may take before the address counts as unreachable.
CONNECT_TIMEOUT = 3.0


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(*args)``; ``key`` names it in progress and failure reports."""

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class TaskFailure:
    """A task that failed after all its attempts."""

    key: str
    error: str
    attempts: int


@dataclass(eq=False)
class Runner:
    """Executes tasks in-process (``workers=0``) or on Ray.

    Parameters
    ----------
    workers : int or None
        0 runs in-process. Otherwise Ray: a local instance with this many CPUs (None = all), started
        on first use unless Ray is already initialized (then that session is used as is).
    address : str, optional
        Address of an existing Ray cluster (``ray://host:10001`` or ``host:6379``).
    max_retries : int
        Extra attempts for a task that raised or whose worker died.
    progress : bool
        Show a tqdm progress bar on stderr.

    Examples
    --------
    >>> runner = Runner(workers=0, progress=False)
    >>> runner.run([Task("a", pow, (2, 3)), Task("b", pow, (3, 2))])
    [8, 9]
    """

    workers: int | None = 0
    address: str | None = None
    max_retries: int = 2
    progress: bool = True
    _started_ray: bool = field(default=False, init=False, repr=False)
    _warm: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        workers = self.workers
        if workers is not None and (isinstance(workers, bool) or workers < 0):
            raise InvalidParameterError("Runner", "workers", "an int >= 0 or None", workers)
        if self.max_retries < 0:
            raise InvalidParameterError("Runner", "max_retries", "an int >= 0", self.max_retries)

    @property
    def uses_ray(self) -> bool:
        return self.address is not None or self.workers != 0

    @property
    def mode(self) -> str:
        if not self.uses_ray:
            return "in-process"
        return f"ray ({self.address})" if self.address else "ray (local)"

    def _ray(self) -> Any:
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
                # A task holds one CPU: its kernels run on one thread (docs/architecture.md,
                # "Kernels on every core"), not on every core of the node.
                "runtime_env": {"env_vars": {THREADS_ENV: "1"}},
            }
            if self.address:
                check_reachable(self.address)
                kwargs["address"] = self.address
            elif self.workers:
                kwargs["num_cpus"] = self.workers
            if not (self.address or "").startswith("ray://"):
                kwargs["_node_ip_address"] = LOOPBACK  # the project's rule: Ray binds to loopback
            try:
                with _loopback_stays_loopback(self.address):
                    ray.init(**kwargs)
            except ConnectionError as exc:  # the address answered the probe, then not Ray
                raise ServiceUnavailableError(f"no Ray cluster at {self.address}: {exc}") from None
            self._started_ray = True
        return ray

    def warm_up(self) -> None:
        """Start and warm every Ray worker (imports, compiled kernels) in parallel, so the
        first real tasks do not each pay for it; nothing to do in-process."""
        if not self.uses_ray or self._warm:
            return
        ray = self._ray()
        n = max(1, int(ray.available_resources().get("CPU", 1)))
        task = ray.remote(_warm).options(max_retries=self.max_retries)
        ray.get([task.remote(0.2) for _ in range(n)])
        self._warm = True

    def put(self, value: Any) -> Any:
        """Store a large argument once (a Ray object reference) or pass it through in-process."""
        if not self.uses_ray:
            return value
        return self._ray().put(value)

    def run(self, tasks: Sequence[Task], desc: str = "tasks") -> list[Any]:
        """Run every task; results (or :class:`TaskFailure`) in task order."""
        return self.start(tasks, desc)()

    def start(self, tasks: Sequence[Task], desc: str = "tasks") -> Callable[[], list[Any]]:
        """Submit the tasks and return a function that waits for their results (in task
        order), so the caller can work meanwhile. In-process the tasks run right here."""
        bar = tqdm(
            total=len(tasks), desc=desc, file=sys.stderr, disable=not self.progress, leave=False
        )
        if not self.uses_ray:
            try:
                results = [self._run_local(task, bar) for task in tasks]
            finally:
                bar.close()
            return lambda: results
        refs = self._submit(tasks)

        def wait() -> list[Any]:
            try:
                return self._collect(tasks, refs, bar)
            finally:
                bar.close()

        return wait

    def _run_local(self, task: Task, bar: tqdm) -> Any:
        error, attempts = "", 0
        for _attempt in range(self.max_retries + 1):
            attempts += 1
            try:
                result = task.fn(*task.args)
            except NboError as exc:  # bad input fails the same way every time: no retry
                error = f"{type(exc).__name__}: {exc}"
                break
            except Exception as exc:  # a task failure is reported, not raised
                error = f"{type(exc).__name__}: {exc}"
                continue
            bar.update(1)
            return result
        bar.update(1)
        return TaskFailure(task.key, error, attempts)

    def _submit(self, tasks: Sequence[Task]) -> list[Any]:
        ray = self._ray()
        remote: dict[Callable[..., Any], Any] = {}
        refs = []
        for task in tasks:
            if task.fn not in remote:
                remote[task.fn] = ray.remote(task.fn).options(
                    max_retries=self.max_retries, retry_exceptions=True
                )
            refs.append(remote[task.fn].remote(*task.args))
        return refs

    def _collect(self, tasks: Sequence[Task], refs: list[Any], bar: tqdm) -> list[Any]:
        ray = self._ray()
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(tasks)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = index[ref]
                try:
                    results[i] = ray.get(ref)
                except Exception as exc:  # retries are exhausted: report it
                    cause = getattr(exc, "cause", None) or exc
                    results[i] = TaskFailure(
                        tasks[i].key, f"{type(cause).__name__}: {cause}", self.max_retries + 1
                    )
                bar.update(1)
        return results

    def close(self) -> None:
        """Shut down the Ray instance this runner started (a session it found is left alone)."""
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
        self._warm = False


@contextlib.contextmanager
def _loopback_stays_loopback(address: str | None) -> Iterator[None]:
    """Ray rewrites a loopback bootstrap address (127.0.0.1:port) to the machine's routable IP,
    where a cluster bound to 127.0.0.1 does not listen, and then retries for minutes. Its own
    switch for that (``ray_constants.ENABLE_RAY_CLUSTER``, False on macOS and Windows) keeps
    the address as given; it is set only while connecting to a loopback address."""
    host = (address or "").removeprefix("ray://").rpartition(":")[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        yield
        return
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail within about ``timeout`` seconds, with one line, unless a gRPC server (Ray's GCS, or
    its client server for ``ray://``) answers at a Ray address (``ray://host:port`` or
    ``host:port``; ``auto`` is left to Ray): ``ray.init`` would otherwise retry for minutes and
    end in a traceback.

    A TCP connect is not enough (a proxy may accept every connection), so the probe speaks
    HTTP/2 itself (engine.replay does not import grpc): it asks for a gRPC method no server has,
    and a gRPC server answers ``:status 200`` (carrying grpc-status UNIMPLEMENTED); refused,
    silent, closed, or any other status (a proxy's 404) means no cluster there.
    """
    import socket

    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InvalidParameterError("Runner", "address", "ray://HOST:PORT or HOST:PORT", address)
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_grpc_probe(target))
            status = _http2_status(conn)
    except OSError as exc:
        status = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError):
            status = "no answer"
    if status != "200":
        detail = f"HTTP status {status}" if status.isdigit() else status
        raise ServiceUnavailableError(
            f"no Ray cluster at {address} ({detail}; probed for {timeout:g} s)"
        )


def _grpc_probe(authority: str) -> bytes:
    """HTTP/2 preface, empty SETTINGS and one header-only gRPC request (HPACK literals)."""

    def literal(index: int, value: str) -> bytes:
        raw = value.encode()
        return bytes([index]) + bytes([len(raw)]) + raw  # without indexing, 4-bit name index

    block = b"\x83\x86"  # :method POST, :scheme http
    block += literal(4, "/nbo.Probe/Ping") + literal(1, authority[:100])
    block += b"\x0f\x10" + bytes([16]) + b"application/grpc"  # content-type (static index 31)
    block += b"\x00\x02te\x08trailers"
    headers = len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block
    return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + headers


def _http2_status(conn: Any) -> str:
    """The ``:status`` of the first response HEADERS frame on stream 1 ("200" when the static
    HPACK entry says so; "other" for any other encoding), or why there is none."""
    buffer = b""
    while True:
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            kind, flags = buffer[3], buffer[4]
            stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
            payload, buffer = buffer[9 : 9 + length], buffer[9 + length :]
            if kind == 7:  # GOAWAY
                return "connection refused by the server (HTTP/2 GOAWAY)"
            if kind == 1 and stream == 1:
                block = payload
                if flags & 0x8:  # PADDED
                    block = block[1 : len(block) - block[0]]
                if flags & 0x20:  # PRIORITY
                    block = block[5:]
                block = block.lstrip(bytes(range(0x20, 0x40)))  # dynamic table size updates
                if block[:1] == b"\x88":
                    return "200"
                statuses = {0x89: "204", 0x8A: "206", 0x8B: "304", 0x8C: "400", 0x8D: "404"}
                return statuses.get(block[0] if block else 0, "other")
        chunk = conn.recv(65536)
        if not chunk:
            return "connection closed without an HTTP/2 answer"
        buffer += chunk


def _warm(pause: float) -> None:
    import time

    from engine.kernels import prepare
    from engine.replay import candidates  # noqa: F401 - importing is the point

    prepare()
    time.sleep(pause)  # hold this worker so the next warm-up task lands on another
