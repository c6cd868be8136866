"""Papers: each paper's headline claims, advlab's measured numbers and a verdict per claim.

Reads bench/results/papers/*.json at once (advcore.labs.papers.load_saved) and the findings (advcore.labs.findings);
Run (quick) measures one paper with progress and Cancel, in a worker process (ui.views.papers.job).
"""

from __future__ import annotations

import json

import streamlit as st

from advcore.labs import findings, papers
from ui.frame import app_frame
from ui.session import PageRun
from ui.views import papers as pv

RUN = PageRun("_advlab_papers")

app_frame()
st.title("Papers")
st.write("Each paper's headline claims next to advlab's measurement on the closest setting it has, with a verdict "
         "computed by the rule shown. Numbers below are the saved full runs (`python -m advcore reproduce PAPER`).")
saved = papers.load_saved()
records = dict(saved)
quick = st.session_state.get("_advlab_papers_quick", {})
records.update(quick)
st.caption("Verdicts: " + pv.tally(records))
RUN.show_notices(pv.interrupted)  # a quick run that was cancelled, stopped or failed says so here

for key, paper in papers.PAPERS.items():
    rec = records[key]
    st.subheader(paper.title)
    st.caption(pv.caption(rec))
    st.dataframe(pv.claim_rows(rec), hide_index=True, width="stretch")
    if paper.measure is not None:
        c1, c2 = st.columns(2)
        c1.button(f"Run (quick: {paper.quick})", key=f"papers_run_{key}", on_click=RUN.request, args=(key,))
        c2.download_button("JSON", json.dumps(rec, indent=1), file_name=f"{key}.json", key=f"papers_json_{key}")
        if RUN.pending() == key:
            RUN.take_request()
            bar = st.progress(0.0, text="starting")
            RUN.cancel_button(key=f"papers_cancel_{key}")
            # In a worker process at the lowest priority (ui.workers; ADVLAB_RUN_WORKERS=0: in this thread).
            out = RUN.execute(pv.job(key), pv.cancelled, on_step=RUN.live(bar, key))
            if out is not None:
                st.session_state["_advlab_papers_quick"] = {**quick, key: out}
            st.rerun()  # with the new record, or with the notice that says why there is none

st.header("What the measurements say")
st.caption("The README's findings, generated from the saved result files (`python -m advcore reproduce --readme`): "
           "every number is read from a file and every comparative word is chosen from the numbers.")
st.markdown("\n".join(findings.bullets(findings.load_sources(), saved)))
