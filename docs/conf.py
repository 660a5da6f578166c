"""Sphinx configuration of fastgd's documentation site.

Build it with ``pip install ".[docs]"`` then ``sphinx-build -W -b html docs docs/_build/html``
(warnings are errors, as in CI); open ``docs/_build/html/index.html``. The gallery's
examples (docs/examples/plot_*.py) run during the build, so the site shows their output.
"""

import os

import fastgd

project = "fastgd"
author = "The fastgd developers"
copyright = "2026, the fastgd developers"
release = fastgd.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples/README.rst", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "auto_examples/*.md5",
                    "auto_examples/*.codeobj.json"]
myst_heading_anchors = 3

# The API pages: one page per public function and class, from their numpydoc docstrings;
# the signatures' annotations are in the signature line, the types in the docstrings.
autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"fastgd {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path = []

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "plot_gallery": os.environ.get("FASTGD_DOCS_PLOT_GALLERY", "True"),
}
