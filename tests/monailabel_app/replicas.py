"""Several MONAI Label servers sharing one studies folder and weights folder, behind a least-connections proxy.

The loopback stand-in for the README's deployment recipe (nginx ``least_conn`` in front of replicas):
:func:`running_replicas` starts ``n`` servers as the README documents them (each on its own port, the same
``--studies``, ``--conf model_dir`` and ``--conf work_dir``), and :class:`LeastConnProxy` forwards each TCP
connection to the replica with the fewest open connections (HTTP/1.1 passes through unchanged), skipping a
replica that refuses connections.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from label_server import LabelServer, running_server

logger = logging.getLogger(__name__)


class LeastConnProxy:
    """A TCP proxy on ``127.0.0.1:<port>`` spreading connections over ``backends`` (least connections first).

    Args:
        backends: ``(host, port)`` of each replica.
    """

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.active = [0] * len(backends)
        self.served = [0] * len(backends)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with suppress(Exception):
            writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        tried: set[int] = set()
        while len(tried) < len(self.backends):
            # pick and count before any await, so that connections arriving together spread out
            index = min(
                (i for i in range(len(self.backends)) if i not in tried),
                key=lambda i: (self.active[i], self.served[i]),
            )
            tried.add(index)
            self.active[index] += 1
            try:
                backend_r, backend_w = await asyncio.open_connection(*self.backends[index])
            except OSError:
                self.active[index] -= 1
                logger.warning("replica %s refused the connection; trying the next", self.backends[index])
                continue
            self.served[index] += 1
            try:
                await asyncio.gather(self._pipe(client_r, backend_w), self._pipe(backend_r, client_w))
            finally:
                self.active[index] -= 1
            return
        client_w.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> LeastConnProxy:
        self._thread.start()
        self._ready.wait(30)
        return self

    async def _shutdown(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop.stop()

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._shutdown()))
        self._thread.join(10)


@contextmanager
def running_replicas(
    studies: Path, work: Path, conf: dict[str, str], n: int, env: dict[str, str] | None = None
) -> Iterator[tuple[LeastConnProxy, list[LabelServer]]]:
    """``n`` servers sharing ``studies`` and ``work/models`` (weights) and ``work/work`` (training runs),
    behind a :class:`LeastConnProxy`; all stopped at the end.

    Args:
        studies: the shared studies folder.
        work: a temporary folder (each replica logs and keeps sessions in ``work/replica<i>``).
        conf: extra ``--conf`` pairs for every replica.
        n: number of replicas.
        env: extra environment variables.
    """
    shared = {"model_dir": str(work / "models"), "work_dir": str(work / "work"), **conf}
    with ExitStack() as stack:
        servers = []
        for i in range(n):
            folder = work / f"replica{i}"
            folder.mkdir(parents=True, exist_ok=True)
            servers.append(stack.enter_context(running_server(studies, folder, shared, env)))
        backends = [("127.0.0.1", int(s.url.rsplit(":", 1)[1])) for s in servers]
        proxy = stack.enter_context(LeastConnProxy(backends))
        yield proxy, servers
