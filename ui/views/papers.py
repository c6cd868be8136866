"""Papers page views: the saved (or just measured) records as table rows and text, and a quick run as a worker
job. Pure (no Streamlit)."""

from __future__ import annotations

from advcore.labs import papers
from ui import workers


def job(paper: str) -> workers.Job:
    """``advcore.labs.papers.reproduce(paper, quick=True)`` (what ``python -m advcore reproduce PAPER --quick``
    runs) as a worker job (``ui.workers``), its progress sent as plain reports: the shipped models only."""
    return workers.progress_job(papers.reproduce, (paper,), {"quick": True})


def _where(left: dict | None) -> str:
    if not left:
        return "before its first step"
    return f"at {left['stage']}, step {left['step']} of {left['total']}"


def cancelled(left: dict | None) -> str:
    """What a quick run that was cancelled says (``left``: its last progress marker, ``PageRun.live``'s)."""
    what = f"Quick run of {left['label']}" if left else "Quick run"
    return f"{what} cancelled {_where(left)}; nothing was kept."


def interrupted(left: dict | None, was_cancelled: bool) -> str:
    """What a quick run that a rerun stopped says: a Cancel click, or another button pressed while it ran."""
    if was_cancelled:
        return cancelled(left)
    what = f"The quick run of {left['label']}" if left else "The quick run"
    return f"{what} stopped {_where(left)} because the page reran; nothing was kept. Press Run to start it again."


def claim_rows(rec: dict) -> list[dict]:
    """One row per claim of a paper record: where, claim, the paper's values, advlab's, verdict, why."""
    rows = []
    for c in rec["claims"]:
        rows.append({
            "where": c["where"], "claim": c["statement"],
            "paper": ", ".join(f"{k} {v:g}" for k, v in c["paper_values"].items()) or "-",
            "advlab": ", ".join(f"{k} {v:g}" for k, v in c["measured"].items()) if c["measured"] else "-",
            "unit": c.get("unit") or "-", "verdict": c["verdict"], "why": c["why"],
        })
    return rows


def caption(rec: dict) -> str:
    """What the record measured and how: the setting, the command, the run time (all from the record)."""
    if not rec.get("measurement"):
        return "Not measured by advlab: see each claim's reason."
    kind = "quick run" if rec["quick"] else "full run"
    text = f"{kind} ({rec['settings']}), {rec['seconds']:.0f} s: {rec['setting']}. Command: `{rec['command']}`."
    note = rec["measurement"].get("note")
    return text + (f" Note: {note.rstrip('.')}." if note else "")


def tally(records: dict[str, dict]) -> str:
    """How many claims got each verdict, counted from the records."""
    counts: dict[str, int] = {}
    for rec in records.values():
        for c in rec["claims"]:
            counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    return ", ".join(f"{n} {v}" for v, n in counts.items())
