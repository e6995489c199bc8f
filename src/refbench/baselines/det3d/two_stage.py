"""Two-stage voxel detectors: the shared first stage plus a PV-RCNN style refinement.

After the anchor head has proposed boxes (decoded also while training), keypoints are
sampled from the raw points and given multi-scale features (`VoxelSetAbstraction`), a
point head weights them by predicted foreground, and an RoI head pools them around each
proposal and refines the box and its confidence. VoTr-TSD uses PV-RCNN's RoI-grid head;
Pyramid R-CNN its pyramid RoI head. The RoI heads are class agnostic (labels come from the
proposals), as in the KITTI configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from refbench.baselines.det3d.detector import Detector3D, DetectorConfig
from refbench.baselines.det3d.pvrcnn import PointHeadConfig, VSAConfig


@dataclass
class TwoStageConfig(DetectorConfig):
    """A detector recipe with the keypoint stage (`pfe`, `point_head`) of pv_rcnn.yaml."""

    pfe: VSAConfig = field(default_factory=VSAConfig)
    point_head: PointHeadConfig = field(default_factory=PointHeadConfig)


class TwoStageDetector(Detector3D):
    """Detector3D with keypoints, a point head and an RoI head (`build_roi_head`)."""

    def uses_second_stage(self, cfg: Any) -> bool:
        return True

    def build_roi_head(self, cfg: Any, input_channels: int) -> nn.Module:
        raise NotImplementedError

    def build_second_stage(self, cfg: Any) -> list[nn.Module]:
        from refbench.baselines.det3d.pvrcnn import PointHeadSimple, VoxelSetAbstraction

        vsa = VoxelSetAbstraction(cfg.pfe, cfg.voxel_size, cfg.point_cloud_range,
                                  num_bev_features=self.map_to_bev.num_bev_features,
                                  num_rawpoint_features=cfg.num_point_features)
        point_channels = (vsa.num_point_features_before_fusion
                          if cfg.point_head.use_point_features_before_fusion
                          else vsa.num_point_features)
        point_head = PointHeadSimple(1, point_channels, cfg.point_head)
        return [vsa, point_head, self.build_roi_head(cfg, vsa.num_point_features)]
