"""The documentation's Python examples run: every ```python block of docs/*.md and README.md.

Conventions (a reader copying the examples into one interpreter, page by page, is the model):

* Each block is its own test, named ``page:line`` (the line of its opening fence).
* The blocks of one page run in order in one namespace, in one fresh temporary working
  directory, because later examples build on earlier ones (``cal``, ``store``, ``pool``...).
  Run alone, a block first runs the page's earlier blocks; their failures are their own
  tests' business, so a later block is judged on what it does itself.
* The working directory holds links to the repository's ``examples/`` and ``tests/``, so a
  path written relative to the checkout (``tests/conformance/calendar_day.txt``) works, while
  anything an example writes (``pools.db``) lands in the temporary directory.
* Objects the prose presupposes without defining them (the reader's ``template``, ``tasks``,
  task function) are given in :data:`GIVENS`, per page. Givens are data, never imports: a
  block must import what it uses.
* A block is excluded only by a marker comment right before its fence (blank lines may
  separate them): ``<!-- docs-test: skip (why it cannot run here) -->``. The reason is the
  skip message. A marker that precedes no Python block is an error, not a silent no-op.

Shell blocks are not run: they install software, start the suite itself, or name a handler
package the reader is assumed to have written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
MARKER = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
SKIP = re.compile(r"^skip\s*\((.+)\)$")
#: repository folders the examples refer to by relative path
LINKED = ("examples", "tests")


@dataclass(frozen=True)
class Block:
    """One ```python block: its page, the line of its opening fence, code, skip reason."""

    page: Path
    line: int
    code: str
    skip: str | None = None

    @property
    def name(self) -> str:
        """``docs/pool.md:11``: the test id, and the file name in tracebacks."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse(page: Path) -> list[Block]:
    """The page's Python blocks with their skip markers.

    Raises ValueError for a malformed ``docs-test`` marker or one that does not directly
    precede a Python block, so a typo cannot silently disable or fail to disable one.
    """
    blocks: list[Block] = []
    lines = page.read_text().splitlines()
    pending: tuple[int, str] | None = None  # (line, reason) of a skip marker awaiting its block
    index = 0
    while index < len(lines):
        text = lines[index]
        marker = MARKER.match(text)
        fence = FENCE.match(text)
        if marker:
            reason = SKIP.match(marker.group(1))
            if reason is None or pending is not None:
                raise ValueError(f"{page.name}:{index + 1}: expected one "
                                 f"'<!-- docs-test: skip (reason) -->' before a block")
            pending = (index + 1, reason.group(1))
        elif fence:
            end = index + 1
            while end < len(lines) and not lines[end].startswith(fence.group(1)):
                end += 1
            if fence.group(2) == "python":
                skip = pending[1] if pending else None
                blocks.append(Block(page, index + 1, "\n".join(lines[index + 1:end]), skip))
            elif pending:
                raise ValueError(f"{page.name}:{pending[0]}: the skip marker is not followed "
                                 "by a ```python block")
            pending = None
            index = end
        elif text.strip() and pending:
            raise ValueError(f"{page.name}:{pending[0]}: the skip marker is not followed "
                             "by a ```python block")
        index += 1
    if pending:
        raise ValueError(f"{page.name}:{pending[0]}: the skip marker is not followed by a block")
    return blocks


def _example_template() -> dict[str, Any]:
    """The repository's example template: qlib's layout with segments and a handler."""
    return yaml.safe_load((ROOT / "examples" / "templates" / "rolling_lgbm.yaml").read_text())


def _train(task: dict[str, Any]) -> dict[str, Any]:
    """A task function standing in for the reader's model training."""
    return {"ic": 0.05, "model": task["model"]["class"]}


def _generation_givens() -> dict[str, Any]:
    return {"template": _example_template()}


def _pool_givens() -> dict[str, Any]:
    tasks = []
    for start, end in (("2017-01-01", "2017-12-31"), ("2018-01-01", "2018-12-31")):
        task = _example_template()
        task["dataset"]["kwargs"]["segments"]["test"] = [start, end]
        tasks.append(task)
    return {"tasks": tasks, "train": _train}


def _storage_givens() -> dict[str, Any]:
    return {"ids": ["1", "2"]}


#: per page (relative to the repository): the names its prose presupposes
GIVENS: dict[str, Callable[[], dict[str, Any]]] = {
    "docs/generation.md": _generation_givens,
    "docs/pool.md": _pool_givens,
    "docs/storage.md": _storage_givens,
}

BLOCKS = [block for page in PAGES for block in parse(page)]


@dataclass
class PageRun:
    """One page's shared namespace and working directory, and how far its blocks have run."""

    workdir: Path
    namespace: dict[str, Any]
    done: set[int] = field(default_factory=set)

    def execute(self, block: Block) -> None:
        """Run ``block`` in the page's namespace (the caller has changed into ``workdir``).

        The code is compiled under the page's path at its own line numbers, so a traceback
        shows the failing line of the page.
        """
        self.done.add(block.line)
        exec(compile("\n" * block.line + block.code, str(block.page), "exec"), self.namespace)


@pytest.fixture(scope="session")
def page_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Path], PageRun]]:
    """The run of each page, created the first time one of its blocks is tested."""
    runs: dict[Path, PageRun] = {}

    def run_of(page: Path) -> PageRun:
        if page not in runs:
            workdir = tmp_path_factory.mktemp(f"docs-{page.stem}")
            for name in LINKED:
                (workdir / name).symlink_to(ROOT / name, target_is_directory=True)
            given = GIVENS.get(str(page.relative_to(ROOT)), dict)()
            runs[page] = PageRun(workdir, {"__name__": "__docs__", **given})
        return runs[page]

    yield run_of


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_python_example_runs(block: Block, page_runs, monkeypatch):
    if block.skip:
        pytest.skip(f"{block.name}: {block.skip}")
    run = page_runs(block.page)
    monkeypatch.chdir(run.workdir)
    for earlier in BLOCKS:
        if earlier.page == block.page and earlier.line < block.line and not earlier.skip:
            if earlier.line not in run.done:
                try:
                    run.execute(earlier)
                except Exception:  # reported by that block's own test
                    pass
    run.execute(block)


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_python_block_of_the_page_is_found(page):
    opening = [line for line in page.read_text().splitlines() if line.strip() == "```python"]
    assert len(parse(page)) == len(opening)


@pytest.mark.parametrize(
    ("markdown", "problem"),
    [
        ("<!-- docs-test: skip (no server) -->\n\n```bash\nls\n```\n", "not followed by"),
        ("<!-- docs-test: skip (no server) -->\nSome prose.\n\n```python\n1\n```\n",
         "not followed by"),
        ("<!-- docs-test: skip -->\n```python\n1\n```\n", "expected one"),
        ("<!-- docs-test: skip (a) -->\n<!-- docs-test: skip (b) -->\n```python\n1\n```\n",
         "expected one"),
        ("text\n<!-- docs-test: skip (at the end) -->\n", "not followed by"),
    ],
)
def test_a_misplaced_or_malformed_marker_is_an_error(tmp_path, markdown, problem):
    page = tmp_path / "page.md"
    page.write_text(markdown)
    with pytest.raises(ValueError, match=problem):
        parse(page)


def test_a_marker_skips_only_the_block_it_precedes(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\na = 1\n```\n\n<!-- docs-test: skip (needs Atlas) -->\n\n"
                    "```python\nconnect()\n```\n\n```python\nb = a\n```\n")
    assert [(block.line, block.skip) for block in parse(page)] == [
        (1, None), (7, "needs Atlas"), (11, None)]
