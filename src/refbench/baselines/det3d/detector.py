"""The voxel-based 3D detector every family shares, behind the common baseline contract.

The data path follows OpenPCDet v0.3: a frame's points -> (training only) ground-truth
sampling, random flip, global rotation and scaling -> boxes outside the range dropped,
points shuffled -> voxelisation (at most `max_points_per_voxel` points per voxel, at most
`max_voxels_train|test` voxels) -> mean VFE -> a family's 3D backbone -> height compression
to a bird's-eye-view map -> a 2D BEV backbone -> an anchor head (-> a family's second
stage) -> class-agnostic rotated NMS -> predictions written in the benchmark's format.
Everything that depends on the benchmark's row layout and submission format goes through
its frame convention (`frames.convention_for`, chosen by task type and submission format).

Augmentation draws from a generator seeded from NumPy's global stream, which the engine
seeds and checkpoints, so a resumed run sees the same augmented batches.

A family (`second.py`, `votr.py`, `pyramid_rcnn.py`) subclasses `Detector3D`, names its
`Config` dataclass and implements `build_backbone` (and `build_second_stage`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from refbench.baselines.base import Baseline, Prediction
from refbench.baselines.det3d import frames as fr
from refbench.baselines.det3d.anchor_head import AnchorHeadConfig, kitti_anchor
from refbench.baselines.det3d.augment import AugmentConfig
from refbench.baselines.det3d.postprocess import PostConfig
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

MODEL_CONFIG = "model_config.json"


@dataclass
class BEVConfig:
    """OpenPCDet's BaseBEVBackbone: blocks of 3x3 convolutions, upsampled and concatenated."""

    layer_nums: list[int] = field(default_factory=lambda: [5, 5])
    layer_strides: list[int] = field(default_factory=lambda: [1, 2])
    num_filters: list[int] = field(default_factory=lambda: [128, 256])
    upsample_strides: list[float] = field(default_factory=lambda: [1, 2])
    num_upsample_filters: list[int] = field(default_factory=lambda: [256, 256])


@dataclass
class DetectorConfig:
    """`model:` of a voxel detector recipe (defaults: OpenPCDet's KITTI Car settings)."""

    classes: list[str] = field(default_factory=lambda: ["Car"])
    point_cloud_range: list[float] = field(default_factory=lambda: [0.0, -40.0, -3.0, 70.4, 40.0, 1.0])
    voxel_size: list[float] = field(default_factory=lambda: [0.05, 0.05, 0.1])
    num_point_features: int = 4
    max_points_per_voxel: int = 5
    max_voxels_train: int = 16000
    max_voxels_test: int = 40000
    shuffle_points: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    bev: BEVConfig = field(default_factory=BEVConfig)
    head: AnchorHeadConfig = field(default_factory=lambda: AnchorHeadConfig(anchors=[kitti_anchor("Car")]))
    post: PostConfig = field(default_factory=PostConfig)


class Detector3D(Baseline):
    """A voxel detector: VFE -> 3D backbone -> BEV -> anchor head [-> second stage]."""

    Config: ClassVar[type] = DetectorConfig

    # -- configuration ---------------------------------------------------------------
    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> Any:
        from refbench.baselines.det3d.voxelize import VoxelGrid
        from refbench.config import from_dict

        cfg = from_dict(cls.Config, dict(model_cfg), prefix="model")
        convention = fr.convention_for(spec)
        convention.check_classes(cfg.classes)
        if len(cfg.point_cloud_range) != 6 or len(cfg.voxel_size) != 3:
            raise RefbenchError("point_cloud_range needs 6 numbers and voxel_size 3",
                                key="model.voxel_size")
        VoxelGrid(tuple(cfg.voxel_size), tuple(cfg.point_cloud_range))  # divisibility
        anchored = [a.class_name for a in cfg.head.anchors]
        if anchored != list(cfg.classes):
            raise RefbenchError(f"head.anchors must list the classes in order {cfg.classes}, "
                                f"got {anchored}", key="model.head.anchors")
        convention.check_point_features(cfg.num_point_features)
        return cfg

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "Detector3D":
        if init_from is not None:
            raise NotImplementedError("no pretrained 3D detector checkpoints exist to start from; "
                                      "train from scratch")
        cfg = cls.validate_config(model_cfg, spec)
        database = None
        if cfg.augment.gt_sampling:
            database = cls.build_database(cfg, spec, train_rows)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / MODEL_CONFIG, asdict(cfg))
        return cls(cfg, spec, database)

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "Detector3D":
        path = Path(run_dir) / MODEL_CONFIG
        if not path.exists():
            raise RefbenchError("run folder is incomplete (was it trained?)", path=path)
        cfg = cls.validate_config(json.loads(path.read_text(encoding="utf-8")), spec)
        return cls(cfg, spec, None)

    @classmethod
    def build_database(cls, cfg: Any, spec: "BenchmarkSpec", rows: "hf_datasets.Dataset") -> Any:
        """The ground-truth sampling database of the training split (object points and
        boxes, filtered by the recipe's minimum point counts and difficulties)."""
        from refbench.baselines.det3d.augment import GTDatabase

        convention = fr.convention_for(spec)
        source = rows.with_format("numpy")
        frames = (convention.frame_from_row(source[i], cfg.classes, cfg.num_point_features)
                  for i in range(len(source)))
        return cfg.augment.prepare(GTDatabase.build(frames))

    # -- the model -------------------------------------------------------------------
    def __init__(self, cfg: Any, spec: "BenchmarkSpec", database: Any) -> None:
        super().__init__()
        from refbench.baselines.det3d.anchor_head import AnchorHeadSingle
        from refbench.baselines.det3d.bev import BaseBEVBackbone, HeightCompression
        from refbench.baselines.det3d.voxelize import MeanVFE, VoxelGrid

        self.cfg = cfg
        self.frames = fr.convention_for(spec)
        self.database = database
        self.grid = VoxelGrid(tuple(cfg.voxel_size), tuple(cfg.point_cloud_range))
        self.vfe = MeanVFE(cfg.num_point_features)
        self.backbone_3d = self.build_backbone(cfg, self.grid)
        self.map_to_bev = HeightCompression(self._bev_channels())
        bev = cfg.bev
        self.backbone_2d = BaseBEVBackbone(self.map_to_bev.num_bev_features, bev.layer_nums,
                                           bev.layer_strides, bev.num_filters,
                                           bev.upsample_strides, bev.num_upsample_filters)
        # a refinement stage needs the first stage's boxes while training, too
        self.two_stage = self.uses_second_stage(cfg)
        self.dense_head = AnchorHeadSingle(cfg.head, self.backbone_2d.num_bev_features,
                                           list(cfg.classes), tuple(self.grid.grid_size),
                                           list(cfg.point_cloud_range),
                                           predict_boxes_when_training=self.two_stage)
        self.second_stage = nn.ModuleList(self.build_second_stage(cfg) if self.two_stage else [])

    def build_backbone(self, cfg: Any, grid: Any) -> nn.Module:
        raise NotImplementedError

    def uses_second_stage(self, cfg: Any) -> bool:
        return False

    def build_second_stage(self, cfg: Any) -> list[nn.Module]:
        return []

    def _bev_channels(self) -> int:
        """Channels x height of the 3D backbone's output, found by running it on one voxel."""
        nx, ny, nz = self.grid.grid_size
        batch = {"batch_size": 1,
                 "voxel_features": torch.zeros(1, self.cfg.num_point_features),
                 "voxel_coords": torch.tensor([[0, nz // 2, ny // 2, nx // 2]], dtype=torch.int32)}
        was = self.backbone_3d.training
        self.backbone_3d.eval()
        with torch.no_grad():
            out = self.backbone_3d(batch)["encoded_spconv_tensor"].dense()
        self.backbone_3d.train(was)
        return int(out.shape[1] * out.shape[2])

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = dict(batch)
        for module in (self.vfe, self.backbone_3d, self.map_to_bev, self.backbone_2d,
                       self.dense_head, *self.second_stage):
            batch = module(batch)
        return batch

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        self(dict(batch))
        loss, logs = self.dense_head.get_loss()
        for stage in self.second_stage:
            if hasattr(stage, "get_loss"):
                extra, more = stage.get_loss()
                loss = loss + extra
                logs.update(more)
        return {"loss": loss}

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        from refbench.baselines.det3d.postprocess import post_process

        out = self(dict(batch))
        dets = post_process(out, self.cfg.post, len(self.cfg.classes))
        preds = []
        for meta, det in zip(batch["meta"], dets):
            preds.append(Prediction(meta["id"], {
                "boxes": det["pred_boxes"].detach().cpu().numpy(),
                "scores": det["pred_scores"].detach().cpu().numpy(),
                "labels": det["pred_labels"].detach().cpu().numpy(), "meta": meta}))
        return preds

    def finalize(self, rows: Any, features: Sequence[Mapping[str, Any]],
                 predictions: Sequence[Prediction]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for p in predictions:
            v, meta = p.value, p.value["meta"]
            out[p.id] = self.frames.prediction(v["boxes"], v["scores"], v["labels"],
                                               self.cfg.classes, meta)
        return out

    # -- data ------------------------------------------------------------------------
    def encode(self, rows: "hf_datasets.Dataset") -> list[dict[str, Any]]:
        """Frames stay in the (memory-mapped) dataset; a feature names its row, so a
        KITTI-sized split is not copied into memory."""
        source = rows.with_format("numpy")
        return [{"rows": source, "index": i} for i in range(len(source))]

    def _frame(self, feature: Mapping[str, Any]) -> dict[str, Any]:
        row = feature["rows"][int(feature["index"])]
        return self.frames.frame_from_row(row, self.cfg.classes, self.cfg.num_point_features)

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        from refbench.baselines.det3d import augment as aug
        from refbench.baselines.det3d.boxes import limit_period
        from refbench.baselines.det3d.voxelize import voxelize

        training = self.training
        rng = np.random.default_rng(int(np.random.randint(0, 2 ** 31 - 1))) if training else None
        pc_range = np.asarray(self.cfg.point_cloud_range, np.float32)
        name_to_id = {name: i + 1 for i, name in enumerate(self.cfg.classes)}
        voxels, coords, counts, points, boxes, metas = [], [], [], [], [], []
        for b, feature in enumerate(features):
            frame = self._frame(feature)
            if training:
                frame = aug.apply(frame, self.database, self.cfg.augment, rng)
                keep = aug.mask_boxes_outside_range(frame["gt_boxes"], pc_range)
                frame["gt_boxes"], frame["gt_names"] = frame["gt_boxes"][keep], frame["gt_names"][keep]
            pts = frame["points"][aug.mask_points_in_range(frame["points"], pc_range)]
            if training and self.cfg.shuffle_points:
                pts = pts[rng.permutation(len(pts))]
            limit = self.cfg.max_voxels_train if training else self.cfg.max_voxels_test
            vox, crd, num = voxelize(torch.from_numpy(np.ascontiguousarray(pts)), self.grid,
                                     self.cfg.max_points_per_voxel, limit)
            voxels.append(vox)
            coords.append(torch.cat([torch.full((len(crd), 1), b, dtype=crd.dtype), crd], 1))
            counts.append(num)
            points.append(np.concatenate([np.full((len(pts), 1), b, np.float32), pts], 1))
            ids = np.array([name_to_id[str(n)] for n in frame["gt_names"]], np.float32)
            gt_boxes = np.asarray(frame["gt_boxes"], np.float32).reshape(-1, 7).copy()
            # headings in [-pi, pi), as OpenPCDet's data processor leaves them
            gt_boxes[:, 6] = limit_period(gt_boxes[:, 6])
            boxes.append(np.concatenate([gt_boxes, ids[:, None]], 1))
            metas.append({k: frame[k] for k in self.frames.meta_keys})
        width = max([len(bx) for bx in boxes] + [1])
        gt = np.zeros((len(features), width, 8), np.float32)
        for b, bx in enumerate(boxes):
            gt[b, :len(bx)] = bx
        return {"batch_size": len(features), "voxels": torch.cat(voxels),
                "voxel_coords": torch.cat(coords), "voxel_num_points": torch.cat(counts),
                "points": torch.from_numpy(np.concatenate(points)),
                "gt_boxes": torch.from_numpy(gt), "meta": metas}
