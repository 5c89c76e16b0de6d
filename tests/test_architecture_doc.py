"""docs/architecture.md stays true: it names every module and package of the package, and every path it names
exists (a renamed or moved file fails here, not in a newcomer's hands)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "architecture.md").read_text()
PACKAGE = REPO / "src" / "cxrdenoise"


def test_every_module_and_package_is_on_the_map():
    names = [p.name for p in PACKAGE.glob("*.py")] + [f"{p.name}/" for p in PACKAGE.iterdir()
                                                        if p.is_dir() and (p / "__init__.py").exists()]
    missing = [n for n in sorted(names) if n != "__init__.py" and f"`{n}`" not in DOC]
    assert not missing, f"docs/architecture.md does not place: {missing}"


def test_every_path_it_names_exists():
    paths = set(re.findall(r"`((?:src|workflow|config|docs|profiles|tests)/[^`\s]*)`", DOC))
    assert len(paths) > 10  # the page names the places where changes go
    missing = sorted(p for p in paths if not any(REPO.glob(p.rstrip("/"))))
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_the_names_it_points_to_are_defined_where_it_says():
    for path, name in (("src/cxrdenoise/shards.py", "def image_noise"), ("src/cxrdenoise/train/setups.py", "SETUPS"),
                       ("src/cxrdenoise/figures.py", "SETUP_COLORS"), ("src/cxrdenoise/tables/cells.py", "SETUP_LEGEND"),
                       ("src/cxrdenoise/models/cards.py", "ModelCard("),
                       ("src/cxrdenoise/metric_registry.py", "Metric("),
                       ("workflow/rules/common.smk", "def final_targets"),
                       ("src/cxrdenoise/train/state.py", "class RunFacts")):
        assert name in (REPO / path).read_text(), f"{path} no longer defines {name}"
