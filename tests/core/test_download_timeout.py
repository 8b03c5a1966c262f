"""Every download has a timeout: torchvision's real download code, pointed at a loopback server
that accepts the connection and never answers, gives up after DOWNLOAD_TIMEOUT_S and the run
fails in one line naming the missing files (instead of hanging)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import torchvision

from cl_core.config import RunConfig
from cl_core.data import datasets as datasets_module
from cl_core.data import load_dataset
from cl_core.data.datasets import download_timeout
from cl_core.errors import ClsweepError


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A loopback HTTP address that accepts connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/", accepted
    stop.set()
    thread.join(timeout=5)
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.mark.parametrize(
    ("name", "n_tasks", "point_at"),
    [
        (
            "split-mnist",
            5,
            lambda url, mp: mp.setattr(torchvision.datasets.MNIST, "mirrors", [url]),
        ),
        (
            "split-cifar10",
            5,
            lambda url, mp: mp.setattr(torchvision.datasets.CIFAR10, "url", f"{url}c.tar.gz"),
        ),
    ],
    ids=["mnist", "cifar10"],
)
def test_a_stalled_download_times_out(
    tmp_path, monkeypatch, silent_server, name, n_tasks, point_at
):
    url, accepted = silent_server
    point_at(url, monkeypatch)
    monkeypatch.setattr(datasets_module, "DOWNLOAD_TIMEOUT_S", 0.5)
    before = socket.getdefaulttimeout()
    started = time.monotonic()
    with pytest.raises(ClsweepError, match="not found: .* and the download failed") as err:
        load_dataset(RunConfig(benchmark=name, n_tasks=n_tasks, data_root=str(tmp_path)))
    elapsed = time.monotonic() - started
    assert accepted  # the download really reached the server, which never answered
    assert elapsed < 20, elapsed  # a few timeouts of 0.5 s, not a hang
    assert "\n" not in str(err.value)
    assert socket.getdefaulttimeout() == before  # the process-wide setting is restored


def test_download_timeout_sets_and_restores_the_socket_default():
    before = socket.getdefaulttimeout()
    with download_timeout(7.0):
        assert socket.getdefaulttimeout() == 7.0
        with socket.create_server(("127.0.0.1", 0)) as server:
            client = socket.create_connection(server.getsockname())
            assert client.gettimeout() == 7.0  # every new socket inherits it
            client.close()
    assert socket.getdefaulttimeout() == before
