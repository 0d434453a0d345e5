"""AnvilProcess: starts the real binary on a port it picked, and never leaves a process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from web3 import Web3

from indexing.devnet.anvil import AnvilError, AnvilProcess, anvil_binary_path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("silent", [True, False])
def test_start_stop_without_orphans(silent: bool) -> None:
    with AnvilProcess(silent=silent, chain_id=4242, accounts=3) as anvil:
        pid = anvil.pid
        assert pid is not None
        assert _alive(pid)
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        assert w3.eth.chain_id == 4242
        assert len(w3.eth.accounts) == 3
        assert anvil.command()[0] == str(anvil_binary_path())  # the binary itself: pid is the chain
        log_path = anvil.log_path
    assert not _alive(pid)
    assert anvil.pid is None
    assert log_path is not None
    assert not log_path.exists()
    with pytest.raises(AnvilError, match="not running"):
        _ = anvil.rpc_url
    anvil.stop()  # idempotent


def test_options_map_to_flags(anvil_factory: Callable[..., AnvilProcess]) -> None:
    anvil = anvil_factory(block_time=0.5, slots_in_an_epoch=1, gas_limit=50_000_000)
    command = anvil.command()
    for flag, value in (("--block-time", "0.5"), ("--slots-in-an-epoch", "1"), ("--gas-limit", "50000000")):
        assert command[command.index(flag) + 1] == value
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    first = w3.eth.block_number
    time.sleep(1.2)
    assert w3.eth.block_number > first  # interval mining
    assert w3.eth.get_block("latest")["gasLimit"] == 50_000_000


def test_factory_stops_everything(anvil_factory: Callable[..., AnvilProcess]) -> None:
    pids = [anvil_factory().pid for _ in range(2)]
    assert all(pid is not None and _alive(pid) for pid in pids)


def test_missing_binary_says_what_to_do(tmp_path: Path, settings: Any) -> None:
    with pytest.raises(AnvilError, match="run `make deps`"):
        AnvilProcess(binary=tmp_path / "anvil").start()
    settings.BASE_DIR = tmp_path
    with pytest.raises(AnvilError, match="run `make deps`"):
        anvil_binary_path()


def test_anvil_dies_with_its_parent() -> None:
    """PR_SET_PDEATHSIG: a test run killed with SIGKILL does not leave chains running."""
    script = (
        "import os, sys, time\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings')\n"
        "import django; django.setup()\n"
        "from indexing.devnet.anvil import AnvilProcess\n"
        "anvil = AnvilProcess().start()\n"
        "print(anvil.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=django_settings.BASE_DIR, env={**os.environ}
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
