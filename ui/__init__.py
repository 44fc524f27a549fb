"""Streamlit UI: not built yet, see the issue tracker."""
