"""Viewer links: template checks, URL-quoting, rows without the value, the env setting, the app's."""

from __future__ import annotations

import pandas as pd
import pytest

from dinosearch.app.compare import add_viewer_links, parse_settings
from dinosearch.core.viewer import VIEWER_ENV, viewer_template, viewer_url

OHIF = "https://pacs.example/viewer?StudyInstanceUIDs={StudyInstanceUID}"


def test_values_are_url_quoted_and_missing_values_give_no_link() -> None:
    assert viewer_url(OHIF, {"StudyInstanceUID": "1.2.3"}) == OHIF.replace(
        "{StudyInstanceUID}", "1.2.3"
    )
    hostile = viewer_url(OHIF, {"StudyInstanceUID": '1&x=<script>"/#'})
    assert hostile == "https://pacs.example/viewer?StudyInstanceUIDs=1%26x%3D%3Cscript%3E%22%2F%23"
    assert viewer_url(OHIF, {"id": "a"}) is None
    assert viewer_url(OHIF, {"StudyInstanceUID": float("nan")}) is None
    assert viewer_url(None, {"StudyInstanceUID": "1.2"}) is None


@pytest.mark.parametrize(
    "bad",
    ["javascript:alert(1)//{StudyInstanceUID}", "file:///etc/{id}", "http://h/{a.b}", "http://h/{"],
)
def test_only_http_templates_with_plain_fields(bad: str) -> None:
    with pytest.raises(ValueError, match="viewer URL"):
        viewer_template(bad, {})


def test_template_from_env_and_in_app_settings() -> None:
    assert viewer_template(None, {VIEWER_ENV: OHIF}) == OHIF
    assert viewer_template(None, {}) is None
    settings = parse_settings(["--viewer-url", OHIF], {})
    rows = add_viewer_links(
        pd.DataFrame({"id": ["a", "b"], "StudyInstanceUID": ["1.2", None]}), settings.viewer_url
    )
    assert rows["viewer_url"].tolist() == [OHIF.replace("{StudyInstanceUID}", "1.2"), None]
    assert parse_settings(
        [], {VIEWER_ENV: OHIF, "DINOSEARCH_ARCHIVE": "dicomweb+http://h/dw"}
    ).archive
