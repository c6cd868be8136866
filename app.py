"""advlab: run with `streamlit run app.py`. st.navigation over the labs in app_pages/, one shared sidebar."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # `streamlit run` adds it; AppTest and other runners may not
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from ui.frame import app_pages, run_with_sidebar  # noqa: E402

st.set_page_config(page_title="advlab", page_icon=":material/science:", layout="wide")
run_with_sidebar(st.navigation(app_pages()))
