"""Cross-path MoCo v2, the path-wise mean teacher, the SPOS switch and the augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refbench.baselines.nas.pinas import moco
from refbench.baselines.nas.pinas.augment import MocoAugment, adjust_hue, moco_views
from refbench.baselines.nas.pinas.model import SupernetConfig
from refbench.baselines.nas.pinas.moco import (METHODS, VIEWS, MocoConfig, SupernetLearner,
                                               check_moco, info_nce, sample_paths)
from refbench.errors import RefbenchError

TINY = SupernetConfig(layers=[1, 1, 1, 1], stem_width=8, base_planes=16, min_attn_channels=32)
SMALL = MocoConfig(queue_len=16, feat_dim=8, hidden_dim=16, momentum=0.9, temperature=0.2)


def test_official_moco_defaults() -> None:
    cfg = MocoConfig()
    assert (cfg.queue_len, cfg.feat_dim, cfg.hidden_dim, cfg.momentum, cfg.temperature) == \
        (49152, 128, 2048, 0.999, 0.2)
    assert VIEWS == {"pinas": 4, "spos-moco": 2, "spos-supervised": 1}
    with pytest.raises(RefbenchError, match="temperature"):
        check_moco(MocoConfig(temperature=0.0))
    with pytest.raises(RefbenchError, match="momentum"):
        check_moco(MocoConfig(momentum=1.0))


def test_info_nce_by_hand() -> None:
    q = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    k = F.normalize(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), dim=1)
    queue = F.normalize(torch.tensor([[1.0, -1.0], [0.0, 1.0]]), dim=0)
    loss = info_nce(q, k, queue, 0.5)
    rows = []
    for i in range(2):
        logits = torch.cat([(q[i] * k[i]).sum().view(1), q[i] @ queue]) / 0.5
        rows.append(-torch.log_softmax(logits, 0)[0])
    torch.testing.assert_close(loss, torch.stack(rows).mean())


def test_two_paths_differ_everywhere() -> None:
    torch.manual_seed(0)
    for _ in range(100):
        a, b = sample_paths(16, 4, 2)
        assert len(a) == 16 and all(x != y for x, y in zip(a, b))
    (single,) = sample_paths(16, 4, 1)
    assert all(0 <= c < 4 for c in single)


def _perturbed(method: str) -> SupernetLearner:
    torch.manual_seed(0)
    learner = SupernetLearner(TINY, SMALL, method, 10)
    with torch.no_grad():
        for p in learner.supernet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for p in learner.neck.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return learner


def test_path_wise_mean_teacher_updates_only_the_path() -> None:
    learner = _perturbed("pinas")
    before = {k: v.clone() for k, v in learner.teacher.state_dict().items()}
    student = dict(learner.supernet.named_parameters())
    arch = (0, 1, 2, 3)
    learner.momentum_update(arch)
    after = learner.teacher.state_dict()
    for name, p_s in student.items():
        key = f"supernet.{name}"
        on_path = name.startswith("stem.") or any(
            name.startswith(f"blocks.{i}.candidates.{c}.") or name.startswith(f"blocks.{i}.downsample.")
            for i, c in enumerate(arch))
        expected = before[key] * 0.9 + p_s.detach() * 0.1 if on_path else before[key]
        torch.testing.assert_close(after[key], expected, msg=name)
    for name, p_s in learner.neck.named_parameters():  # the projection MLP always moves
        torch.testing.assert_close(after[f"neck.{name}"], before[f"neck.{name}"] * 0.9 + p_s * 0.1)
    assert all(not p.requires_grad for p in learner.teacher.parameters())


def test_plain_moco_teacher_updates_everything() -> None:
    learner = _perturbed("spos-moco")
    before = {k: v.clone() for k, v in learner.teacher.state_dict().items()}
    learner.momentum_update(None)
    for name, p_s in learner.supernet.named_parameters():
        torch.testing.assert_close(learner.teacher.state_dict()[f"supernet.{name}"],
                                   before[f"supernet.{name}"] * 0.9 + p_s * 0.1)


def test_cross_path_loss_pairs_each_query_with_the_other_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """With momentum 0 the teacher equals the student on the path, so the loss must be
    InfoNCE(q0, k1) + InfoNCE(q1, k0) computed with the student alone."""
    torch.manual_seed(0)
    learner = SupernetLearner(TINY, MocoConfig(queue_len=16, feat_dim=8, hidden_dim=16,
                                               momentum=0.0), "pinas", 10)
    paths = [(0, 1, 2, 3), (3, 2, 1, 0)]
    monkeypatch.setattr(moco, "sample_paths", lambda nb, nc, count: paths[:count])
    views = torch.randn(4, 4, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, -1])
    queue = learner.queue.clone()
    out = learner.loss(views, labels)

    def embed(v: torch.Tensor, arch: tuple[int, ...]) -> torch.Tensor:
        return F.normalize(learner.neck(learner.supernet(v, arch)), dim=1)

    with torch.no_grad():
        q0, k0 = embed(views[:, 0], paths[0]), embed(views[:, 1], paths[0])
        q1, k1 = embed(views[:, 2], paths[1]), embed(views[:, 3], paths[1])
        expected = info_nce(q0, k1, queue, 0.2) + info_nce(q1, k0, queue, 0.2)
        wrong = info_nce(q0, k0, queue, 0.2) + info_nce(q1, k1, queue, 0.2)
    torch.testing.assert_close(out["contrastive"], expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(out["contrastive"], wrong, atol=1e-3)
    # the mean of the two keys was enqueued at the pointer
    torch.testing.assert_close(learner.queue[:, :4], ((k0 + k1) / 2).T, rtol=1e-4, atol=1e-4)
    assert int(learner.queue_ptr) == 4
    out["loss"].backward()  # the online probe and both queries carry gradients


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains(method: str) -> None:
    torch.manual_seed(0)
    learner = SupernetLearner(TINY, SMALL, method, 10)
    out = learner.loss(torch.randn(8, VIEWS[method], 3, 32, 32), torch.randint(0, 10, (8,)))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert (method == "spos-supervised") == (not hasattr(learner, "teacher"))
    with pytest.raises(ValueError, match="views"):
        learner.loss(torch.randn(8, 3, 3, 32, 32), torch.zeros(8, dtype=torch.long))


def test_queue_length_must_divide() -> None:
    learner = SupernetLearner(TINY, SMALL, "spos-moco", 10)
    with pytest.raises(RefbenchError, match="not a multiple of the global batch size 5"):
        learner.enqueue(torch.randn(5, 8))


def test_augmentations() -> None:
    aug = MocoAugment(size=16, scale=(0.2, 1.0))
    image = torch.rand(3, 24, 20)
    a = moco_views([image, image], 4, aug, np.random.default_rng(3))
    b = moco_views([image, image], 4, aug, np.random.default_rng(3))
    assert a.shape == (2, 4, 3, 16, 16) and torch.equal(a, b)
    assert not torch.equal(a[0, 0], a[0, 1])  # views differ
    single = aug(image, np.random.default_rng(0))
    assert single.shape == (3, 16, 16) and torch.isfinite(single).all()
    red = torch.zeros(3, 2, 2)
    red[0] = 1.0
    torch.testing.assert_close(adjust_hue(red, 0.0), red)
    green = adjust_hue(red, 1 / 3)  # a third of a turn: red -> green
    torch.testing.assert_close(green[1], torch.ones(2, 2), atol=1e-5, rtol=0)
    assert float(green[0].abs().max()) < 1e-5
