"""App stage: the logic behind streamlit_app.py (no Streamlit import): catalog and side-by-side query."""
