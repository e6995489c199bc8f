"""VoTr backbone: voxel query against brute force, offsets, attention modules, backbone."""

from __future__ import annotations

import pytest
import torch

from refbench.baselines.det3d.votr import (
    SparseAttention3d,
    SparseVoxels,
    SubMAttention3d,
    VoxelTransformer,
    kitti_votr_ssd_config,
)
from refbench.baselines.det3d.voxel_query import (
    VoxelIndex,
    dilated_offsets,
    gather_neighbors,
    local_offsets,
    strided_offsets,
    window_offsets,
)
from refbench.errors import RefbenchError

KITTI_GRID = (1408, 1600, 40)  # OpenPCDet grid_size (nx, ny, nz)
SMALL_SPEC = [[0, 2, 1, 0, 2, 1, 0, 2, 1], [2, 4, 1, 2, 4, 1, 0, 2, 1]]


def random_coords(n: int, shape: tuple[int, int, int], batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cols = [torch.randint(0, batch, (n,), generator=g)] + [torch.randint(0, s, (n,), generator=g) for s in shape]
    return torch.unique(torch.stack(cols, 1), dim=0).int()


def clustered_coords(batch: int, seed: int, shape=(40, 1600, 1408), per_batch: int = 150) -> torch.Tensor:
    """A few dense blobs per frame (like objects and ground patches), unique rows."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(batch):
        centres = torch.stack([torch.randint(4, s - 4, (5,), generator=g) for s in shape], 1)
        pick = centres[torch.randint(0, 5, (per_batch,), generator=g)]
        jitter = torch.randint(-3, 4, (per_batch, 3), generator=g)
        zyx = torch.maximum(torch.minimum(pick + jitter, torch.tensor(shape) - 1), torch.zeros(3, dtype=torch.long))
        rows.append(torch.cat([torch.full((per_batch, 1), b), zyx], 1))
    return torch.unique(torch.cat(rows), dim=0).int()


# -- voxel index ------------------------------------------------------------------------

@pytest.mark.parametrize("margin", [0, 3])
def test_voxel_index_matches_dict(margin):
    shape = (5, 9, 7)
    coords = random_coords(120, shape, batch=3, seed=0)
    table = {tuple(c.tolist()): i for i, c in enumerate(coords)}
    index = VoxelIndex(coords, shape, margin=margin)
    g = torch.Generator().manual_seed(1)
    queries = torch.cat([
        coords[torch.randperm(len(coords), generator=g)[:40]].long(),                  # present
        torch.stack([torch.randint(0, 3, (200,), generator=g)] +
                    [torch.randint(0, s, (200,), generator=g) for s in shape], 1),       # mostly absent
        torch.tensor([[0, -1, 0, 0], [0, 5, 0, 0], [1, 0, 9, 0], [2, 0, 0, 7], [0, 0, 0, -1],
                      [-1, 0, 0, 0], [3, 0, 0, 0], [0, 4, 8, 7]]),                       # off-grid, other batch
    ])
    got = index.lookup(queries.reshape(-1, 2, 4)).reshape(-1)
    want = [table.get(tuple(q.tolist()), -1) for q in queries]
    assert got.tolist() == want
    assert (got >= 0).sum() > 40 and (got == -1).sum() > 8


def test_voxel_index_ignores_out_of_grid_voxels():
    coords = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 9], [0, 1, 1, 1]])
    index = VoxelIndex(coords, (2, 2, 2))
    assert index.lookup(coords).tolist() == [0, -1, 2]


def test_voxel_index_rejects_bad_coords():
    with pytest.raises(RefbenchError):
        VoxelIndex(torch.zeros(3, 3, dtype=torch.int32), (2, 2, 2))


# -- offsets (official RANGE_SPEC enumeration) -------------------------------------------

def test_local_offsets_order_follows_official_loops():
    off = local_offsets([[0, 2, 1, 0, 2, 1, 0, 2, 1]]).tolist()
    assert len(off) == 27 and len({tuple(o) for o in off}) == 27
    assert off[:9] == [[0, 0, 0], [0, 0, -1], [0, 0, 1], [0, -1, 0], [0, 1, 0],
                       [0, -1, -1], [0, -1, 1], [0, 1, -1], [0, 1, 1]]
    assert off[9] == [-1, 0, 0] and off[10] == [1, 0, 0]


def test_sparse_offsets_start_with_the_children():
    off = strided_offsets([[0, 1, 1, 0, 1, 1, 0, 1, 1]], stride=(2, 2, 2)).tolist()
    assert off == [[z, y, x] for z in (0, 1) for y in (0, 1) for x in (0, 1)]
    ring = strided_offsets([[1, 2, 1, 1, 2, 1, 1, 2, 1]], stride=(2, 2, 2))
    # o = 1 on every axis: the fine cells just outside the 2-cube, i.e. -1 and +2
    assert set(map(tuple, ring.tolist())) >= {(-1, -1, -1), (2, 2, 2), (0, -1, 2)}


def test_skip_rule_needs_all_axes_below_start():
    # z start 0 (as in every KITTI group) means nothing is skipped: the centre reappears
    assert [0, 0, 0] in dilated_offsets([[0, 2, 1] * 3, [2, 4, 1, 2, 4, 1, 0, 2, 1]]).tolist()
    # start 1 on every axis skips only the (0, 0, 0) triple
    shell = strided_offsets([[1, 2, 1, 1, 2, 1, 1, 2, 1]]).tolist()
    assert len(shell) == 26 and [0, 0, 0] not in shell


def test_kitti_offset_counts_and_dedupe():
    spec = kitti_votr_ssd_config()["PARAMS"][0]["SP_CFGS"]["ATTENTION"][0]["RANGE_SPEC"]
    assert strided_offsets(spec).shape == (2376, 3)
    assert strided_offsets(spec, (2, 2, 2)).shape == (3264, 3)
    unique = strided_offsets(spec, dedupe=True)
    assert len(set(map(tuple, unique.tolist()))) == unique.shape[0] < 2376
    assert window_offsets(1).shape == (27, 3) and window_offsets(1, (2, 2, 2)).shape == (64, 3)


def test_bad_range_spec_is_a_refbench_error():
    with pytest.raises(RefbenchError):
        strided_offsets([[0, 2, 1]])
    with pytest.raises(RefbenchError):
        strided_offsets([[0, 2, 0, 0, 2, 1, 0, 2, 1]])


# -- gather against brute force ---------------------------------------------------------

def brute_gather(coords, shape, queries, offsets, max_k, stride):
    table = {tuple(c.tolist()): i for i, c in enumerate(coords)}
    out = []
    for q in queries.tolist():
        row = []
        for o in offsets.tolist():
            cell = (q[0], q[1] * stride[0] + o[0], q[2] * stride[1] + o[1], q[3] * stride[2] + o[2])
            if all(0 <= cell[i + 1] < shape[i] for i in range(3)) and cell in table and len(row) < max_k:
                row.append(table[cell])
        out.append(row + [-1] * (max_k - len(row)))
    return out


@pytest.mark.parametrize("margin", [0, 8])
@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2)])
def test_gather_neighbors_matches_brute_force(margin, stride):
    shape = (6, 14, 12)
    coords = random_coords(300, shape, batch=2, seed=3)
    if stride == (1, 1, 1):
        queries = coords
    else:
        q = coords.long().clone()
        q[:, 1:] //= 2
        queries = torch.unique(q, dim=0)
    offsets = strided_offsets(SMALL_SPEC, stride)
    index = VoxelIndex(coords, shape, margin=margin)
    for max_k in (5, 48):
        idx, mask = gather_neighbors(index, queries, offsets, max_k, stride)
        assert idx.tolist() == brute_gather(coords, shape, queries, offsets, max_k, stride)
        assert torch.equal(mask, idx < 0)
    assert (idx >= 0).sum(1).max() < 48 < offsets.shape[0]  # exercised the partial rows too
    assert (idx[:, 0] >= 0).all()  # every query finds itself / a child


def test_gather_caps_at_max_k_in_offset_order():
    shape = (3, 3, 3)
    coords = torch.tensor([[0, z, y, x] for z in range(3) for y in range(3) for x in range(3)])
    offsets = local_offsets([[0, 2, 1] * 3])
    idx, _ = gather_neighbors(VoxelIndex(coords, shape), coords[13:14], offsets, 4)
    want = [int(((1 + o[0]) * 3 + 1 + o[1]) * 3 + 1 + o[2]) for o in offsets[:4].tolist()]
    assert idx[0].tolist() == want


def test_query_off_grid_gets_no_neighbours():
    coords = torch.tensor([[0, 0, 0, 0]])
    idx, mask = gather_neighbors(VoxelIndex(coords, (2, 2, 2)), torch.tensor([[0, 0, 0, 5]]),
                                 local_offsets([[0, 2, 1] * 3]), 4)
    assert mask.all() and (idx == -1).all()


# -- attention modules -----------------------------------------------------------------

MODE = [{"NAME": "StridedAttention", "SIZE": 8, "RANGE_SPEC": SMALL_SPEC}]


def test_query_without_keys_is_finite_and_zero():
    torch.manual_seed(0)
    module = SubMAttention3d(16, 16, 32, 0.0, 4, MODE, use_relative_coords=True, use_no_query_coords=True)
    query = torch.randn(3, 16)
    keys = torch.randn(3, 8, 16)
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[1] = True
    out = module.attend(query, keys, mask)
    assert torch.isfinite(out).all() and (out[1] == 0).all() and (out[0] != 0).any()


def randomise_norms(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


def test_subm_module_matches_a_per_voxel_reference():
    """Eval mode, one voxel at a time: attention over brute-force neighbours + official update."""
    torch.manual_seed(0)
    shape, size = (4, 10, 10), 6
    coords = random_coords(60, shape, batch=2, seed=7)
    vsize, pcr = (0.05, 0.05, 0.1), (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)
    feats = torch.rand(len(coords), 16)
    mode = [{"NAME": "StridedAttention", "SIZE": size, "RANGE_SPEC": SMALL_SPEC}]
    module = SubMAttention3d(16, 24, 32, 0.0, 4, mode, True, True, True, chunk_size=7).eval()
    randomise_norms(module)
    with torch.no_grad():
        got = module(SparseVoxels(feats, coords, shape, 2, vsize, pcr)).features
        xyz = (coords[:, [3, 2, 1]].float() + 0.5) * torch.tensor(vsize) + torch.tensor(pcr[:3])
        lists = brute_gather(coords, shape, coords, strided_offsets(SMALL_SPEC), size, (1, 1, 1))
        for i, row in enumerate(lists):
            js = [j for j in row if j >= 0]
            keys = feats[js] + module.k_pos_proj(xyz[js] - xyz[i])
            att, _ = module.mhead_attention(feats[i][None, None], keys[:, None], keys[:, None])
            x = module.norm1(feats[i][None] + att[0])
            x = module.norm2(x + module.linear2(torch.relu(module.linear1(x))))
            torch.testing.assert_close(got[i], module.output_layer(x)[0], atol=1e-5, rtol=1e-5)


def test_sparse_module_matches_a_per_voxel_reference():
    """Pooled query (max over keys), relative metres to the coarse centre, no query residual."""
    torch.manual_seed(0)
    shape, size = (4, 10, 10), 6
    coords = random_coords(60, shape, batch=2, seed=8)
    vsize, pcr = (0.05, 0.05, 0.1), (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)
    feats = torch.rand(len(coords), 16)
    mode = [{"NAME": "StridedAttention", "SIZE": size, "RANGE_SPEC": SMALL_SPEC}]
    module = SparseAttention3d(16, 24, 32, 0.0, 4, mode, [2, 2, 2], True, True, True, chunk_size=5).eval()
    randomise_norms(module)
    with torch.no_grad():
        out = module(SparseVoxels(feats, coords, shape, 2, vsize, pcr))
        xyz = (coords[:, [3, 2, 1]].float() + 0.5) * torch.tensor(vsize) + torch.tensor(pcr[:3])
        q_idx = out.indices.long()
        q_xyz = (q_idx[:, [3, 2, 1]].float() + 0.5) * torch.tensor(vsize) * 2 + torch.tensor(pcr[:3])
        lists = brute_gather(coords, shape, q_idx, strided_offsets(SMALL_SPEC, (2, 2, 2)), size, (2, 2, 2))
        for i, row in enumerate(lists):
            js = [j for j in row if j >= 0]
            pooled = feats[js].max(dim=0).values
            if len(js) < size:
                pooled = pooled.clamp(min=0)  # empty slots hold zeros in the original
            keys = feats[js] + module.k_pos_proj(xyz[js] - q_xyz[i])
            att, _ = module.mhead_attention(pooled[None, None], keys[:, None], keys[:, None])
            x = att[0]
            x = module.norm(x + module.linear2(torch.relu(module.linear1(x))))
            torch.testing.assert_close(out.features[i], module.output_layer(x)[0], atol=1e-5, rtol=1e-5)


def test_sparse_module_downsamples_and_stays_finite():
    torch.manual_seed(0)
    shape = (8, 16, 16)
    coords = random_coords(200, shape, batch=2, seed=5)
    sp = SparseVoxels(torch.rand(len(coords), 16), coords, shape, 2, (0.05, 0.05, 0.1), (0, -40, -3, 70.4, 40, 1))
    module = SparseAttention3d(16, 32, 32, 0.0, 4, MODE, [2, 2, 2], True, True, True, chunk_size=37)
    out = module(sp)
    want = torch.unique(torch.cat([coords[:, :1], coords[:, 1:] // 2], 1), dim=0)
    assert torch.equal(out.indices.long(), want.long())
    assert out.spatial_shape == (4, 8, 8) and out.voxel_size == pytest.approx((0.1, 0.1, 0.2))
    assert out.features.shape == (len(want), 32) and torch.isfinite(out.features).all()


def test_unknown_attention_mode_is_a_refbench_error():
    with pytest.raises(RefbenchError):
        SubMAttention3d(16, 16, 32, 0.0, 4, [{"NAME": "GlobalAttention", "SIZE": 8}])


# -- the backbone ------------------------------------------------------------------------

def expected_parameter_count(cfg) -> int:
    """Independent count from the official module structure (not from our modules)."""
    def attention(i, o, ff, sparse):
        mha = 3 * i * i + 3 * i + i * i + i
        ffn = i * ff + ff + ff * i + i
        out = i * o + o + 2 * o
        extra = 2 * i + 4 * i if sparse else 4 * i + 4 * i  # norm(s) + key position projection
        return mha + ffn + out + extra
    total = 4 * 16 + 16 + 2 * 16  # input Linear + BN
    for stage in cfg["PARAMS"]:
        i, ff, o = stage["SP_CFGS"]["CHANNELS"]
        total += attention(i, o, ff, True)
        i, ff, o = stage["SUBM_CFGS"]["CHANNELS"]
        total += stage["SUBM_CFGS"]["NUM_BLOCKS"] * attention(i, o, ff, False)
    return total


def test_kitti_backbone_forward_backward_and_bev_shape():
    torch.manual_seed(0)
    model = VoxelTransformer(4, KITTI_GRID)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == expected_parameter_count(kitti_votr_ssd_config()) == 177_920
    assert model.output_spatial_shape() == (5, 200, 176)  # D = 5: 64 * 5 = 320 BEV channels
    coords = clustered_coords(batch=2, seed=0)
    feats = torch.rand(len(coords), 4)
    out = model({"voxel_features": feats, "voxel_coords": coords, "batch_size": 2})
    sp = out["encoded_spconv_tensor"]
    assert out["encoded_spconv_tensor_stride"] == 8 and model.num_point_features == 64
    scales = out["multi_scale_3d_features"]
    assert [scales[k].features.shape[1] for k in ("x_conv1", "x_conv2", "x_conv3", "x_conv4")] == [16, 32, 64, 64]
    assert scales["x_conv1"].features.shape[0] == len(coords) and scales["x_conv4"] is sp
    assert out["multi_scale_3d_strides"] == {"x_conv1": 1, "x_conv2": 2, "x_conv3": 4, "x_conv4": 8}
    dense = sp.dense()
    assert dense.shape == (2, 64, 5, 200, 176)
    bev = dense.view(2, 64 * 5, 200, 176)  # what HeightCompression produces
    assert bev.shape[1] == 320 and torch.isfinite(bev).all()
    (bev.square().mean() + sp.features.mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone[0].sp_attention.k_pos_proj[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("train", [False, True])
def test_permuting_input_voxels_does_not_change_dense_output(train):
    torch.manual_seed(0)
    grid = (96, 80, 16)
    model = VoxelTransformer(4, grid, chunk_size=50).train(train)
    coords = clustered_coords(batch=2, seed=1, shape=(16, 80, 96), per_batch=120)
    feats = torch.rand(len(coords), 4)
    perm = torch.randperm(len(coords))
    with torch.no_grad():
        a = model({"voxel_features": feats, "voxel_coords": coords, "batch_size": 2})["encoded_spconv_tensor"]
        b = model({"voxel_features": feats[perm], "voxel_coords": coords[perm],
                   "batch_size": 2})["encoded_spconv_tensor"]
    assert a.dense().shape == (2, 64, 2, 10, 12)
    assert a.features.abs().sum() > 0
    # train-mode BatchNorm sums the batch in another order: float rounding only
    tol = 2e-4 if train else 1e-5
    torch.testing.assert_close(a.dense(), b.dense(), atol=tol, rtol=tol)


def test_sparse_voxels_dense_places_features():
    sp = SparseVoxels(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0, 0, 1, 2], [1, 1, 0, 0]]),
                      (2, 2, 3), 2)
    d = sp.dense()
    assert d.shape == (2, 2, 2, 2, 3)
    assert d[0, :, 0, 1, 2].tolist() == [1.0, 2.0] and d[1, :, 1, 0, 0].tolist() == [3.0, 4.0]
    assert d.sum() == 10.0
    assert sp.dense(channels_first=False).shape == (2, 2, 2, 3, 2)
