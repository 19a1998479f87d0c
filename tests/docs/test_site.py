"""The built documentation site: links, API coverage, and a real browser.

Runs on the HTML that ``sphinx-build`` wrote (``nox -s docs`` builds it, then
runs this file). ``IRE_DOCS_HTML`` names the folder; the default is
``docs/_build/html`` of this checkout. Without a build, or without Chromium
(``/usr/bin/chromium``, or ``IRE_CHROMIUM``), the tests skip, except under CI
(``CI`` set), where a missing build or browser fails them.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = Path(os.environ.get("IRE_DOCS_HTML", ROOT / "docs" / "_build" / "html")).resolve()
CHROMIUM = Path(os.environ.get("IRE_CHROMIUM", "/usr/bin/chromium"))
PACKAGES = ("ire_core", "ire_torch", "ire_jax", "ire_keras")
IN_CI = bool(os.environ.get("CI"))


def _require(present: bool, what: str) -> None:
    """Skips when ``what`` is missing outside CI; fails when it is missing in CI."""
    if present:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing, and CI must run this test")
    pytest.skip(f"{what} is missing (nox -s docs builds the site)")


class _Page(HTMLParser):
    """The ids and the link targets (``href``/``src``) of one HTML page."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) is not None:
                self.targets.append(attrs[key])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def site() -> dict[Path, _Page]:
    _require((HTML / "index.html").is_file(), f"the built site ({HTML}/index.html)")
    return {path: _parse(path) for path in sorted(HTML.rglob("*.html"))}


def test_every_internal_link_and_image_resolves(site):
    broken = []
    for path, page in site.items():
        for target in page.targets:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc:  # http(s), mailto, data: not this site's
                continue
            file = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if file.is_dir():
                file = file / "index.html"
            where = f"{path.relative_to(HTML)} -> {target}"
            if not file.is_file():
                broken.append(f"{where}: no such file")
            elif parts.fragment and file.suffix == ".html":
                ids = site[file].ids if file in site else _parse(file).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{where}: no such anchor")
    assert not broken, "\n".join(broken)
    # The check saw the pages, their images and the API pages' cross-links.
    checked = [t for page in site.values() for t in page.targets]
    assert any(t.endswith(".png") for t in checked)
    assert any("api/ire_torch.html#ire_torch." in t for t in checked)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_an_api_entry(site, package):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    module = importlib.import_module(package)
    page = HTML / "api" / f"{package}.html"
    assert page.is_file(), f"no API page {page}"
    ids = site[page].ids
    missing = [
        name for name in module.__all__
        if f"{package}.{name}" not in ids and f"module-{package}.{name}" not in ids
    ]
    assert not missing, f"{package}: no API entry for {missing}"


def _chromium(*args: str, page: Path) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", *args, page.as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        )


def _console_errors(stderr: str) -> list[str]:
    """The page's console messages that report an error (Chromium logs every
    console message as a ``CONSOLE`` line; its own D-Bus noise is not one)."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line and ("error" in line.lower() or "uncaught" in line.lower())]


@pytest.mark.parametrize(
    ("page", "title", "contents"),
    [
        ("index.html", "<title>ire ",
         ("<h1>ire: Implicit Regularization Enhancement", 'src="_images/demo_validation.png"')),
        ("api/ire_torch.html", "<title>ire_torch - ire ",
         ('id="ire_torch.AdamWIRE"', 'id="ire_torch.IRE.mask_stats"')),
    ],
)
def test_pages_render_in_a_headless_browser(site, page, title, contents):
    _require(CHROMIUM.is_file(), f"Chromium ({CHROMIUM})")
    result = _chromium("--dump-dom", page=HTML / page)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert title in dom, dom[:2000]
    for content in contents:
        assert content in dom
    # The theme's scripts ran: one sets the colour theme on <body> at load.
    assert '<body data-theme="' in dom
    assert not _console_errors(result.stderr)
