"""The /ui/ page's static files (gateway/ui/): what the CSP allows is all they use, and the JS never
parses data as HTML. The browser test is tests/e2e/test_ui.py."""

from __future__ import annotations

import re

import pytest

from gateway import _ui as ui


def test_paths() -> None:
    for path in ("/ui", "/ui/", "/ui/app.js", "/clusters/t1/ui/", "/clusters/t1/ui"):
        assert ui.handles(path), path
    for path in ("/", "/uix", "/api/v1/ui", "/apis/ui/v1", "/clusters/t1/api", "/clusters/ui"):
        assert not ui.handles(path), path


def test_csp_is_strict() -> None:
    directives = dict(d.strip().split(" ", 1) for d in ui.CSP.split(";"))
    assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'"
    assert "unsafe" not in ui.CSP and directives["frame-ancestors"] == "'none'"


@pytest.mark.parametrize("name", ["index.html", "app.js", "ui.css"])
def test_files_are_package_data(name: str) -> None:
    assert ui._file(name)


def test_html_has_no_inline_script_or_style() -> None:
    html = ui._file("index.html").decode()
    assert re.findall(r"<script[^>]*>", html) == ['<script src="app.js" defer>']
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers


def test_js_never_writes_html() -> None:
    js = ui._file("app.js").decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink


def test_js_pages_the_search_and_shows_the_servers_yaml_diff() -> None:
    js = ui._file("app.js").decode()
    # The search LIST goes through every page (limit/continue), never only the first one.
    assert "apiJSON(path, { limit: SEARCH_PAGE, continue: cont })" in js
    assert 'limit: "500" }' not in js
    # The timeline asks the history API for its YAML diff (gateway/_history.py yaml_diff), not a patch.
    assert 'diff: "yaml"' in js and "rev.patch" not in js
    html = ui._file("index.html").decode()
    assert 'id="search-more"' in html and 'id="search-count"' in html
