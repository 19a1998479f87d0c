"""Sphinx configuration of the ire documentation site.

Build: ``nox -s docs`` (warnings are errors), or by hand
``sphinx-build -W --keep-going -n -b html docs docs/_build/html``.
The Markdown pages are read by MyST; the API pages document every name in
each package's ``__all__`` from its Google-style docstrings.
"""

from __future__ import annotations

import os

# Keras picks its backend at import; the API pages import ire_keras.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import inspect  # noqa: E402

import ire_core  # noqa: E402

project = "ire"
author = "The ire authors"
copyright = "The ire authors, Apache-2.0"
release = version = ire_core.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/*.json"]

# The generated tables (docs/results, docs/conformance) start at H3: they are
# sections of their generators' reports.
suppress_warnings = ["myst.header"]

# MyST: heading anchors for the pages' "page.md#section" links, as GitHub makes them.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

# autodoc + napoleon: Google-style docstrings, signatures with their type hints.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"
html_title = f"ire {release}"
html_static_path: list[str] = []

# Nitpicky cross-references: every name of this project must resolve. The
# frameworks' and the standard library's names cannot (the build has no
# network for intersphinx), so only those are exempt.
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|jax|jaxlib|optax|flax|keras|tensorflow|numpy)(\..+)?"),
    (r"py:.*", r"(collections\.abc|typing)\..+"),
]

# NamedTuple fields are documented in their class's "Attributes:" section;
# autodoc would list each one again as "Alias for field number N".
_NAMEDTUPLE_FIELD = type(ire_core.FlatMask.mask)


def _skip_namedtuple_fields(app, what, name, obj, skip, options):
    return True if isinstance(obj, _NAMEDTUPLE_FIELD) else None


def _public_bases(app, name, obj, options, bases):
    """Shows a private base class as its own public bases."""
    public = []
    for base in bases:
        queue = [base]
        while queue:
            cls = queue.pop(0)
            if inspect.isclass(cls) and cls.__name__.startswith("_"):
                queue[:0] = list(cls.__bases__)
            elif cls not in public:
                public.append(cls)
    bases[:] = public


def _generated_tables_are_orphans(app, docname, source):
    """The generated tables under results/ are linked from the pages, not
    listed in the navigation (they have no title of their own)."""
    if docname.startswith("results/") and not source[0].startswith("---"):
        source[0] = "---\norphan: true\n---\n" + source[0]


def setup(app):
    app.connect("source-read", _generated_tables_are_orphans)
    app.connect("autodoc-skip-member", _skip_namedtuple_fields)
    app.connect("autodoc-process-bases", _public_bases)
