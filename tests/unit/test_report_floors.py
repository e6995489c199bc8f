"""The report-generation floors: the most frequent training report and the nearest training
study by image features, fitted in `create`, run through the runner's loop unchanged."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from refbench.baselines.report.floors import (FLOOR_FILE, MostFrequentReport,
                                              NearestNeighbourReport, most_frequent)
from refbench.baselines.report.inputs import study_stack, term_vocabulary
from refbench.config import TrainerConfig
from refbench.datasets.chest_phantom import render_xray
from refbench.datasets.iu_xray.builder import rows_to_dataset
from refbench.errors import RefbenchError
from refbench.registry import get_spec

SPEC = get_spec("iu-xray-r2gen")
NORMAL = "The heart is normal in size. The lungs are clear."
BIG_HEART = "The heart is enlarged. The lungs are clear."


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def xray_rows(cases: list[tuple[str, list[str], str, list[str]]], seed: int = 0):
    """An iu_xray-shaped split: (study id, findings drawn, report, terms) per study."""
    rng = np.random.default_rng(seed)
    rows = []
    for sid, findings, report, terms in cases:
        views = [_png(render_xray(findings, rng, 64)), _png(render_xray(findings, rng, 64, lateral=True))]
        rows.append({"study_id": sid, "uid": sid, "report": report, "findings": report,
                     "impression": "", "indication": "", "comparison": "", "mesh": terms,
                     "terms": terms, "image_paths": [f"{sid}/0.png", f"{sid}/1.png"],
                     "has_images": True,
                     "images": [{"bytes": b, "path": f"{sid}/{k}.png"} for k, b in enumerate(views)]})
    return rows_to_dataset(rows, "train")


def test_most_frequent_counts_after_normalising_and_breaks_ties_by_first_seen() -> None:
    reports = ["B  report.", "a report.", "A REPORT.", "b report."]
    terms = [["x"], ["normal"], ["normal"], ["y"]]
    report, chosen, shares = most_frequent(reports, terms, normalize=True)
    assert report == "B  report." and chosen == ["x"] and shares == {"x": 0.5, "y": 0.5}
    report, chosen, _ = most_frequent(reports, terms, normalize=False)
    assert report == "B  report."  # every spelling once: the first wins
    report, chosen, shares = most_frequent(["n", "m", "n", "n"], [["a"], ["b"], ["a"], []])
    assert (report, chosen, shares) == ("n", ["a"], {"a": pytest.approx(2 / 3)})
    with pytest.raises(RefbenchError, match="no report"):
        most_frequent([], [])


def test_most_frequent_floor_predicts_the_mode_for_every_study(tmp_path: Path) -> None:
    train = xray_rows([("s1", [], NORMAL, ["normal"]), ("s2", ["cardiomegaly"], BIG_HEART,
                       ["cardiomegaly"]), ("s3", [], NORMAL, ["normal"])])
    model = MostFrequentReport.create({}, SPEC, train, tmp_path)
    assert (tmp_path / FLOOR_FILE).is_file()
    batch = model.collate(model.encode(train))
    preds = model.predict(batch)
    assert [p.id for p in preds] == ["s1", "s2", "s3"]
    assert {p.value.report for p in preds} == {NORMAL}
    assert preds[0].value.terms == ("normal",)
    assert dict(preds[0].value.term_scores) == {"normal": 1.0, "cardiomegaly": 0.0}
    again = MostFrequentReport.restore({}, SPEC, tmp_path)
    assert again.predict(batch)[1].value == preds[1].value


def test_floor_step_is_a_zero_loss_on_an_empty_optimizer(tmp_path: Path) -> None:
    train = xray_rows([("s1", [], NORMAL, ["normal"]), ("s2", [], NORMAL, ["normal"])])
    model = MostFrequentReport.create({}, SPEC, train, tmp_path)
    optimizer = model.configure_optimizer(TrainerConfig(lr=0.1))
    loss = model.training_step(model.collate(model.encode(train)))["loss"]
    loss.backward()
    optimizer.step()
    assert float(loss.detach()) == 0.0 and not list(model.parameters())


def test_nearest_neighbour_returns_the_nearest_training_study(tmp_path: Path) -> None:
    train = xray_rows([("n1", [], NORMAL, ["normal"]),
                       ("c1", ["cardiomegaly"], BIG_HEART, ["cardiomegaly"]),
                       ("e1", ["effusion_left", "effusion_right"], "Bilateral effusions.",
                        ["pleural effusion"])], seed=0)
    test = xray_rows([("q1", ["cardiomegaly"], "?", []), ("q2", [], "?", []),
                      ("q3", ["effusion_left", "effusion_right"], "?", [])], seed=1)
    model = NearestNeighbourReport.create({"k": 1}, SPEC, train, tmp_path)
    assert tuple(model.gallery.shape) == (3, 2 * 2 * 32 * 32)
    preds = {p.id: p.value for p in model.predict(model.collate(model.encode(test)))}
    assert preds["q1"].report == BIG_HEART and preds["q1"].terms == ("cardiomegaly",)
    assert preds["q2"].report == NORMAL
    assert preds["q3"].report == "Bilateral effusions."
    assert dict(preds["q3"].term_scores)["pleural effusion"] == pytest.approx(1.0, abs=1e-5)
    # restore rebuilds the memory from the run folder; the checkpoint holds the features
    again = NearestNeighbourReport.restore({}, SPEC, tmp_path)
    again.load_state_dict(model.state_dict())
    assert [p.value for p in again.predict(again.collate(again.encode(test)))] == list(preds.values())


def test_nearest_neighbour_with_k_scores_terms_by_similarity(tmp_path: Path) -> None:
    train = xray_rows([("a", [], NORMAL, ["normal"]), ("b", [], NORMAL, ["normal"]),
                       ("c", ["cardiomegaly"], BIG_HEART, ["cardiomegaly"])])
    model = NearestNeighbourReport.create({"k": 3}, SPEC, train, tmp_path)
    value = model.predict(model.collate(model.encode(train.select([0]))))[0].value
    scores = dict(value.term_scores)
    assert abs(sum(scores.values()) - 1.0) < 1e-5 and scores["normal"] > scores["cardiomegaly"]


def test_cnn_features_need_a_weight_file() -> None:
    with pytest.raises(RefbenchError, match="weight file") as err:
        NearestNeighbourReport.validate_config({"features": "cnn"}, SPEC)
    assert err.value.key == "model.backbone.weights"


def test_floors_refuse_other_tasks_and_init_from(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="writes reports"):
        MostFrequentReport.validate_config({}, get_spec("product1m-dev"))
    train = xray_rows([("s1", [], NORMAL, ["normal"])])
    with pytest.raises(RefbenchError, match="fitted on the training split"):
        MostFrequentReport.create({}, SPEC, train, tmp_path, init_from="elsewhere")


def test_restore_without_a_fit_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="incomplete") as err:
        MostFrequentReport.restore({}, SPEC, tmp_path)
    assert FLOOR_FILE in str(err.value)


def test_study_stack_reads_views_and_ct_volumes() -> None:
    rng = np.random.default_rng(0)
    views = [{"bytes": _png(render_xray([], rng, 64)), "path": "a.png"}]
    stack, mask = study_stack(views, "images", "s", 2, 32)
    assert stack.shape == (2, 2, 32, 32) and mask.tolist() == [1, 0]
    assert np.array_equal(stack[0, 0], stack[0, 1]) and not stack[1].any()
    volume = np.arange(16, dtype=np.uint8)[:, None, None, None] * np.ones((16, 2, 8, 8), np.uint8)
    stack, mask = study_stack(volume, "slices", "ct", 4, 8)
    assert mask.tolist() == [1, 1, 1, 1]
    assert [round(float(stack[i, 0, 0, 0]) * 255) for i in range(4)] == [0, 5, 10, 15]


@pytest.mark.parametrize("value, match", [([], "has no images"),
                                          ([{"bytes": b"\x89PNG\r\n\x1a\ntruncated", "path": "x.png"}],
                                           "unreadable image 'x.png'"),
                                          ([{"bytes": None, "path": "y.png"}], "holds no bytes")])
def test_bad_images_are_one_line_errors_naming_the_study(value: list, match: str) -> None:
    with pytest.raises(RefbenchError, match=match) as err:
        study_stack(value, "images", "CXR9", 2, 32)
    assert "CXR9" in str(err.value) and "\n" not in str(err.value)


def test_term_vocabulary_orders_by_frequency_and_applies_the_minimum() -> None:
    rows = xray_rows([("a", [], NORMAL, ["normal"]), ("b", [], NORMAL, ["normal", "x"]),
                      ("c", [], NORMAL, ["y"])])
    assert term_vocabulary(rows, 1) == ["normal", "x", "y"]
    assert term_vocabulary(rows, 2) == ["normal"]
