"""Shared pytest hooks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item (`item.rep_call`), so fixtures can act on a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module that trains small networks, restored afterwards.

    On a busy shared 2-core CPU, two threads make tiny CNNs' small operations 10 to 30 times slower
    (the command line's --threads 1 exists for the same reason). Opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
