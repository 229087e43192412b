"""App stage: the search page (``page.py``, drawn by ``render.py``) and its logic without Streamlit
(``catalog``, ``compare``, ``why``); ``dinosearch app`` starts it (``launch.py``)."""
