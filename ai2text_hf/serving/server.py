"""Running the API in a background thread of the current process (tests, notebooks, embedding).

``ai2text serve`` runs uvicorn in the foreground instead; both serve the same app.
"""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI


def uvicorn_options(app: FastAPI) -> dict:
    """What uvicorn must know of the app's settings: the largest WebSocket message (uvicorn's default is 16 MiB)."""
    return {"ws_max_size": app.state.settings.streams.max_message_bytes}


class BackgroundServer:
    """uvicorn serving ``app`` from a daemon thread; ``port=0`` picks a free port (see :attr:`url`).

    Use as a context manager: entering waits until the server accepts connections, leaving shuts it down.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 60.0):
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", **uvicorn_options(app))
        self.server = uvicorn.Server(config)
        self.startup_timeout = startup_timeout
        self._thread = threading.Thread(target=self.server.run, name="ai2text-server", daemon=True)
        self.url = ""

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see the log above)")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self._thread.join()
