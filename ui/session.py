"""A long run started by a button on a page, with a Cancel button, kept in ``st.session_state``.

The Run button's callback stores the request (:meth:`PageRun.request`); the next page run takes it
(:meth:`PageRun.take_request`) and runs it (:meth:`PageRun.execute`), its progress callback recording where
it is (:meth:`PageRun.update`) and stopping once Cancel's callback has set the flag
(:meth:`PageRun.cancel_requested`). A Cancel click or a changed widget reruns the page, which interrupts the
run: the marker it left tells the next page run what to say (:meth:`PageRun.take_notices`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from advcore.errors import AdvlabError, Cancelled

T = TypeVar("T")


class PageRun:
    """The session-state keys ``{prefix}_request`` (or ``_{request}``), ``_cancel``, ``_running``, ``_notices``."""

    def __init__(self, prefix: str, request: str = "request"):
        self.request_key = f"{prefix}_{request}"
        self.cancel_key = f"{prefix}_cancel"
        self.running_key = f"{prefix}_running"
        self.notices_key = f"{prefix}_notices"

    def request(self, req: Any) -> None:
        """The Run button's callback: remember the request, clear an old cancel."""
        st.session_state[self.request_key] = req
        st.session_state[self.cancel_key] = False

    def request_cancel(self) -> None:
        """The Cancel button's callback (it runs at the start of the rerun its click causes)."""
        st.session_state[self.cancel_key] = True

    def pending(self) -> Any | None:
        """The pending request, left in place."""
        return st.session_state.get(self.request_key)

    def take_request(self) -> Any | None:
        """The pending request, removed so that a rerun never starts it twice."""
        return st.session_state.pop(self.request_key, None)

    def cancel_requested(self) -> bool:
        """Whether Cancel was pressed: a progress callback returns this (True stops advcore)."""
        return bool(st.session_state.get(self.cancel_key))

    def update(self, marker: Any) -> None:
        """Record where the run is (the RUNNING marker), for a rerun that interrupts it."""
        st.session_state[self.running_key] = marker

    def finish(self) -> Any | None:
        """The run ended by itself (finished, cancelled from its callback or refused): clear the marker and the
        cancel flag; returns the last marker (None if the run never reported progress)."""
        left = st.session_state.pop(self.running_key, None)
        st.session_state.pop(self.cancel_key, None)
        return left

    def notice(self, kind: str, message: str) -> None:
        """A message (``kind``: a Streamlit call such as ``warning``) for the next page run, after st.rerun."""
        st.session_state.setdefault(self.notices_key, []).append((kind, message))

    def take_notices(self, interrupted: Callable[[Any, bool], str]) -> list[tuple[str, str]]:
        """Messages left for this page run, each shown once, and a warning ``interrupted(marker, cancelled)``
        about a run that a rerun interrupted (a Cancel click, or a widget changed while it ran)."""
        out = list(st.session_state.pop(self.notices_key, []))
        left = st.session_state.pop(self.running_key, None)
        if left is not None:  # the run ended without reaching its own end: a rerun stopped it
            out.append(("warning", interrupted(left, st.session_state.pop(self.cancel_key, False))))
        return out

    def show_notices(self, interrupted: Callable[[Any, bool], str]) -> None:
        """Draw :meth:`take_notices`' messages."""
        for kind, message in self.take_notices(interrupted):
            getattr(st, kind)(message)

    def execute(self, work: Callable[[], T], cancelled: Callable[[Any], str]) -> T | None:
        """``work()``, then :meth:`finish`; on Cancelled leave the warning ``cancelled(last marker)``, on an
        AdvlabError its message as an error, and return None."""
        try:
            out = work()
        except Cancelled:
            self.notice("warning", cancelled(self.finish()))
            return None
        except AdvlabError as exc:
            self.finish()
            self.notice("error", str(exc))
            return None
        self.finish()
        return out
