"""`--resume` with a relative --results-dir: Tune's `can_restore` / `restore` read a path as a URI, so a relative
one ('results/ref-wt2/tune') failed with pyarrow's "URI has empty scheme" (found rerunning `make reference`)."""

from pathlib import Path

from search import tuner


def test_build_or_restore_accepts_a_relative_results_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "ref" / "tune").mkdir(parents=True)  # started, never saved Tune's state
    monkeypatch.setattr(tuner, "new_tuner", lambda path, *args: path)
    made = tuner.build_or_restore(Path("results/ref"), None, None, [], resume=True)
    assert made == Path("results/ref/tune")
    assert [p.name.split("-")[0] for p in (tmp_path / "results" / "ref").iterdir()] == ["tune.incomplete"]
