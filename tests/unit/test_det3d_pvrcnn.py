"""PV-RCNN second stage: proposal selection, RoI sampling, canonical transform, VSA, heads."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from refbench.baselines.det3d.boxes import boxes_iou3d, points_in_boxes
from refbench.baselines.det3d.pvrcnn import (
    PointHeadConfig,
    PointHeadSimple,
    PVRCNNHead,
    PVRCNNHeadConfig,
    RoIGridPoolConfig,
    SALayerConfig,
    StackSAModuleMSG,
    VoxelSetAbstraction,
    VSAConfig,
    bilinear_interpolate,
    get_voxel_centers,
)
from refbench.baselines.det3d.roi_head import (
    NMSConfig,
    ProposalTargetConfig,
    ProposalTargetLayer,
    RoIHeadConfig,
    RoIHeadTemplate,
    make_fc_layers,
)
from refbench.errors import RefbenchError

pytestmark = pytest.mark.usefixtures("one_thread")

CAR = (3.9, 1.6, 1.5)


def _box(x: float, y: float, z: float = 0.0, heading: float = 0.0, size=CAR) -> list[float]:
    return [x, y, z, *size, heading]


class _TemplateOnly(RoIHeadTemplate):
    """The template with a trivial flat pooling: exercises the subclass contract."""

    def __init__(self, cfg: RoIHeadConfig) -> None:
        super().__init__(num_class=1, cfg=cfg)
        self.build_layers(7)

    def roi_grid_pool(self, batch_dict):
        return batch_dict["rois"].reshape(-1, 7)


def _tiny_head_cfg(**target) -> RoIHeadConfig:
    return RoIHeadConfig(shared_fc=(8,), cls_fc=(8,), reg_fc=(8,), dp_ratio=0.0,
                         nms_train=NMSConfig(50, 4, 0.5), nms_test=NMSConfig(50, 4, 0.5),
                         target=ProposalTargetConfig(**target))


# -- proposal layer -------------------------------------------------------------------------
def test_proposal_layer_keeps_top_boxes_and_suppresses_overlaps():
    head = _TemplateOnly(_tiny_head_cfg())
    boxes = torch.tensor([[_box(0, 0), _box(0.2, 0.0), _box(10, 0), _box(20, 0, heading=1.0),
                           _box(30, 0)]])
    # two classes: the label is the argmax, the score the max
    cls = torch.tensor([[[0.9, 0.1], [0.0, 0.8], [0.1, 0.7], [0.3, 0.2], [-5.0, -4.0]]])
    bd = {"batch_size": 1, "batch_box_preds": boxes, "batch_cls_preds": cls}
    head.proposal_layer(bd, NMSConfig(nms_pre_max=4, nms_post_max=5, nms_thresh=0.5))
    # box 1 overlaps box 0 (IoU ~0.9) and is removed; box 4 is outside the pre-NMS top 4
    assert torch.equal(bd["rois"][0, :3], boxes[0, [0, 2, 3]])
    assert torch.all(bd["rois"][0, 3:] == 0)
    # 1-based labels; padded rows read 1 as in OpenPCDet (label 0 + 1, score 0, box 0)
    assert bd["roi_labels"][0].tolist() == [1, 2, 1, 1, 1]
    assert torch.allclose(bd["roi_scores"][0], torch.tensor([0.9, 0.7, 0.3, 0.0, 0.0]))
    assert bd["has_class_labels"] is True

    bd = {"batch_size": 1, "batch_box_preds": boxes, "batch_cls_preds": cls}
    head.proposal_layer(bd, NMSConfig(nms_pre_max=10, nms_post_max=2, nms_thresh=0.95))
    # a looser threshold keeps the overlapping box; post_max caps the count
    assert torch.equal(bd["rois"][0], boxes[0, [0, 1]])


# -- proposal target layer ------------------------------------------------------------------
def _one_gt_batch(rois: list[list[float]], labels: list[int] | None = None):
    gt = torch.tensor([[_box(5, 5, heading=0.3) + [1.0], [0.0] * 8]])  # one gt + padding
    r = torch.tensor([rois])
    lab = torch.tensor([labels if labels is not None else [1] * len(rois)])
    return {"batch_size": 1, "rois": r, "roi_scores": torch.rand(1, len(rois)),
            "roi_labels": lab, "gt_boxes": gt}


def test_proposal_target_labels_from_iou():
    torch.manual_seed(0)
    d = CAR[0] / 3  # a shift along the heading by L/3 gives IoU 0.5
    c, s = math.cos(0.3), math.sin(0.3)
    rois = [_box(5, 5, heading=0.3), _box(5 + d * c, 5 + d * s, heading=0.3), _box(30, 30)]
    layer = ProposalTargetLayer(ProposalTargetConfig(roi_per_image=64))
    out = layer(_one_gt_batch(rois))
    ious, labels = out["gt_iou_of_rois"][0], out["rcnn_cls_labels"][0]
    for k in range(64):
        which = min(range(3), key=lambda j: (out["rois"][0, k] - torch.tensor(rois[j])).abs().sum())
        if which == 0:  # identical to the gt: foreground
            assert ious[k] == pytest.approx(1.0, abs=1e-5) and labels[k] == 1
            assert out["reg_valid_mask"][0, k] == 1
        elif which == 1:  # IoU 0.5: hard background, soft label (0.5 - 0.25) / 0.5
            assert ious[k] == pytest.approx(0.5, abs=1e-4)
            assert labels[k] == pytest.approx(0.5, abs=1e-3)
            assert out["reg_valid_mask"][0, k] == 0
        else:  # far: easy background
            assert ious[k] == 0 and labels[k] == 0 and out["reg_valid_mask"][0, k] == 0
        assert torch.equal(out["gt_of_rois"][0, k], _one_gt_batch(rois)["gt_boxes"][0, 0])
    # one fg RoI exists: it is taken once; of the 63 background draws, 80 % would be hard
    # but the hard pool has one RoI, so it is drawn once and the rest are easy
    assert int((ious >= 0.55).sum()) == 1
    assert int(((ious >= 0.1) & (ious < 0.55)).sum()) == 1
    assert int((ious < 0.1).sum()) == 62

    # 'cls' scores: hard labels, the in-between RoIs ignored
    out = ProposalTargetLayer(ProposalTargetConfig(roi_per_image=16, cls_score_type="cls"))(
        _one_gt_batch(rois))
    assert set(out["rcnn_cls_labels"][0].tolist()) <= {1.0, -1.0, 0.0}
    assert torch.all(out["rcnn_cls_labels"][0][(out["gt_iou_of_rois"][0] - 0.5).abs() < 1e-3] == -1)


def test_proposal_target_sampling_ratio_and_class_matching():
    torch.manual_seed(1)
    c, s = math.cos(0.3), math.sin(0.3)  # shifts along the gt heading: IoU (L - d) / (L + d)
    fg = [_box(5 + 0.05 * k * c, 5 + 0.05 * k * s, heading=0.3) for k in range(20)]
    hard = [_box(5 + (1.4 + 0.02 * k) * c, 5 + (1.4 + 0.02 * k) * s, heading=0.3) for k in range(15)]
    easy = [_box(40 + k, 0) for k in range(10)]
    batch = _one_gt_batch(fg + hard + easy)
    out = ProposalTargetLayer(ProposalTargetConfig(roi_per_image=32))(batch)
    ious = out["gt_iou_of_rois"][0]
    all_ious = boxes_iou3d(batch["rois"][0], batch["gt_boxes"][0, :1, 0:7])[:, 0]
    assert int((all_ious >= 0.55).sum()) == 20 and int((all_ious < 0.1).sum()) == 10
    assert int((ious >= 0.55).sum()) == 16  # fg_ratio 0.5 of 32
    assert int(((ious >= 0.1) & (ious < 0.55)).sum()) == int(16 * 0.8)
    assert int((ious < 0.1).sum()) == 16 - int(16 * 0.8)
    # fg RoIs come first and are distinct (drawn without replacement)
    assert len({tuple(r.tolist()) for r in out["rois"][0, :16]}) == 16

    # a RoI of another class does not match the gt (SAMPLE_ROI_BY_EACH_CLASS) ...
    batch = _one_gt_batch([_box(5, 5, heading=0.3), _box(40, 0)], labels=[2, 1])
    out = ProposalTargetLayer(ProposalTargetConfig(roi_per_image=8))(batch)
    assert torch.all(out["gt_iou_of_rois"] == 0)
    # ... unless classes are ignored; appending the gt makes a foreground RoI in any case
    out = ProposalTargetLayer(ProposalTargetConfig(roi_per_image=8, sample_roi_by_each_class=False))(batch)
    assert out["gt_iou_of_rois"].max() == pytest.approx(1.0, abs=1e-5)
    out = ProposalTargetLayer(ProposalTargetConfig(roi_per_image=8, append_gt_to_rois=True))(batch)
    assert int((out["gt_iou_of_rois"][0] > 0.99).sum()) == 1  # the appended gt, class 1
    assert out["roi_labels"][0, 0] == 1 and out["rcnn_cls_labels"][0, 0] == 1


# -- canonical transform and decoding -------------------------------------------------------
def test_canonical_transform_hand_case():
    rois = torch.tensor([[_box(1, 1, heading=math.pi / 2), _box(1, 1, heading=math.pi / 2)]])
    gt = torch.tensor([[_box(1, 3, 0.5, math.pi / 2) + [1.0], _box(1, 3, 0.5, -math.pi / 2) + [1.0]]])
    ct = RoIHeadTemplate.canonical_transform(rois, gt, 1)
    # (0, 2) in the world is straight ahead of a RoI facing +y: local (2, 0)
    assert torch.allclose(ct[0, :, 0:3], torch.tensor([[2.0, 0.0, 0.5]] * 2), atol=1e-6)
    # same heading -> 0; opposite heading -> flipped by pi -> 0 as well
    assert torch.allclose(ct[0, :, 6], torch.zeros(2), atol=1e-6)
    assert torch.equal(ct[0, :, 3:6], gt[0, :, 3:6]) and torch.equal(ct[..., 7], gt[..., 7])


def test_encode_decode_round_trip_through_roi_frames():
    torch.manual_seed(2)
    head = _TemplateOnly(_tiny_head_cfg())
    n = 200
    rois = torch.cat([torch.randn(n, 3) * 20, torch.rand(n, 3) * 3 + 0.5,
                      (torch.rand(n, 1) - 0.5) * 6 * math.pi], dim=1)
    gt = torch.cat([rois[:, 0:3] + torch.randn(n, 3), rois[:, 3:6] * (0.5 + torch.rand(n, 3)),
                    (torch.rand(n, 1) - 0.5) * 4 * math.pi, torch.ones(n, 1)], dim=1)
    ct = RoIHeadTemplate.canonical_transform(rois[None].double(), gt[None].double(), 1)[0]
    assert torch.all(ct[:, 6].abs() <= math.pi / 2 + 1e-9)
    anchors = rois.double().clone()
    anchors[:, 0:3] = 0
    anchors[:, 6] = 0
    deltas = head.box_coder.encode(ct[:, 0:7], anchors)
    cls, boxes = head.generate_predicted_boxes(1, rois[None].double(), torch.zeros(n, 1).double(), deltas)
    boxes = boxes[0]
    assert cls.shape == (1, n, 1)
    assert torch.allclose(boxes[:, 0:6], gt[:, 0:6].double(), atol=1e-6)
    diff = (boxes[:, 6] - gt[:, 6].double()) % (2 * math.pi)
    flipped = ((gt[:, 6] - rois[:, 6]) % (2 * math.pi) - math.pi).abs() < math.pi / 2
    # headings come back mod 2 pi, or turned by pi where the target was flipped
    expect = torch.where(flipped, torch.full_like(diff, math.pi), torch.zeros_like(diff))
    err = torch.minimum((diff - expect).abs(), 2 * math.pi - (diff - expect).abs())
    assert err.max() < 1e-6
    assert 20 < int(flipped.sum()) < 180  # both cases were exercised


def test_regression_loss_vanishes_for_perfect_predictions():
    head = _TemplateOnly(_tiny_head_cfg())
    rois = torch.tensor([[_box(3, 4, 0.2, 2.0), _box(-5, 1, 0.0, -1.0)]])
    gt = torch.cat([rois, torch.ones(1, 2, 1)], dim=-1)
    gt[0, 1, 6] += math.pi  # opposite heading: still a perfect (flipped) match
    ret = {"rois": rois, "gt_of_rois": RoIHeadTemplate.canonical_transform(rois, gt, 1),
           "gt_of_rois_src": gt, "reg_valid_mask": torch.tensor([[1, 1]]),
           "rcnn_reg": torch.zeros(2, 7, requires_grad=True),
           "rcnn_cls": torch.full((2, 1), 20.0), "rcnn_cls_labels": torch.tensor([[1.0, -1.0]])}
    head.forward_ret_dict = ret
    loss, tb = head.get_loss()
    assert loss.item() < 1e-6 and tb["rcnn_loss_corner"] < 1e-9
    ret["rcnn_reg"] = torch.full((2, 7), 0.3, requires_grad=True)
    loss, tb = head.get_loss()
    assert tb["rcnn_loss_reg"] > 0.1 and tb["rcnn_loss_corner"] > 0.01
    loss.backward()
    assert ret["rcnn_reg"].grad.abs().sum() > 0


# -- building blocks ------------------------------------------------------------------------
def test_fc_layers_and_config_errors():
    layers = make_fc_layers(10, [6, 4], 3, dropout=0.3)
    kinds = [type(m).__name__ for m in layers]
    assert kinds == ["Conv1d", "BatchNorm1d", "ReLU", "Dropout", "Conv1d", "BatchNorm1d", "ReLU", "Conv1d"]
    assert layers(torch.randn(5, 10, 1)).shape == (5, 3, 1)
    with pytest.raises(RefbenchError):
        RoIHeadConfig(target=ProposalTargetConfig(cls_score_type="nope"))
    with pytest.raises(RefbenchError):
        VSAConfig(features_source=("bev", "x_conv9"))
    with pytest.raises(RefbenchError):
        PVRCNNHeadConfig(roi_grid_pool=RoIGridPoolConfig(mlps=((4,),), pool_radius=(1.0, 2.0)))


def test_voxel_centres_and_bilinear():
    coords = torch.tensor([[0, 0, 0], [1, 2, 3]])  # [z, y, x]
    centres = get_voxel_centers(coords, 4, [0.05, 0.05, 0.1], [0, -40, -3, 70.4, 40, 1])
    assert torch.allclose(centres, torch.tensor([[0.1, -39.9, -2.8], [0.7, -39.5, -2.4]]), atol=1e-5)
    im = torch.arange(12.0).view(3, 4, 1)  # value = 4 y + x
    val = bilinear_interpolate(im, torch.tensor([1.0, 1.5, 2.25, 1.0]), torch.tensor([1.0, 0.5, 1.0, 2.0]))
    # the last value is on the border row: with clamped neighbours its weights vanish, the
    # official function returns 0 there and so does this re-derivation
    assert torch.allclose(val[:, 0], torch.tensor([5.0, 3.5, 6.25, 0.0]))


def test_stack_sa_batches_are_independent():
    torch.manual_seed(3)
    sa = StackSAModuleMSG([0.5, 1.0], [4, 8], [[2, 8], [2, 4, 6]]).eval()
    xyz = [torch.rand(30, 3), torch.rand(20, 3)]
    feats = [torch.randn(30, 2), torch.randn(20, 2)]
    new = [torch.rand(5, 3), torch.rand(7, 3)]
    _, both = sa(torch.cat(xyz), torch.tensor([30, 20]), torch.cat(new), torch.tensor([5, 7]),
                 torch.cat(feats))
    assert both.shape == (12, 14)
    for b, rows in ((0, slice(0, 5)), (1, slice(5, 12))):
        _, one = sa(xyz[b], torch.tensor([len(xyz[b])]), new[b], torch.tensor([len(new[b])]), feats[b])
        assert torch.allclose(both[rows], one, atol=1e-6)


# -- tiny scene -----------------------------------------------------------------------------
VOXEL, PC_RANGE = [0.1, 0.1, 0.2], [0.0, -4.0, -2.0, 12.8, 4.0, 2.0]


def _scene(batch_size: int = 2):
    g = torch.Generator().manual_seed(4)
    gt = torch.tensor([[_box(3, 0, 0, 0.3) + [1], _box(8, 2, 0, -1.0) + [1]],
                       [_box(6, -1, 0, 1.2) + [1], [0.0] * 8]])
    pts = []
    for b in range(batch_size):
        p = torch.rand(250, 4, generator=g) * torch.tensor([12.8, 8, 4, 1]) + torch.tensor([0, -4, -2, 0])
        for box in gt[b][gt[b].abs().sum(-1) > 0]:  # a dense blob on each object
            p = torch.cat([p, torch.cat([box[0:3] + torch.randn(40, 3, generator=g) * 0.4,
                                         torch.rand(40, 1, generator=g)], 1)])
        pts.append(torch.cat([torch.full((p.shape[0], 1), float(b)), p], 1))
    points = torch.cat(pts)
    points = points[torch.randperm(points.shape[0], generator=g)]  # rows need not be sorted

    def sparse(stride: int, channels: int, n: int):
        shape = (int(20 / stride) + 1, int(80 / stride), int(128 / stride))
        idx = torch.stack([torch.randint(0, batch_size, (n,), generator=g)]
                          + [torch.randint(0, s, (n,), generator=g) for s in shape], 1).int()
        return SimpleNamespace(features=torch.randn(n, channels, generator=g), indices=idx)

    anchors = torch.cat([torch.rand(batch_size, 60, 2, generator=g) * torch.tensor([12.8, 8])
                         + torch.tensor([0, -4]), torch.zeros(batch_size, 60, 1),
                         torch.tensor(CAR).expand(batch_size, 60, 3),
                         torch.rand(batch_size, 60, 1, generator=g) * 3], -1)
    anchors[:, :8] = gt[:, :1, :7] + torch.randn(batch_size, 8, 7, generator=g) * 0.15
    scores = torch.randn(batch_size, 60, 1, generator=g)
    scores[:, :8] += 3.0  # the first stage found the first object of each sample
    return {"batch_size": batch_size, "points": points,
            "spatial_features": torch.randn(batch_size, 8, 10, 16, generator=g),
            "spatial_features_stride": 8,
            "multi_scale_3d_features": {"x_conv3": sparse(4, 16, 120), "x_conv4": sparse(8, 16, 60)},
            "gt_boxes": gt, "batch_cls_preds": scores,
            "batch_box_preds": anchors}


def _tiny_model():
    vsa = VoxelSetAbstraction(
        VSAConfig(num_keypoints=96, num_output_features=16, sa_layer={
            "raw_points": SALayerConfig(((8,),), (0.8,), (8,)),
            "x_conv3": SALayerConfig(((8,),), (1.2,), (8,), 4, input_channels=16),
            "x_conv4": SALayerConfig(((8,), (8,)), (2.4, 4.8), (8, 8), 8, input_channels=16)}),
        VOXEL, PC_RANGE, num_bev_features=8, num_rawpoint_features=4)
    point_head = PointHeadSimple(1, vsa.num_point_features_before_fusion, PointHeadConfig(cls_fc=(16,)))
    head = PVRCNNHead(16, PVRCNNHeadConfig(
        shared_fc=(32, 32), cls_fc=(16,), reg_fc=(16,), dp_ratio=0.3,
        nms_train=NMSConfig(100, 24, 0.8), nms_test=NMSConfig(100, 10, 0.7),
        target=ProposalTargetConfig(roi_per_image=16),
        roi_grid_pool=RoIGridPoolConfig(grid_size=2, mlps=((8,),), pool_radius=(1.2,), nsample=(8,))))
    return vsa, point_head, head


def test_vsa_outputs_and_order_invariance():
    torch.manual_seed(5)
    vsa, _, _ = _tiny_model()
    vsa.eval()
    bd = vsa(_scene())
    assert bd["point_coords"].shape == (192, 4)
    assert bd["point_coords"][:, 0].tolist() == [0.0] * 96 + [1.0] * 96
    assert bd["point_features"].shape == (192, 16)
    assert bd["point_features_before_fusion"].shape == (192, vsa.num_point_features_before_fusion)
    assert vsa.num_point_features_before_fusion == 8 + 8 + 8 + 16
    # keypoints are raw points of their own sample
    pts = _scene()["points"]
    for b in range(2):
        own = pts[pts[:, 0] == b, 1:4]
        kp = bd["point_coords"][bd["point_coords"][:, 0] == b, 1:4]
        assert (kp[:, None, :] - own[None]).abs().sum(-1).min(dim=1).values.max() < 1e-6
    # shuffling the sparse voxels does not change anything
    shuffled = _scene()
    src = shuffled["multi_scale_3d_features"]["x_conv3"]
    perm = torch.randperm(src.indices.shape[0])
    src.features, src.indices = src.features[perm], src.indices[perm]
    assert torch.allclose(vsa(shuffled)["point_features"], bd["point_features"], atol=1e-5)


def test_point_head_labels_with_extended_boxes():
    ph = PointHeadSimple(1, 4, PointHeadConfig(cls_fc=(4,)))
    coords = torch.tensor([[0, 3.0, 0.0, 0.0],      # inside the gt
                           [0, 3.0 + 1.99, 0.0, 0.0],  # beyond dx/2 = 1.95 but within +0.1
                           [0, 9.0, 0.0, 0.0],      # outside
                           [1, 3.0, 0.0, 0.0]])     # sample 1 has no gt there
    bd = {"point_coords": coords, "gt_boxes": _scene()["gt_boxes"],
          "point_features_before_fusion": torch.randn(4, 4)}
    bd["gt_boxes"][0, 0, 6] = 0.0
    assert ph.assign_targets(bd).tolist() == [1, -1, 0, 0]
    ph.train()
    ph(bd)
    loss, tb = ph.get_loss()
    assert torch.isfinite(loss) and tb["point_pos_num"] == 1.0
    assert bd["point_cls_scores"].shape == (4,)


def test_grid_points_fill_the_roi():
    _, _, head = _tiny_model()
    rois = torch.tensor([_box(3, -2, 0.5, 0.7), _box(-1, 4, -0.3, 2.9)])
    glob, local = head.get_global_grid_points_of_roi(rois, 3)
    assert glob.shape == (2, 27, 3) and local.shape == (2, 27, 3)
    assert torch.allclose(glob.mean(dim=1), rois[:, 0:3], atol=1e-5)
    for k in range(2):
        assert points_in_boxes(glob[k], rois[k:k + 1]).all()
    # x index slowest, z fastest (the official flattening order)
    assert local[0, 1, 2] > local[0, 0, 2] and local[0, 1, 0] == local[0, 0, 0]


def test_pvrcnn_second_stage_trains_on_a_fixed_batch():
    torch.manual_seed(6)
    vsa, point_head, head = _tiny_model()
    modules = torch.nn.ModuleList([vsa, point_head, head]).train()
    opt = torch.optim.Adam(modules.parameters(), lr=3e-3)
    losses, rcnn_losses = [], []
    for _ in range(40):
        bd = _scene()
        bd = head(point_head(vsa(bd)))
        loss_point, tb = point_head.get_loss()
        loss_rcnn, tb = head.get_loss(tb)
        loss = loss_point + loss_rcnn
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        rcnn_losses.append(loss_rcnn.item())
    assert {"rcnn_loss_cls", "rcnn_loss_reg", "rcnn_loss_corner", "point_loss_cls"} <= set(tb)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    assert sum(rcnn_losses[-5:]) / 5 < 0.9 * sum(rcnn_losses[:5]) / 5, rcnn_losses
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)

    modules.eval()
    with torch.no_grad():
        bd = head(point_head(vsa(_scene())))
    assert bd["rois"].shape == (2, 10, 7) and bd["batch_box_preds"].shape == (2, 10, 7)
    assert bd["batch_cls_preds"].shape == (2, 10, 1) and bd["cls_preds_normalized"] is False
    assert torch.isfinite(bd["batch_box_preds"]).all()
    # the refined boxes of the true proposals stay near their gt
    best = boxes_iou3d(bd["batch_box_preds"][0], bd["gt_boxes"][0, :, 0:7]).max()
    assert best > 0.5
