"""Links from a result back to the study in the archive's viewer, from a URL template.

``--viewer-url`` or ``DINOSEARCH_VIEWER_URL``, e.g. Orthanc Explorer 2
``http://127.0.0.1:8042/ui/app/#/filtered-studies?StudyInstanceUID={StudyInstanceUID}`` or OHIF
``https://host/viewer?StudyInstanceUIDs={StudyInstanceUID}``. ``{column}`` takes the result row's
metadata value, URL-quoted; a row without that value gets no link. Only http(s) templates are taken.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from dinosearch.core.env import env_str

VIEWER_ENV = "DINOSEARCH_VIEWER_URL"


def viewer_template(given: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The template from ``given`` or ``DINOSEARCH_VIEWER_URL`` (None: no links), checked."""
    template = given or env_str(VIEWER_ENV, env) or None
    if template is None:
        return None
    if urlsplit(template).scheme not in ("http", "https"):
        raise ValueError(
            f"viewer URL {template!r}: only http:// or https:// templates are taken "
            f"(--viewer-url or {VIEWER_ENV})"
        )
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(
            f"viewer URL {template!r}: {e}; write fields as {{StudyInstanceUID}}"
        ) from e
    if any(not f.isidentifier() for f in fields):
        raise ValueError(f"viewer URL {template!r}: fields must be column names in braces")
    return template


def viewer_url(template: str | None, row: Mapping[str, Any]) -> str | None:
    """``template`` filled from ``row`` (values URL-quoted); None without a template or a value."""
    if template is None:
        return None
    values = {}
    for _, name, _, _ in string.Formatter().parse(template):
        if name is None:
            continue
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
            return None
        values[name] = quote(str(value), safe="")
    return template.format(**values)
