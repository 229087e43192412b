"""Thin entry point for ``streamlit run streamlit_app.py [-- --indexes DIR …]`` from a clone.

The page lives in the package (``dinosearch/app/page.py``); ``dinosearch app`` is the usual way in.
"""

from dinosearch.app.page import main

main()
