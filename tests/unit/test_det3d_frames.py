"""Frame conventions: picked by task type and submission format, never by dataset name;
each holds its layout's class, point-feature, row and prediction rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from refbench.baselines.det3d import frames as fr
from refbench.errors import RefbenchError
from refbench.registry import get_spec


def _with_format(name: str, fmt: str):
    spec = get_spec(name)
    return dataclasses.replace(spec, submission=dataclasses.replace(spec.submission, format=fmt))


def test_convention_is_chosen_by_submission_format() -> None:
    assert isinstance(fr.convention_for(get_spec("kitti-car-3d")), fr.KittiFrames)
    assert isinstance(fr.convention_for(get_spec("waymo-3d")), fr.WaymoFrames)
    # the dataset name plays no part: a KITTI dataset written as Waymo boxes is Waymo-style
    assert isinstance(fr.convention_for(_with_format("kitti-car-3d", "waymo_boxes")),
                      fr.WaymoFrames)


def test_non_detection_task_is_rejected() -> None:
    with pytest.raises(RefbenchError, match="glue-sst2") as err:
        fr.convention_for(get_spec("glue-sst2"))
    assert err.value.key == "benchmark" and "classification" in str(err.value)


def test_unsupported_format_names_the_supported_ones() -> None:
    with pytest.raises(RefbenchError, match="'other'") as err:
        fr.convention_for(_with_format("kitti-car-3d", "other"))
    assert "kitti_label_dir" in str(err.value) and "waymo_boxes" in str(err.value)


def test_class_checks() -> None:
    kitti, waymo = fr.KittiFrames(), fr.WaymoFrames()
    kitti.check_classes(["Car", "Pedestrian"])
    waymo.check_classes(["Vehicle", "cyclist"])
    with pytest.raises(RefbenchError, match="unknown kitti class 'Vehicle'"):
        kitti.check_classes(["Car", "Vehicle"])
    with pytest.raises(RefbenchError, match="unknown waymo class 'Car'"):
        waymo.check_classes(["Car"])
    with pytest.raises(RefbenchError, match="at least one class"):
        kitti.check_classes([])


def test_point_feature_checks() -> None:
    fr.KittiFrames().check_point_features(4)
    fr.WaymoFrames().check_point_features(4)
    fr.WaymoFrames().check_point_features(5)
    with pytest.raises(RefbenchError, match="KITTI points have 4 features") as err:
        fr.KittiFrames().check_point_features(5)
    assert err.value.key == "model.num_point_features"
    with pytest.raises(RefbenchError, match="use 4 or 5"):
        fr.WaymoFrames().check_point_features(6)


def test_frame_from_row_keeps_recipe_classes() -> None:
    points = np.array([[1, 2, 0, 2.0, 0.5], [3, 4, 0, -1.0, 0.1]], np.float32)
    boxes = np.arange(21, dtype=np.float32).reshape(3, 7)
    kitti_row = {"id": "000001", "points": points[:, :4], "name": ["Car", "Van", "Car"],
                 "boxes_lidar": boxes, "calib": {}, "image_shape": [375, 1242],
                 "difficulty": [0, 1, 2], "num_points": [10, 20, 30]}
    frame = fr.KittiFrames().frame_from_row(kitti_row, ["Car"], 4)
    assert frame["gt_names"].tolist() == ["Car", "Car"]
    assert frame["difficulty"].tolist() == [0, 2] and frame["image_shape"] == (375, 1242)
    np.testing.assert_array_equal(frame["points"], points[:, :4])

    waymo_row = {"context_name": "seg", "timestamp": 7, "points": points, "types": [1, 2, 4],
                 "boxes": boxes, "difficulty": [1, 2, 1], "num_points": [5, 6, 7]}
    frame = fr.WaymoFrames().frame_from_row(waymo_row, ["Vehicle", "Cyclist"], 5)
    assert frame["id"] == ("seg", 7) and frame["gt_names"].tolist() == ["Vehicle", "Cyclist"]
    np.testing.assert_allclose(frame["points"][:, 3], np.tanh(points[:, 3]))
    assert set(fr.WaymoFrames.meta_keys) <= set(frame)
    pred = fr.WaymoFrames().prediction(boxes[:1], np.array([0.9]), np.array([2]),
                                       ["Vehicle", "Cyclist"], frame)
    assert pred.types.tolist() == [fr.WAYMO_TYPES["cyclist"]]
