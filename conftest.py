"""Test-suite switches: slow and GPU tests are skipped with a reason, never silently; Ctrl-C
works in the suite however it was started."""

from __future__ import annotations

import signal

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts a background job (`cmd &`, CI harnesses, nohup) with SIGINT ignored,
    # and Python then leaves it ignored: Ctrl-C simulated in this process did nothing, and
    # the vidsr processes the tests interrupt inherited the ignore and ran to the end.
    # The suite gets Python's own handler wherever it was started from.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow")
    cuda = _cuda_available()
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow test: run with --run-slow"))
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device; none here"))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
