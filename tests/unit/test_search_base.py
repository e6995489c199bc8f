"""Search.as_overrides: a command-line option is the same as `--set search.KEY=...`."""

from refbench.search import Search


def test_given_options_become_search_overrides_after_the_user_sets() -> None:
    items = Search.as_overrides({"samples": 40, "probe": None, "seed": 0},
                                {"samples": "lanas.max_samples", "probe": "fitness.probe",
                                 "seed": "seed"}, ["trainer.lr=0.1"])
    assert items == ["trainer.lr=0.1", "search.lanas.max_samples=40", "search.seed=0"]
    assert Search.as_overrides({}, {"seed": "seed"}) == []
