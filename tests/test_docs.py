"""The documentation stays true to the tree: the module map in docs/development.md names every module and nothing
else, the README is a short front door whose two commands are the ones run.sh and CI run, and every relative link
in README.md and docs/*.md resolves (files, and `#anchors` into markdown files)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO

ROOT = REPO
DEVELOPMENT = ROOT / "docs" / "development.md"
# Where the module map must name every module. A package is named by its folder (`glyph_pipeline/data/`), which
# stands for its `__init__.py`; every other `.py` file by its path (`glyph_pipeline/data/render.py`).
MAPPED_ROOTS = ("glyph_pipeline", "model_card", "training")
README_MAX_LINES = 350
FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1", re.M | re.S)


def module_map_paths(text: str) -> list[str]:
    """The first-column paths (in backticks) of the table under the `## Module map` heading."""
    parts = re.split(r"^## Module map[^\n]*\n", text, maxsplit=1, flags=re.M)
    assert len(parts) == 2, "docs/development.md has no '## Module map' section"
    section = re.split(r"^## ", parts[1], maxsplit=1, flags=re.M)[0]
    return re.findall(r"^\|\s*`([^`]+)`\s*\|", section, flags=re.M)


def modules_on_disk() -> set[str]:
    """What the map must name: every package folder (with a trailing slash) and every other `.py` file."""
    names = set()
    for top in MAPPED_ROOTS:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if "__pycache__" in rel.parts:
                continue
            names.add(f"{rel.parent.as_posix()}/" if rel.name == "__init__.py" else rel.as_posix())
    return names


def test_module_map_names_every_module_and_nothing_else():
    mapped = module_map_paths(DEVELOPMENT.read_text(encoding="utf-8"))
    duplicates = sorted({p for p in mapped if mapped.count(p) > 1})
    on_disk = modules_on_disk()
    missing = sorted(on_disk - set(mapped))
    stale = sorted(set(mapped) - on_disk)
    assert not (missing or stale or duplicates), (
        f"docs/development.md's module map is out of date: not named {missing}; named but not there {stale}; "
        f"named twice {duplicates}"
    )


def test_readme_is_a_short_front_door_with_the_commands_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = len(readme.splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}: details go to docs/)"
    two_commands = re.split(r"^## Two commands\s*$", readme, maxsplit=1, flags=re.M)
    assert len(two_commands) == 2, "README.md has no '## Two commands' section"
    block = re.search(r"```bash\n(.*?)```", two_commands[1], re.S)
    assert block, "the '## Two commands' section has no bash block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["bash run.sh demo", "bash run.sh test"], commands

    run_sh = (ROOT / "run.sh").read_text(encoding="utf-8")
    jobs = re.findall(r"^\s*([a-z]+)\)\s*$", run_sh, flags=re.M)
    assert {"demo", "test"} <= set(jobs), f"run.sh implements the jobs {jobs}"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert any(line.startswith("bash run.sh test") for line in ci), ".ci/run does not call `bash run.sh test`"


def github_anchors(markdown: str) -> set[str]:
    """The `#anchors` GitHub gives the headings of a markdown file (code blocks excluded)."""
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", markdown), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def relative_links(markdown: str) -> list[str]:
    """Targets of `[text](target)` and `![alt](target)` outside code blocks that are not web or mail links."""
    targets = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", FENCE.sub("", markdown))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, flags=re.I)]


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path.read_text(encoding="utf-8")):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in github_anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target} (no such heading)")
    return broken


def test_relative_links_in_readme_and_docs_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 3  # README.md, docs/results.md, docs/development.md
    broken = {page.relative_to(ROOT).as_posix(): broken_links(page) for page in pages}
    assert not {page: links for page, links in broken.items() if links}, broken


def test_the_link_checker_knows_githubs_anchors():
    text = "# Why no min-SNR: the A/B\n```bash\n# not a heading\n```\n## Before the fix: the ε-prediction model\n"
    assert github_anchors(text) == {"why-no-min-snr-the-ab", "before-the-fix-the-ε-prediction-model"}
    links = relative_links("[a](docs/x.md#y) ![b](img.png) [c](https://example.org) [d](#z)\n```\n[e](f)\n```")
    assert links == ["docs/x.md#y", "img.png", "#z"]
