"""Streamlit helpers shared by the pages of advlab (the only package besides app_pages/ that imports Streamlit).

``ui.frame``: the shared sidebar (model, device, image), the error boundary, small text helpers.
``ui.plots``: the plotly figures and image views the labs show.
``ui.views.attack``: what the Attack lab page needs beyond widgets (request key, cache, CLI line, table).
"""
