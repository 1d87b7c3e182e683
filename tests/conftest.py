"""Shared fixtures: the launched app on loopback (one launch per test module)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    """Launch ``app.demo`` on 127.0.0.1 with the public settings; yields its URL, closes it after."""
    import app
    from sepvit_viz import limits
    from sepvit_viz.serving import page

    port = free_port()
    app.demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        max_file_size=limits.MAX_UPLOAD_BYTES,
        show_error=False,
        **page.LAUNCH_STYLE,
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.demo.close()
