"""Shared fixtures: the real data folder beside the repo, small generated data, offline environment."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers share the cores: one compute thread each (inherited by the trials and subprocesses they start), and
    # OpenMP threads that sleep while they wait. With torch's default of a thread per core and spinning waits, two
    # workers on 2 cores ran the real-data tests 5-10x slower (734 s instead of 142 s for the six-config measure).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

POSITIVE = [
    "a charming , often affecting journey",
    "warm and funny",
    "the best film of the year",
    "a gorgeous , witty , seductive movie",
    "wonderful performances",
    "smart and moving",
]
NEGATIVE = [
    "unflinchingly bleak and desperate",
    "a dull , lifeless mess",
    "the worst film of the year",
    "boring and predictable",
    "painfully slow",
    "contains no wit , only labored gags",
]


def write_tiny_data(root: Path, n_train: int = 256, n_dev: int = 64, seed: int = 0) -> Path:
    """A data folder in the ../shared/data layout with an easy synthetic sentiment task and a small WikiText."""
    rng = random.Random(seed)
    (root / "sst2").mkdir(parents=True, exist_ok=True)
    (root / "wikitext-2").mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        lines = ["sentence\tlabel"]
        for _ in range(n):
            label = rng.randint(0, 1)
            lines.append(f"{rng.choice(POSITIVE if label else NEGATIVE)} \t{label}")
        (root / "sst2" / name).write_text("\n".join(lines) + "\n")
    words = "the cat sat on the mat and the dog ran to the park while rain fell on the town".split()
    for name in ("wiki.valid.tokens", "wiki.test.tokens"):
        text = "\n".join(
            " = Heading = " if i % 20 == 0 else " ".join(rng.choice(words) for _ in range(30))
            for i in range(200)
        )
        (root / "wikitext-2" / name).write_text(text + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "sst2" / "dev.tsv").exists():
        pytest.skip("../shared/data is not beside the repository")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    if "RANKBITS_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("RANKBITS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _planned_mmap_threshold():
    """A command run in-process (`cli.main`) sets the process's mmap threshold for its predictions
    (`search.resources.resolve_harness`, `rankbits plan`); the next test starts from the environment's."""
    yield
    from trainables.harness import use_mmap_threshold

    use_mmap_threshold(None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `ray` share one xdist group: under `-n N --dist loadgroup` they run one after another in one
    worker (two local Ray clusters on one machine would see each other: `ray.init()` joins a cluster `ray start`
    left running, and `ray stop --force` stops every one), while the other tests spread over the other workers.

    `tryfirst`: xdist's worker turns the `xdist_group` marker into the `@ray` suffix of the node id in its own
    `pytest_collection_modifyitems`, which otherwise runs before this one and sees no marker (the Ray tests were
    then spread over both workers, and one's `ray stop --force` killed the other's cluster mid-grid)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))


def pytest_configure(config: pytest.Config) -> None:
    """Stop a `--dist loadgroup` run at once where the grouping cannot work: pytest-xdist (3.8 and before) groups a
    test by rewriting `item._nodeid` to end in `@group`, and pytest 9.2 no longer reads that attribute (node ids
    moved to `item._id`). The Ray tests were then spread over both workers, and one test's `ray stop --force` killed
    the other worker's cluster mid-grid."""
    if os.environ.get("PYTEST_XDIST_WORKER") or config.getoption("dist", "no") != "loadgroup":
        return
    from _pytest.nodes import Node
    from xdist import __version__ as xdist_version

    xdist_rewrites_nodeid = tuple(int(p) for p in xdist_version.split(".")[:2]) <= (3, 8)
    if xdist_rewrites_nodeid and "_nodeid" not in getattr(Node, "__slots__", ("_nodeid",)):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} with pytest-xdist {xdist_version} ignores --dist loadgroup "
            "(the Ray tests would run in two workers at once): install pytest<9.2 (pip install -e '.[dev]')"
        )
