"""Streamlit helpers shared by the pages of advlab.

``ui.frame``: the shared sidebar (model, device, image), the table of pages, the error boundary, text helpers.
``ui.session``: one per-session cache and one run controller (Run, Cancel, progress, notices) for every page.
``ui.widgets``: the widgets generated from declared parameters (an attack's ``Param``).
``ui.plots``: the plotly figures and image views the labs show.
``ui.views.<lab>``: what each page needs beyond widgets, without Streamlit: requests, sentences, tables, figures
and the equivalent command line.
"""
