"""Anchor head of the 3D detectors: anchors, target assignment, direction bins, losses,
post-processing and a tiny overfit run (OpenPCDet v0.3 semantics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from refbench.baselines.det3d.anchor_head import (
    AnchorClassConfig,
    AnchorGenerator,
    AnchorHeadConfig,
    AnchorHeadSingle,
    decode_direction,
    get_direction_target,
    kitti_anchor,
)
from refbench.baselines.det3d.boxes import ResidualCoder
from refbench.baselines.det3d.losses import (
    SigmoidFocalClassificationLoss,
    WeightedCrossEntropyLoss,
    WeightedSmoothL1Loss,
    add_sin_difference,
    get_corner_loss_lidar,
)
from refbench.baselines.det3d.postprocess import PostConfig, post_process, recall_record
from refbench.errors import RefbenchError
from refbench.evaluation.kitti_iou import bev_iou as reference_bev_iou

pytestmark = pytest.mark.usefixtures("one_thread")

KITTI_RANGE = [0.0, -40.0, -3.0, 70.4, 40.0, 1.0]
KITTI_GRID = np.array([1408, 1600, 40])  # voxel 0.05 x 0.05 x 0.1


def lidar_bev_iou(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Reference rotated BEV IoU of LiDAR boxes via the KITTI metric's numpy code
    (its (x, z, l, w, ry) corners equal the LiDAR (x, y, dx, dy) corners with ry = -heading)."""
    def bev(t: torch.Tensor) -> np.ndarray:
        t = t.detach().double().cpu().numpy().reshape(-1, 7)
        return np.stack([t[:, 0], t[:, 1], t[:, 3], t[:, 4], -t[:, 6]], axis=1)
    return reference_bev_iou(bev(a), bev(b))


# -- anchors ------------------------------------------------------------------------------
def test_kitti_car_anchors_cover_the_official_feature_map() -> None:
    head = AnchorHeadSingle(AnchorHeadConfig([kitti_anchor("Car")]), 16, ["Car"], KITTI_GRID, KITTI_RANGE)
    (anchors,) = head.anchors
    # 1408 / 8 = 176 columns (x) and 1600 / 8 = 200 rows (y), 1 size x 2 rotations
    assert anchors.shape == (1, 200, 176, 1, 2, 7)
    assert head.num_anchors_per_location == 2
    flat = head.flat_anchors()
    assert flat.shape == (70400, 7)
    # centres from range edge to range edge (align_center False), z = bottom + dz / 2
    assert torch.allclose(anchors[0, 0, 0, 0, 0], torch.tensor([0.0, -40.0, -1.78 + 0.78, 3.9, 1.6, 1.56, 0.0]))
    assert torch.allclose(anchors[0, -1, -1, 0, 1], torch.tensor([70.4, 40.0, -1.0, 3.9, 1.6, 1.56, 1.57]))
    assert torch.allclose(anchors[0, 0, 1, 0, 0, 0], torch.tensor(70.4 / 175))
    assert torch.allclose(anchors[0, 1, 0, 0, 0, 1], torch.tensor(-40.0 + 80.0 / 199))
    # flattened as (y, x, rotation): the 1x1 conv's channel grouping
    assert torch.equal(flat[3], anchors[0, 0, 1, 0, 1])
    assert torch.equal(flat[2 * 176], anchors[0, 1, 0, 0, 0])

    head.eval()
    feats = torch.zeros(1, 16, 200, 176)
    out = head({"batch_size": 1, "spatial_features_2d": feats})
    assert out["batch_cls_preds"].shape == (1, 70400, 1)
    assert out["batch_box_preds"].shape == (1, 70400, 7)
    assert out["cls_preds_normalized"] is False
    with pytest.raises(RefbenchError):
        head({"batch_size": 1, "spatial_features_2d": torch.zeros(1, 16, 100, 88)})


def test_align_center_and_multi_class_ordering() -> None:
    cfg = AnchorClassConfig("Car", [[2.0, 1.0, 1.5]], [0.0], [-1.0], 0.6, 0.45,
                            feature_map_stride=1, align_center=True)
    (anchors,), per_loc = AnchorGenerator([0, 0, -3, 4, 2, 1], [cfg]).generate_anchors([(4, 2)])
    assert per_loc == [1]
    assert anchors.shape == (1, 2, 4, 1, 1, 7)
    assert torch.allclose(anchors[0, :, :, 0, 0, 0], torch.tensor([[0.5, 1.5, 2.5, 3.5]] * 2))
    assert torch.allclose(anchors[0, :, 0, 0, 0, 1], torch.tensor([0.5, 1.5]))

    two_sizes = AnchorClassConfig("Car", [[2.0, 1.0, 1.5], [4.0, 2.0, 1.5]], [0.0, 1.0], [-1.0], 0.6, 0.45,
                                  feature_map_stride=1)
    head = AnchorHeadSingle(AnchorHeadConfig([two_sizes]), 4, ["Car"], [4, 2, 1], [0, 0, -3, 4, 2, 1])
    flat = head.flat_anchors()
    assert flat.shape == (4 * 2 * 4, 7)
    # per location: size outer, rotation inner
    assert flat[:4, 3].tolist() == [2.0, 2.0, 4.0, 4.0] and flat[:4, 6].tolist() == [0.0, 1.0, 0.0, 1.0]

    names = ["Car", "Pedestrian", "Cyclist"]
    head = AnchorHeadSingle(AnchorHeadConfig([kitti_anchor(n) for n in names]), 8, names,
                            [64, 48, 1], [0, -20, -3, 40, 20, 1])
    assert head.num_anchors_per_location == 6
    assert head.conv_cls.out_channels == 18 and head.conv_box.out_channels == 42
    assert head.conv_dir_cls is not None and head.conv_dir_cls.out_channels == 12
    flat = head.flat_anchors()
    assert flat.shape == (6 * 8 * 6, 7)
    # per location: Car r0, Car r1, Pedestrian r0, Pedestrian r1, Cyclist r0, Cyclist r1
    assert flat[:6, 3].tolist() == pytest.approx([3.9, 3.9, 0.8, 0.8, 1.76, 1.76])
    assert flat[:6, 6].tolist() == pytest.approx([0.0, 1.57] * 3)
    with pytest.raises(RefbenchError):
        kitti_anchor("Truck")
    with pytest.raises(RefbenchError):
        AnchorHeadSingle(AnchorHeadConfig([kitti_anchor("Car")]), 8, ["Pedestrian"],
                         [64, 48, 1], [0, -20, -3, 40, 20, 1])


def test_configs_from_recipe_mappings() -> None:
    from refbench.config import from_dict

    head = from_dict(AnchorHeadConfig, {"anchors": [{
        "class_name": "Car", "anchor_sizes": [[3.9, 1.6, 1.56]], "anchor_rotations": [0, 1.57],
        "anchor_bottom_heights": [-1.78], "matched_threshold": 0.6, "unmatched_threshold": 0.45}],
        "pos_fraction": -1.0}, prefix="model.head")
    assert head.anchors[0] == kitti_anchor("Car") and head.pos_fraction is None
    assert head.code_weights == [1.0] * 7 and head.dir_offset == pytest.approx(0.78539)
    post = from_dict(PostConfig, {"recall_thresh_list": [0.3, 0.5], "nms_thresh": 0.1}, prefix="model.post")
    assert post.recall_thresh_list == (0.3, 0.5) and post.nms_pre_max == 4096
    with pytest.raises(RefbenchError, match="matched_threshold"):
        AnchorClassConfig("Car", [[3.9, 1.6, 1.56]], [0.0], [-1.78], 0.4, 0.45)


def test_official_head_init() -> None:
    head = AnchorHeadSingle(AnchorHeadConfig([kitti_anchor("Car")]), 64, ["Car"], [32, 32, 1],
                            [0, 0, -3, 32, 32, 1])
    assert torch.allclose(head.conv_cls.bias, torch.full_like(head.conv_cls.bias, -math.log(99.0)))
    assert head.conv_box.weight.std().item() == pytest.approx(0.001, rel=0.2)
    assert head.anchors_0 is not None and "anchors_0" not in head.state_dict()


# -- targets ------------------------------------------------------------------------------
def toy_head(matched: float = 0.6, unmatched: float = 0.45,
             class_names: tuple[str, ...] = ("Car",)) -> AnchorHeadSingle:
    """Anchors 2 x 1 x 1.5 at (i + 0.5, j + 0.5) of an 8 x 8 m range, headings 0 and pi/2."""
    anchors = [AnchorClassConfig(name, [[2.0, 1.0, 1.5]], [0.0, math.pi / 2], [-1.0], matched, unmatched,
                                 feature_map_stride=1, align_center=True) for name in class_names]
    return AnchorHeadSingle(AnchorHeadConfig(anchors), 4, list(class_names), [8, 8, 1], [0, 0, -3, 8, 8, 1])


def anchor_index(ix: int, iy: int, rot: int, per_loc: int = 2, nx: int = 8) -> int:
    return (iy * nx + ix) * per_loc + rot


def test_gt_on_an_anchor_is_positive_with_zero_target_and_far_anchors_negative() -> None:
    head = toy_head()
    gt = torch.tensor([[[2.5, 3.5, -0.25, 2.0, 1.0, 1.5, 0.0, 1.0],
                        [0, 0, 0, 0, 0, 0, 0, 0]]])  # second row: padding
    t = head.assign_targets(gt)
    labels, targets, weights = t["box_cls_labels"][0], t["box_reg_targets"][0], t["reg_weights"][0]
    hit = anchor_index(2, 3, 0)
    assert labels.shape == (128,) and targets.shape == (128, 7) and weights.shape == (128,)
    assert labels[hit] == 1
    assert torch.allclose(targets[hit], torch.zeros(7), atol=1e-6)
    assert (labels > 0).sum() == 1 and weights[hit] == 1.0 and weights.sum() == 1.0
    # the same place turned by pi/2 (IoU 1/3) and the neighbours (IoU 1/3) are background
    assert labels[anchor_index(2, 3, 1)] == 0
    assert labels[anchor_index(1, 3, 0)] == 0 and labels[anchor_index(3, 3, 0)] == 0
    assert (labels == 0).sum() == 127 and (labels == -1).sum() == 0
    assert torch.all(targets[labels <= 0] == 0)


def test_ignored_band_ties_and_force_match() -> None:
    # a gt halfway between two anchors: IoU 0.6 with both; with matched 0.7 no anchor
    # reaches the threshold, and both tied best anchors are force matched
    head = toy_head(matched=0.7, unmatched=0.45)
    gt = torch.tensor([[[3.0, 3.5, -0.25, 2.0, 1.0, 1.5, 0.0, 1.0]]])
    labels = head.assign_targets(gt)["box_cls_labels"][0]
    assert labels[anchor_index(2, 3, 0)] == 1 and labels[anchor_index(3, 3, 0)] == 1
    assert (labels > 0).sum() == 2

    # a thin gt: best anchor IoU 0.96 / 2 = 0.48, inside the ignore band [0.45, 0.6), still
    # positive by force match; its regression target encodes the size ratios
    head = toy_head()
    gt = torch.tensor([[[2.5, 3.5, -0.25, 1.6, 0.6, 1.5, 0.0, 1.0]]])
    t = head.assign_targets(gt)
    labels, targets = t["box_cls_labels"][0], t["box_reg_targets"][0]
    best = anchor_index(2, 3, 0)
    assert labels[best] == 1 and (labels > 0).sum() == 1 and (labels == -1).sum() == 0
    assert targets[best].tolist() == pytest.approx([0, 0, 0, math.log(0.8), math.log(0.6), 0, 0], abs=1e-6)
    assert labels[anchor_index(2, 3, 1)] == 0  # IoU 0.25

    # a small gt: IoU 0.48 / 2 = 0.24 (< unmatched) with both headings at its place, a tie:
    # both are force matched and stay positive although they fall below unmatched_threshold
    gt = torch.tensor([[[2.5, 3.5, -0.25, 0.8, 0.6, 1.5, 0.0, 1.0]]])
    labels = head.assign_targets(gt)["box_cls_labels"][0]
    assert labels[anchor_index(2, 3, 0)] == 1 and labels[anchor_index(2, 3, 1)] == 1
    assert (labels > 0).sum() == 2 and (labels == -1).sum() == 0

    # a gt that no anchor touches forces nothing
    gt = torch.tensor([[[30.0, 30.0, -0.25, 2.0, 1.0, 1.5, 0.0, 1.0]]])
    t = head.assign_targets(gt)
    assert torch.all(t["box_cls_labels"] == 0) and torch.all(t["box_reg_targets"] == 0)

    # an IoU inside the ignore band on a non-best anchor -> ignored (-1)
    gt = torch.tensor([[[3.1, 3.5, -0.25, 2.0, 1.0, 1.5, 0.0, 1.0]]])
    labels = head.assign_targets(gt)["box_cls_labels"][0]
    # IoU with the anchor at x=3.5 is 1.6/2.4 = 0.667 (positive), at x=2.5 1.4/2.6 = 0.54 (ignored)
    assert labels[anchor_index(3, 3, 0)] == 1 and labels[anchor_index(2, 3, 0)] == -1


def test_targets_follow_classes_and_batch() -> None:
    head = toy_head(class_names=("Car", "Pedestrian"))
    gt = torch.tensor([
        [[2.5, 3.5, -0.25, 2.0, 1.0, 1.5, 0.0, 2.0], [0, 0, 0, 0, 0, 0, 0, 0]],
        [[5.5, 1.5, -0.25, 1.0, 2.0, 1.5, math.pi / 2, 1.0], [2.5, 3.5, -0.25, 2.0, 1.0, 1.5, 0.0, 2.0]],
    ])
    labels = head.assign_targets(gt)["box_cls_labels"]
    assert labels.shape == (2, 8 * 8 * 4)
    # per location: Car r0, Car r1, Pedestrian r0, Pedestrian r1
    ped = anchor_index(2, 3, 2, per_loc=4)
    assert labels[0, ped] == 2 and (labels[0] > 0).sum() == 1
    assert labels[1, ped] == 2
    # a Car with dx 1, dy 2 turned by pi/2 lies 2 m along x: it matches the heading-0 anchor
    assert labels[1, anchor_index(5, 1, 0, per_loc=4)] == 1
    assert labels[1, anchor_index(5, 1, 1, per_loc=4)] == 0
    assert (labels[1] > 0).sum() == 2
    empty = head.assign_targets(torch.zeros(1, 3, 8))["box_cls_labels"]
    assert torch.all(empty == 0)


def test_sampling_and_norm_by_num_examples() -> None:
    anchors = [AnchorClassConfig("Car", [[2.0, 1.0, 1.5]], [0.0, math.pi / 2], [-1.0], 0.6, 0.45,
                                 feature_map_stride=1, align_center=True)]
    gt = torch.tensor([[[3.0, 3.5, -0.25, 2.0, 1.0, 1.5, 0.0, 1.0]]])  # two positives
    sampled = AnchorHeadSingle(AnchorHeadConfig(anchors, pos_fraction=0.25, sample_size=4, norm_by_num_examples=True),
                               4, ["Car"], [8, 8, 1], [0, 0, -3, 8, 8, 1])
    torch.manual_seed(0)
    t = sampled.assign_targets(gt)
    labels = t["box_cls_labels"][0]
    assert (labels > 0).sum() == 1 and (labels == 0).sum() == 3 and (labels >= 0).sum() == 4
    assert t["reg_weights"][0][labels > 0].tolist() == [0.25] and t["reg_weights"][0].sum() == 0.25
    assert AnchorHeadConfig(anchors, pos_fraction=-1.0).pos_fraction is None


# -- direction ----------------------------------------------------------------------------
@pytest.mark.parametrize("heading", [math.pi - 0.01, -math.pi + 0.01, math.pi + 0.02, -math.pi - 0.03,
                                     0.3, -2.0, 2.36, 0.78])
@pytest.mark.parametrize("anchor_rot", [0.0, 1.57])
def test_direction_bins_round_trip(heading: float, anchor_rot: float) -> None:
    coder = ResidualCoder()
    anchor = torch.tensor([[[10.0, 2.0, -1.0, 3.9, 1.6, 1.56, anchor_rot]]], dtype=torch.float64)
    gt = torch.tensor([[[10.4, 1.7, -0.8, 4.2, 1.7, 1.5, heading]]], dtype=torch.float64)
    target = coder.encode(gt, anchor)
    bins = get_direction_target(anchor, target, dir_offset=0.78539, num_bins=2, one_hot=False)
    # the regression alone can only be trusted up to pi (sin-difference loss)
    for flip in (0.0, math.pi, -math.pi):
        pred = target.clone()
        pred[..., 6] += flip
        decoded = coder.decode(pred, anchor)
        rot = decode_direction(decoded[..., 6], bins, 0.78539, 0.0, 2)
        diff = math.remainder(float(rot) - heading, 2 * math.pi)
        assert abs(diff) < 1e-9
        assert torch.allclose(decoded[..., :6], gt[..., :6])


def test_head_decodes_with_the_direction_classifier() -> None:
    head = toy_head().eval()
    heading = math.pi - 0.05
    gt = torch.tensor([[2.5, 3.5, -0.25, 2.0, 1.0, 1.5, heading]])
    anchors = head.flat_anchors()
    codes = head.box_coder.encode(gt.expand(anchors.shape[0], 7), anchors)
    codes[:, 6] -= math.pi  # the heading residual is off by pi, the dir bin fixes it
    bins = get_direction_target(anchors, codes[None], dir_offset=head.cfg.dir_offset, num_bins=2,
                                one_hot=False)[0]
    true_bins = get_direction_target(anchors, codes[None] + torch.tensor([0, 0, 0, 0, 0, 0, math.pi]),
                                     dir_offset=head.cfg.dir_offset, num_bins=2, one_hot=False)[0]
    assert torch.all(bins != true_bins)
    box_preds = codes.view(1, 8, 8, 2 * 7)
    dir_preds = torch.nn.functional.one_hot(true_bins, 2).float().view(1, 8, 8, 4)
    cls = torch.zeros(1, 8, 8, 2)
    _, boxes = head.generate_predicted_boxes(1, cls, box_preds, dir_preds)
    diffs = torch.remainder(boxes[0, :, 6] - heading + math.pi, 2 * math.pi) - math.pi
    assert torch.allclose(diffs, torch.zeros_like(diffs), atol=1e-5)
    assert torch.allclose(boxes[0, :, :6], gt[:, :6].expand(128, 6), atol=1e-5)


# -- losses -------------------------------------------------------------------------------
def test_focal_loss_matches_hand_computation() -> None:
    loss_fn = SigmoidFocalClassificationLoss(gamma=2.0, alpha=0.25)
    logits = torch.tensor([[[2.0, -1.0], [0.5, 3.0]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    weights = torch.tensor([[1.0, 0.5]])
    got = loss_fn(logits, target, weights)

    def sig(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    def pos(x: float) -> float:
        return 0.25 * (1 - sig(x)) ** 2 * -math.log(sig(x))

    def neg(x: float) -> float:
        return 0.75 * sig(x) ** 2 * -math.log(1 - sig(x))

    want = [[pos(2.0), neg(-1.0)], [0.5 * neg(0.5), 0.5 * neg(3.0)]]
    assert got.shape == (1, 2, 2)
    assert torch.allclose(got[0], torch.tensor(want), rtol=1e-5)
    # stable for large logits
    big = loss_fn(torch.tensor([[[80.0, -80.0]]]), torch.tensor([[[0.0, 1.0]]]), torch.ones(1, 1))
    assert torch.isfinite(big).all() and big.min() > 0


def test_head_classification_loss_normalisation() -> None:
    head = toy_head()
    # four anchors: positive, negative, ignored, negative; all logits 0 (p = 0.5)
    head.forward_ret_dict = {"cls_preds": torch.zeros(1, 4), "box_cls_labels": torch.tensor([[1, 0, -1, 0]])}
    loss, tb = head.get_cls_layer_loss()
    want = (0.25 * 0.25 + 2 * 0.75 * 0.25) * math.log(2.0) / 1.0  # one positive
    assert loss.item() == pytest.approx(want, rel=1e-6) and tb["rpn_loss_cls"] == pytest.approx(want, rel=1e-6)


def test_head_box_loss_ignores_a_pi_flip_but_the_direction_loss_does_not() -> None:
    head = toy_head()
    gt = torch.tensor([[[2.5, 3.5, -0.25, 1.8, 0.9, 1.4, 0.3, 1.0]]])
    targets = head.assign_targets(gt)
    assert (targets["box_cls_labels"] > 0).sum() == 1
    preds = targets["box_reg_targets"].clone()
    preds[..., 6] += math.pi
    dir_bins = get_direction_target(head.flat_anchors(), targets["box_reg_targets"],
                                    dir_offset=head.cfg.dir_offset, num_bins=2, one_hot=False)
    dir_logits = torch.nn.functional.one_hot(dir_bins, 2).float() * 4.0
    head.forward_ret_dict = {"box_preds": preds.view(1, 8, 8, 14), "dir_cls_preds": dir_logits.view(1, 8, 8, 4),
                             **targets}
    _, tb = head.get_box_reg_layer_loss()
    assert tb["rpn_loss_loc"] == pytest.approx(0.0, abs=1e-8)
    assert tb["rpn_loss_dir"] == pytest.approx(0.2 * -math.log(math.exp(4) / (1 + math.exp(4))), rel=1e-5)
    head.forward_ret_dict["dir_cls_preds"] = (4.0 - dir_logits).view(1, 8, 8, 4)  # wrong bins
    _, tb = head.get_box_reg_layer_loss()
    assert tb["rpn_loss_dir"] == pytest.approx(0.2 * -math.log(1 / (1 + math.exp(4))), rel=1e-5)
    # a real box error is penalised: 0.5 in the x code -> smooth-L1 (0.5 - 1/18) * loc_weight 2
    head.forward_ret_dict["box_preds"] = (preds + torch.tensor([0.5, 0, 0, 0, 0, 0, 0])).view(1, 8, 8, 14)
    _, tb = head.get_box_reg_layer_loss()
    assert tb["rpn_loss_loc"] == pytest.approx(2 * (0.5 - 1 / 18), rel=1e-5)


def test_smooth_l1_sin_difference_and_cross_entropy() -> None:
    loss_fn = WeightedSmoothL1Loss(beta=1 / 9, code_weights=[1.0, 2.0])
    pred = torch.tensor([[[0.05, 1.0], [0.0, 0.7]]])
    target = torch.tensor([[[0.0, 0.0], [0.0, float("nan")]]])
    out = loss_fn(pred, target, torch.tensor([[1.0, 1.0]]))
    assert out[0, 0, 0].item() == pytest.approx(0.5 * 0.05 ** 2 * 9)
    assert out[0, 0, 1].item() == pytest.approx(2.0 - 0.5 / 9)
    assert out[0, 1].tolist() == [0.0, 0.0]  # NaN targets are ignored

    a = torch.tensor([[0.0] * 6 + [0.3]])
    b = torch.tensor([[0.0] * 6 + [0.3 + math.pi]])
    s1, s2 = add_sin_difference(a, b)
    assert torch.allclose(s1[..., 6] - s2[..., 6], torch.zeros(1), atol=1e-6)  # sin(-pi) = 0
    assert torch.equal(s1[..., :6], a[..., :6])

    ce = WeightedCrossEntropyLoss()(torch.tensor([[[0.0, math.log(3.0)]]]), torch.tensor([[[0.0, 1.0]]]),
                                    torch.tensor([[2.0]]))
    assert ce.item() == pytest.approx(2.0 * -math.log(0.75))


def test_corner_loss() -> None:
    gt = torch.tensor([[1.0, 2.0, -0.5, 4.0, 1.8, 1.5, 0.4]])
    flipped = gt.clone()
    flipped[:, 6] += math.pi
    assert get_corner_loss_lidar(flipped, gt).item() == pytest.approx(0.0, abs=1e-6)
    shifted = gt.clone()
    shifted[:, 0] += 0.5
    assert get_corner_loss_lidar(shifted, gt).item() == pytest.approx(0.5 * 0.5 ** 2, rel=1e-5)
    far = gt.clone()
    far[:, 2] += 3.0
    assert get_corner_loss_lidar(far, gt).item() == pytest.approx(3.0 - 0.5, rel=1e-5)


# -- post-processing ----------------------------------------------------------------------
def test_post_process_threshold_nms_and_labels() -> None:
    boxes = torch.tensor([[[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],
                           [0.2, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],  # overlaps the first
                           [10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],
                           [20.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]]])
    logits = torch.logit(torch.tensor([[[0.9, 0.1], [0.2, 0.95], [0.3, 0.6], [0.05, 0.02]]]))
    batch = {"batch_size": 1, "batch_cls_preds": logits, "batch_box_preds": boxes, "cls_preds_normalized": False}
    (out,) = post_process(batch, PostConfig(score_thresh=0.1, nms_thresh=0.01), num_class=2)
    assert out["pred_scores"].tolist() == pytest.approx([0.95, 0.6])
    assert out["pred_labels"].tolist() == [2, 2]
    assert torch.equal(out["pred_boxes"], boxes[0, [1, 2]])

    (multi,) = post_process(batch, PostConfig(score_thresh=0.1, multi_class_nms=True), num_class=2)
    assert sorted(zip(multi["pred_labels"].tolist(), multi["pred_scores"].tolist())) == \
        [(1, pytest.approx(0.3)), (1, pytest.approx(0.9)), (2, pytest.approx(0.6)), (2, pytest.approx(0.95))]

    # second stage: normalised scores and the rois' own labels
    roi_batch = {"batch_size": 1, "batch_cls_preds": torch.tensor([[[0.9], [0.5], [0.05], [0.7]]]),
                 "batch_box_preds": boxes, "cls_preds_normalized": True,
                 "roi_labels": torch.tensor([[3, 1, 2, 2]])}
    (out,) = post_process(roi_batch, PostConfig(), num_class=3)
    assert out["pred_labels"].tolist() == [3, 2]
    assert out["pred_scores"].tolist() == pytest.approx([0.9, 0.7])


def test_post_process_with_batch_index_and_recall() -> None:
    boxes = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0], [10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],
                          [0.0, 5.0, 0.0, 4.0, 2.0, 1.5, 0.0]])
    batch = {"batch_size": 2, "batch_index": torch.tensor([0, 0, 1]), "batch_box_preds": boxes,
             "batch_cls_preds": torch.tensor([[3.0], [-3.0], [1.0]]), "cls_preds_normalized": False}
    first, second = post_process(batch, PostConfig(), num_class=1)
    assert torch.equal(first["pred_boxes"], boxes[:1]) and torch.equal(second["pred_boxes"], boxes[2:])
    assert first["pred_labels"].tolist() == [1] and second["pred_labels"].tolist() == [1]
    gt = torch.tensor([[0.5, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 1.0], [30.0, 0, 0, 4, 2, 1.5, 0, 1], [0.0] * 8])
    rec = recall_record(first["pred_boxes"], gt, (0.3, 0.7), rois=boxes[:2])
    # IoU of the first box with the first gt: 3.5 x 2 x 1.5 / (2 * 12 - 10.5) = 0.78
    assert rec == {"gt": 2, "roi_0.3": 1, "rcnn_0.3": 1, "roi_0.7": 1, "rcnn_0.7": 1}


# -- a tiny overfit run -------------------------------------------------------------------
def test_head_overfits_one_box() -> None:
    # one positive anchor against 799 others on fixed random features: the focal loss lifts
    # its score slowly (its (1 - p)^2 factor fades), hence the large learning rate
    torch.manual_seed(1)
    cfg = AnchorHeadConfig([AnchorClassConfig("Car", [[3.9, 1.6, 1.56]], [0.0, 1.57], [-1.78], 0.6, 0.45,
                                              feature_map_stride=1)])
    head = AnchorHeadSingle(cfg, 16, ["Car"], [20, 20, 1], [0.0, -10.0, -3.0, 20.0, 10.0, 1.0])
    feats = torch.randn(1, 16, 20, 20)
    gt = torch.tensor([[[7.3, 1.2, -0.9, 4.1, 1.7, 1.5, 2.8, 1.0]]])
    opt = torch.optim.Adam(head.parameters(), lr=0.1)
    head.train()
    losses = []
    for _ in range(150):
        head({"batch_size": 1, "spatial_features_2d": feats, "gt_boxes": gt})
        loss, tb = head.get_loss()
        assert set(tb) == {"rpn_loss_cls", "rpn_loss_loc", "rpn_loss_dir", "rpn_loss"}
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1])

    head.eval()
    with torch.no_grad():
        batch = head({"batch_size": 1, "spatial_features_2d": feats})
    (pred,) = post_process(batch, PostConfig(), num_class=1)
    assert pred["pred_boxes"].shape[0] >= 1
    iou = lidar_bev_iou(pred["pred_boxes"], gt[0, :, :7])[:, 0]
    good = (iou > 0.5) & (pred["pred_scores"].numpy() > 0.5)
    assert good.any(), (iou, pred["pred_scores"])
    best = int(np.argmax(iou))
    assert pred["pred_labels"][best] == 1
    # the heading is right modulo 2 pi, not only modulo pi (direction classifier)
    diff = math.remainder(float(pred["pred_boxes"][best, 6]) - 2.8, 2 * math.pi)
    assert abs(diff) < 0.3
