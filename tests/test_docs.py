"""Every example in the README and in the documentation's pages runs and gives what the
page shows, on both backends. (The API pages come from the docstrings, whose examples
tests/test_config_and_cli.py runs; the gallery runs when the site is built.)"""

import doctest

import pytest
from conftest import REPOSITORY_ROOT, require_peer

DOCS = REPOSITORY_ROOT / "docs"
PAGES = ["README.md", *sorted(str(p.relative_to(REPOSITORY_ROOT))
                              for p in DOCS.rglob("*.md") if "_build" not in p.parts)]
# The optional peers a page's examples use.
PEERS = {"docs/guide/dask.md": ["dask.array", "distributed"],
         "docs/guide/estimator.md": ["sklearn"]}
# Pages with examples: a page that should hold examples and holds none is a mistake.
WITH_EXAMPLES = {"README.md", "docs/guide/distances.md", "docs/guide/masked.md",
                 "docs/guide/updates.md", "docs/guide/factorize.md",
                 "docs/guide/recommender.md",
                 "docs/guide/estimator.md", "docs/guide/minimize.md",
                 "docs/guide/gradcheck.md", "docs/guide/dask.md",
                 "docs/getting_started.md"}


def run_examples(path):
    """The page's examples, run in order in one namespace (code fences become blank lines,
    which end an example's expected output)."""
    text = (REPOSITORY_ROOT / path).read_text(encoding="utf-8")
    text = "\n".join("" if line.startswith("```") else line for line in text.splitlines())
    test = doctest.DocTestParser().get_doctest(text, {}, path, str(REPOSITORY_ROOT / path), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    return runner.summarize(verbose=False)


def test_the_pages_are_found():
    assert WITH_EXAMPLES <= set(PAGES)


@pytest.mark.parametrize("path", PAGES)
def test_page_examples_run(backend, path):
    for peer in PEERS.get(path, []):
        require_peer(peer)
    result = run_examples(path)
    assert result.failed == 0
    assert (result.attempted > 0) == (path in WITH_EXAMPLES)
