"""Tests of the networks: thesis U-Net, mesh hierarchy, mesh U-Net, losses and registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mne.surface import _get_ico_surface, _tessellate_sphere_surf
from torch.nn import functional as F

from napari_meg_unet.models import (
    MODEL_NAMES,
    PRESETS,
    MeshConv,
    MeshHierarchy,
    MeshPool,
    MeshUnpool,
    ThesisUNet,
    build_model,
    class_weights_from_targets,
    l1_penalty,
    loss_fn,
    model_summary,
    probabilities,
    training_defaults,
)
from napari_meg_unet.models.mesh_unet import VertexOperator
from napari_meg_unet.models.thesis_unet import SamePadConv2d

# tiny hyper-parameters so that every forward/backward takes milliseconds
TINY = {
    "thesis": dict(preset="small", root_features=2, levels=3),
    "mesh": dict(preset="small", root_features=4),
}


@pytest.fixture(scope="module")
def ico3():
    return _get_ico_surface(3)


@pytest.fixture(scope="module")
def ico3_mesh(ico3):
    return MeshHierarchy.from_triangles(ico3["tris"], ico3["rr"], levels=3, hemi="rh")


@pytest.fixture(scope="module")
def ico2_mesh():
    surf = _get_ico_surface(2)
    return MeshHierarchy.from_triangles(surf["tris"], surf["rr"], levels=3)


def _edge_set(tris):
    tris = np.asarray(tris)
    pairs = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    return {tuple(sorted(p)) for p in pairs.tolist()}


def _relabel(surf, seed=0):
    """The same surface with vertices relabelled by a random permutation.

    Returns the relabelled (triangles, positions) and ``perm`` such that new vertex
    ``i`` is old vertex ``perm[i]``.
    """
    rng = np.random.default_rng(seed)
    n = len(surf["rr"])
    perm = rng.permutation(n)
    inverse = np.argsort(perm)
    return inverse[surf["tris"]], surf["rr"][perm], perm


def _inputs(batch, channels, n_rows, n_times, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, n_rows, n_times, generator=g)


def _tiny(name, mesh, *, in_channels=3, n_rows=None, n_times=20, seed=0, **kwargs):
    torch.manual_seed(seed)
    n_rows = mesh.n_vertices[0] if n_rows is None else n_rows
    params = {**TINY[name], **kwargs}
    return build_model(
        name, in_channels=in_channels, n_rows=n_rows, n_times=n_times, mesh=mesh, **params
    )


# ------------------------------------------------------------------------- mesh hierarchy
def test_ico_hierarchy_matches_mne_icosahedra(ico3, ico3_mesh):
    """ico3 -> ico2 -> ico1: MNE's coarser icosahedra, whose vertices are a prefix."""
    mesh = ico3_mesh
    assert mesh.n_vertices == (642, 162, 42)
    assert mesh.methods == ("subdivision", "subdivision")
    assert mesh.prefix
    for level, grade in enumerate((3, 2, 1)):
        ico = _get_ico_surface(grade)
        assert {tuple(e) for e in mesh.edges[level].tolist()} == _edge_set(ico["tris"])
        np.testing.assert_array_equal(mesh.centers[level], np.arange(len(ico["rr"])))
    # each coarse vertex pools over itself and its fine 1-ring
    neighbours = {i: set() for i in range(642)}
    for i, j in mesh.edges[0].tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
    indptr, indices = mesh.pool[0]
    for c in range(162):
        ring = indices[indptr[c] : indptr[c + 1]]
        assert ring[0] == c
        assert set(ring[1:].tolist()) == neighbours[c]
    # every new vertex sits (on the sphere) at the middle of its two coarse parents
    idx, w = mesh.unpool_table(0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    rr = ico3["rr"]
    mid = (rr[idx] * w[..., None]).sum(axis=1)
    mid /= np.linalg.norm(mid, axis=1, keepdims=True)
    # (MNE stores the icosahedra in single precision; edges are ~0.1 long)
    np.testing.assert_allclose(mid, rr / np.linalg.norm(rr, axis=1, keepdims=True), atol=1e-3)
    # going below the icosahedron (12 vertices) needs clustering
    deep = MeshHierarchy.from_triangles(ico3["tris"], ico3["rr"], levels=5)
    assert deep.n_vertices == (642, 162, 42, 12, 3)
    assert deep.methods[-1] == "cluster"
    with pytest.raises(ValueError, match="not a mid-point subdivision"):
        MeshHierarchy.from_triangles(ico3["tris"], ico3["rr"], levels=5, method="subdivision")


def test_subdivision_found_from_topology_alone(ico3, ico3_mesh):
    """Relabelled vertices (no prefix order): the same coarse vertices are found."""
    tris, rr, perm = _relabel(ico3)
    mesh = MeshHierarchy.from_triangles(tris, rr, levels=3)
    assert mesh.n_vertices == (642, 162, 42)
    assert mesh.methods == ("subdivision", "subdivision")
    assert not mesh.prefix
    for level in (1, 2):
        assert set(perm[mesh.centers[level]].tolist()) == set(ico3_mesh.centers[level].tolist())


def test_oct_subdivision_hierarchy():
    oct3 = _tessellate_sphere_surf(3)
    mesh = MeshHierarchy.from_triangles(oct3["tris"], oct3["rr"], levels=3)
    assert mesh.n_vertices == (66, 18, 6)
    assert mesh.methods == ("subdivision", "subdivision")


def test_cluster_fallback_on_irregular_mesh(ico3):
    tris = ico3["tris"].copy()
    # flip the shared edge of two adjacent triangles: still a closed mesh, no longer a
    # mid-point subdivision (four vertex degrees change)
    edge_tris = {}
    for t, tri in enumerate(tris.tolist()):
        for a, b in ((0, 1), (1, 2), (2, 0)):
            edge_tris.setdefault(tuple(sorted((tri[a], tri[b]))), []).append(t)
    (u, v), (t1, t2) = next((e, ts) for e, ts in edge_tris.items() if 600 in e)
    p = (set(tris[t1]) - {u, v}).pop()
    q = (set(tris[t2]) - {u, v}).pop()
    tris[t1], tris[t2] = [p, q, u], [q, p, v]
    with pytest.raises(ValueError, match="not a mid-point subdivision"):
        MeshHierarchy.from_triangles(tris, ico3["rr"], levels=3, method="subdivision")
    mesh = MeshHierarchy.from_triangles(tris, ico3["rr"], levels=3)
    assert mesh.methods == ("cluster", "cluster")
    assert mesh.n_vertices == (642, 161, 41)
    for level in range(2):
        indptr, indices = mesh.pool[level]
        # clusters partition the finer level, each led by its own centre
        assert sorted(indices.tolist()) == list(range(mesh.n_vertices[level]))
        fine_centers = mesh.centers[level][indices[indptr[:-1]]]
        np.testing.assert_array_equal(fine_centers, mesh.centers[level + 1])
        u_indptr, u_indices, u_weights = mesh.unpool[level]
        np.testing.assert_array_equal(np.diff(u_indptr), 1)
        np.testing.assert_array_equal(u_weights, 1.0)
    with pytest.raises(ValueError, match="positions are needed"):
        MeshHierarchy.from_triangles(tris, None, levels=2)
    with pytest.raises(ValueError, match="triangulation"):
        MeshHierarchy.from_triangles(np.zeros((0, 3), int), ico3["rr"])


def test_hierarchy_description_round_trip(ico3_mesh):
    description = json.loads(json.dumps(ico3_mesh.to_dict()))
    again = MeshHierarchy.from_dict(description)
    assert again.fingerprint == ico3_mesh.fingerprint
    assert again.n_vertices == ico3_mesh.n_vertices
    description["pool"][0][1][5] = 7
    with pytest.raises(ValueError, match="fingerprint"):
        MeshHierarchy.from_dict(description)
    other = MeshHierarchy.from_triangles(
        _get_ico_surface(3)["tris"], _get_ico_surface(3)["rr"], levels=3, hemi="lh"
    )
    assert other.fingerprint != ico3_mesh.fingerprint


def test_hierarchy_from_template_headmodel(template_hm):
    hm = template_hm
    mesh = MeshHierarchy.from_headmodel(hm, hemi="rh", levels=3)
    n_rh = len(hm.rows("rh"))
    assert mesh.n_vertices[0] == n_rh == 642
    assert mesh.n_vertices == (642, 162, 42)
    assert mesh.methods == ("subdivision", "subdivision")
    # on fsaverage the coarse ico vertices are the first used vertices ...
    assert mesh.prefix
    vertno = hm.vertno[1]
    # ... and they are ico2 / ico1: the vertex numbers of the smaller icosahedra
    for level, n in ((1, 162), (2, 42)):
        np.testing.assert_array_equal(vertno[mesh.centers[level]], np.arange(n))
    both = MeshHierarchy.from_headmodel(hm, hemi="both", levels=3)
    assert both.n_vertices == (1284, 324, 84)
    # coarse levels keep the lh-then-rh order
    assert np.all(np.diff(both.centers[1]) > 0)
    assert (both.centers[1] < 642).sum() == 162


@pytest.mark.sample
def test_subdivision_of_a_real_subject_mesh(shared_data):
    """sample's oct-5 white-surface subset: the coarse level is MNE's oct-4 choice."""
    import mne

    src = mne.read_source_spaces(
        shared_data / "sample" / "subjects" / "sample" / "bem" / "small-src.fif.gz", verbose=False
    )
    for s in src:
        full = MeshHierarchy.from_triangles(s["tris"], s["rr"], levels=2, method="subdivision")
        assert full.n_vertices == (1026, 258)
        np.testing.assert_array_equal(full.centers[1], s["vertno"])
        lut = np.full(s["np"], -1)
        lut[s["vertno"]] = np.arange(s["nuse"])
        used = MeshHierarchy.from_triangles(lut[s["use_tris"]], s["rr"][s["vertno"]], levels=3)
        assert used.n_vertices == (258, 66, 18)
        assert used.methods == ("subdivision", "subdivision")


# ------------------------------------------------------------------------------ thesis
def test_same_padding_is_tensorflow_asymmetric():
    """4x4 "same": output (i, j) sees input rows/cols i-1 .. i+2 (1 before, 2 after)."""
    conv = SamePadConv2d(1, 1, 4, bias=False)
    torch.nn.init.ones_(conv.conv.weight)
    x = torch.zeros(1, 1, 10, 10)
    x[0, 0, 5, 5] = 1.0
    y = conv(x)[0, 0]
    assert y.shape == (10, 10)
    rows, cols = torch.nonzero(y, as_tuple=True)
    assert sorted(set(rows.tolist())) == [3, 4, 5, 6]
    assert sorted(set(cols.tolist())) == [3, 4, 5, 6]


@pytest.mark.parametrize(("n_rows", "n_times"), [(642, 20), (642, 32), (37, 5)])
def test_thesis_keeps_every_row_and_sample(n_rows, n_times):
    model = _tiny("thesis", None, n_rows=n_rows, n_times=n_times).eval()
    x = _inputs(2, 3, n_rows, n_times)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 2, n_rows, n_times)
        # the last vertex row and time sample reach the output (nothing cropped away)
        x2 = x.clone()
        x2[:, :, -1, -1] += 10.0
        diff = (model(x2) - y).abs()
    assert diff[:, :, -1, -1].max() > 0


def test_thesis_architecture_follows_the_thesis():
    with torch.device("meta"):  # shapes only: skip allocating and initialising 53M weights
        model = build_model("thesis", in_channels=3, n_rows=642, n_times=32, preset="thesis")
    assert sum(p.numel() for p in model.parameters()) == 53_001_794
    assert isinstance(model, ThesisUNet)
    convs = [m for m in model.modules() if isinstance(m, SamePadConv2d)]
    assert len(convs) == 2 * 5 + 2 * 4
    assert {c.conv.kernel_size for c in convs} == {(4, 4)}
    assert [block[0].conv.out_channels for block in model.down] == [64, 128, 256, 512, 1024]
    ups = [m for m in model.upsample]
    assert all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in ups)
    dropouts = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert dropouts == {0.2}
    assert model.head.out_channels == 2
    # the L1 term covers exactly the conv-block kernels (as in the thesis)
    assert len(model.l1_parameters()) == len(convs)


def test_thesis_channels_last_matches_contiguous():
    model = _tiny("thesis", None, n_rows=40, n_times=12).eval()
    x = _inputs(2, 3, 40, 12)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------- mesh network
def test_mesh_conv_is_local_and_permutation_equivariant(ico3):
    mesh = MeshHierarchy.from_triangles(ico3["tris"], ico3["rr"], levels=1)
    torch.manual_seed(0)
    conv = MeshConv(3, 5, mesh=mesh, hops=1)
    # locality: a delta at vertex v reaches v and its 1-ring only
    v = 100
    x = torch.zeros(1, 3, 642, 4)
    x[0, :, v, 2] = 1.0
    with torch.no_grad():
        y = conv(x) - conv(torch.zeros_like(x))
    touched = set(torch.nonzero(y.abs().sum(dim=(0, 1, 3)) > 0).ravel().tolist())
    ring = {j for e in mesh.edges[0].tolist() if v in e for j in e}
    assert touched == ring
    # equivariance under a relabelling of the vertices
    tris, rr, perm = _relabel(ico3, seed=1)
    mesh_p = MeshHierarchy.from_triangles(tris, rr, levels=1)
    conv_p = MeshConv(3, 5, mesh=mesh_p, hops=2)
    conv2 = MeshConv(3, 5, mesh=mesh, hops=2)
    conv_p.load_state_dict(conv2.state_dict())
    x = _inputs(2, 3, 642, 6)
    with torch.no_grad():
        torch.testing.assert_close(conv_p(x[:, :, perm]), conv2(x)[:, :, perm])


def test_mesh_unet_is_permutation_equivariant(ico2_mesh):
    surf = _get_ico_surface(2)
    tris, rr, perm = _relabel(surf, seed=2)
    mesh_p = MeshHierarchy.from_triangles(tris, rr, levels=3)
    model = _tiny("mesh", ico2_mesh, n_times=8).eval()
    model_p = _tiny("mesh", mesh_p, n_times=8, seed=1).eval()
    model_p.load_state_dict(model.state_dict())
    x = _inputs(2, 3, 162, 8)
    with torch.no_grad():
        torch.testing.assert_close(model_p(x[:, :, perm]), model(x)[:, :, perm])


def test_mesh_pool_unpool_follow_the_hierarchy(ico3_mesh):
    x = _inputs(2, 4, 642, 5)
    pools = [MeshPool(ico3_mesh, level, mode) for level in (0, 1) for mode in ("max", "mean")]
    assert [p(x if p.index.shape[0] == 162 else x[:, :, :162]).shape[2] for p in pools] == [
        162,
        162,
        42,
        42,
    ]
    coarse = MeshPool(ico3_mesh, 0, "max")(x)
    indptr, indices = ico3_mesh.pool[0]
    c = 17
    ring = indices[indptr[c] : indptr[c + 1]]
    torch.testing.assert_close(coarse[:, :, c], x[:, :, ring].amax(dim=2))
    mean = MeshPool(ico3_mesh, 0, "mean")(x)
    torch.testing.assert_close(mean[:, :, c], x[:, :, ring].mean(dim=2))
    coarser = MeshPool(ico3_mesh, 1, "max")(coarse)
    assert coarser.shape == (2, 4, 42, 5)
    up = MeshUnpool(ico3_mesh, 1)(coarser)
    assert up.shape == (2, 4, 162, 5)
    torch.testing.assert_close(up[:, :, :42], coarser)  # coarse vertices are copied
    back = MeshUnpool(ico3_mesh, 0)(up)
    assert back.shape == (2, 4, 642, 5)
    ones = torch.ones(1, 1, 42, 3)
    torch.testing.assert_close(MeshUnpool(ico3_mesh, 1)(ones), torch.ones(1, 1, 162, 3))


def test_vertex_operator_backends_agree(ico3_mesh):
    index, weight = ico3_mesh.neighbour_table(0)
    op = VertexOperator(index, weight, 642)
    x = _inputs(2, 3, 642, 7).requires_grad_()
    results = []
    for backend in ("sparse", "gather"):
        op.backend = backend
        y = op(x)
        (grad,) = torch.autograd.grad((y * y).sum(), x)
        results.append((y, grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    dense = np.zeros((642, 642))
    np.add.at(dense, (np.repeat(np.arange(642), index.shape[1]), index.ravel()), weight.ravel())
    expected = torch.einsum("vu,bcut->bcvt", torch.as_tensor(dense, dtype=torch.float32), x)
    torch.testing.assert_close(results[0][0], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="backend"):
        op.backend = "dense"


@pytest.mark.parametrize("n_times", [20, 32, 7])
def test_mesh_unet_output_shape(ico3_mesh, n_times):
    model = _tiny("mesh", ico3_mesh, n_times=n_times).eval()
    with torch.no_grad():
        y = model(_inputs(2, 3, 642, n_times))
    assert y.shape == (2, 2, 642, n_times)
    four = _tiny("mesh", ico3_mesh, in_channels=4, n_times=n_times).eval()
    with torch.no_grad():
        assert four(_inputs(1, 4, 642, n_times)).shape == (1, 2, 642, n_times)


# ------------------------------------------------------------------------ both networks
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_every_parameter(name, ico2_mesh):
    model = _tiny(name, ico2_mesh, n_times=8)
    x = _inputs(2, 3, 162, 8)
    target = (x[:, 0] > 1).long()
    loss = loss_fn(model(x), target) + 1e-3 * l1_penalty(model)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_outputs_are_logits(name, ico2_mesh):
    """No softmax inside the network: the two class outputs are unconstrained."""
    model = _tiny(name, ico2_mesh, n_times=8).eval()
    with torch.no_grad():
        y = model(_inputs(2, 3, 162, 8))
    assert not torch.allclose(y.sum(dim=1), torch.ones(()), atol=1e-3)
    assert y.min() < 0 or y.max() > 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_eval_mode_is_deterministic_and_batch_independent(name, ico2_mesh):
    model = _tiny(name, ico2_mesh, n_times=12)
    x = _inputs(4, 3, 162, 12)
    with torch.no_grad():
        for _ in range(3):  # give batch norm non-trivial running statistics
            model(x * 2 + 1)
        model.eval()
        first = model(x)
        torch.testing.assert_close(model(x), first, rtol=0, atol=0)
        for i in range(4):
            torch.testing.assert_close(model(x[i : i + 1]), first[i : i + 1])
        # training mode (batch statistics, dropout) really is different
        model.train()
        assert not torch.allclose(model(x), first)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_config_round_trip_rebuilds_identical_model(name, ico2_mesh):
    model = _tiny(name, ico2_mesh, n_times=10).eval()
    config = json.loads(json.dumps(model.config))
    assert config["name"] == name
    again = build_model(**config, mesh=ico2_mesh).eval()
    assert again.config == model.config
    again.load_state_dict(model.state_dict())
    x = _inputs(2, 3, 162, 10)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_mesh_config_refuses_another_mesh(ico2_mesh):
    model = _tiny("mesh", ico2_mesh)
    surf = _get_ico_surface(2)
    other = MeshHierarchy.from_triangles(surf["tris"], surf["rr"], levels=3, method="cluster")
    with pytest.raises(ValueError, match="built for mesh"):
        build_model(**model.config, mesh=other)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bf16_autocast_forward_and_loss(name, ico2_mesh):
    model = _tiny(name, ico2_mesh, n_times=8)
    x = _inputs(2, 3, 162, 8)
    target = (x[:, 0] > 1).long()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        loss = loss_fn(logits, target, class_weights=class_weights_from_targets(target))
    assert logits.shape == (2, 2, 162, 8)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_overfits_a_tiny_batch(name, ico2_mesh):
    """Sanity: the training recipe drives the loss down on 2 samples within 40 steps."""
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(2, 162, 12, dtype=torch.long)
    target[0, [3, 50, 120], 3:8] = 1
    target[1, [7, 99], 5:10] = 1
    x = 0.5 * torch.randn(2, 3, 162, 12, generator=g) + target[:, None].float()
    model = _tiny(name, ico2_mesh, n_times=12, root_features=8)
    recipe = training_defaults(name, "small")
    if recipe["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"])
    else:
        opt = torch.optim.AdamW(
            model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"]
        )
    weights = class_weights_from_targets(target)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn(model(x), target, class_weights=weights)
        losses.append(loss.item())
        (loss + recipe["l1"] * l1_penalty(model)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip_norm"])
        opt.step()
    assert losses[-1] < 0.25 * losses[0], losses[::5]
    model.eval()
    with torch.no_grad():
        p = probabilities(model(x))
    # active pixels outrank inactive ones (area under the ROC curve)
    pos, neg = p[target == 1], p[target == 0]
    auc = (pos[:, None] > neg[None, :]).float().mean()
    assert auc > 0.95, auc
    assert pos.mean() > neg.mean() + 0.4


# ----------------------------------------------------------------------------- losses
def test_loss_is_a_single_softmax_cross_entropy():
    g = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(2, 2, 5, 4, generator=g)
    target = (torch.rand(2, 5, 4, generator=g) > 0.7).long()
    weights = torch.tensor([0.6, 2.5])
    log_p = torch.log_softmax(logits, dim=1)
    nll = -log_p.gather(1, target[:, None])[:, 0]
    w = weights[target]
    torch.testing.assert_close(
        loss_fn(logits, target, class_weights=weights), (w * nll).sum() / w.sum()
    )
    torch.testing.assert_close(loss_fn(logits, target), nll.mean())
    # the thesis' double softmax (softmax output, then softmax cross-entropy) differs
    double = F.cross_entropy(torch.softmax(logits, dim=1), target)
    assert not torch.isclose(loss_fn(logits, target), double)
    p = probabilities(logits)
    torch.testing.assert_close(p, torch.softmax(logits, dim=1)[:, 1])
    torch.testing.assert_close(p, torch.sigmoid(logits[:, 1] - logits[:, 0]))
    with pytest.raises(ValueError, match="logits"):
        loss_fn(logits, target[:, :3])
    with pytest.raises(ValueError, match="class_weights"):
        loss_fn(logits, target, class_weights=torch.ones(3))


def test_class_weights_inverse_frequency(tmp_path):
    target = np.zeros((300, 4, 5), np.uint8)
    target[::10, 1, 2] = 1  # 30 positives of 6000 pixels
    w = class_weights_from_targets(target)
    torch.testing.assert_close(w, torch.tensor([6000 / (2 * 5970), 6000 / (2 * 30)]))
    # both classes carry the same total weight; the mean pixel weight is one
    counts = np.array([5970, 30])
    np.testing.assert_allclose(w.numpy() * counts, [3000, 3000], rtol=1e-6)
    memmap = np.lib.format.open_memmap(
        tmp_path / "t.npy", mode="w+", dtype=np.uint8, shape=target.shape
    )
    memmap[:] = target
    torch.testing.assert_close(class_weights_from_targets(memmap), w)
    torch.testing.assert_close(class_weights_from_targets(torch.as_tensor(target).bool()), w)
    with pytest.raises(ValueError, match="every class"):
        class_weights_from_targets(np.zeros((3, 4), int))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        class_weights_from_targets(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="non-integer"):
        class_weights_from_targets(np.array([0.0, 0.5, 1.0]))


def test_l1_penalty_covers_kernels_only(ico2_mesh):
    model = _tiny("mesh", ico2_mesh)
    expected = sum(
        p.abs().sum() for n, p in model.named_parameters() if p.ndim > 1 and "weight" in n
    )
    torch.testing.assert_close(l1_penalty(model), expected)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(100.0)
    torch.testing.assert_close(l1_penalty(model), expected)  # batch norm not penalised

    class Wrapper(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    torch.testing.assert_close(l1_penalty(Wrapper(model)), expected)
    thesis = _tiny("thesis", None, n_rows=16)
    kernels = [m.conv.weight for m in thesis.modules() if isinstance(m, SamePadConv2d)]
    torch.testing.assert_close(l1_penalty(thesis), sum(k.abs().sum() for k in kernels))


# --------------------------------------------------------------------------- registry
def test_build_model_validates_arguments(ico2_mesh):
    common = dict(in_channels=3, n_rows=162, n_times=8)
    with pytest.raises(ValueError, match="name must be one of"):
        build_model("resnet", **common)
    with pytest.raises(ValueError, match="preset"):
        build_model("mesh", preset="thesis", mesh=ico2_mesh, **common)
    with pytest.raises(ValueError, match="Unknown hyper-parameters"):
        build_model("thesis", depth=3, **common)
    with pytest.raises(ValueError, match="needs mesh"):
        build_model("mesh", **common)
    with pytest.raises(ValueError, match="n_rows=100"):
        build_model("mesh", in_channels=3, n_rows=100, n_times=8, mesh=ico2_mesh)
    with pytest.raises(ValueError, match="levels=4"):
        build_model("mesh", levels=4, mesh=ico2_mesh, **common)
    with pytest.raises(ValueError, match="root_features"):
        build_model("thesis", root_features=0, **common)
    model = build_model("thesis", **common)
    with pytest.raises(ValueError, match=r"\(batch, 3, 162, n_times\)"):
        model(torch.zeros(1, 3, 160, 8))


def test_training_defaults():
    thesis = training_defaults("thesis", "thesis")
    assert thesis["optimizer"] == "sgd" and thesis["momentum"] == 0.9
    assert thesis["lr"] == 0.02 and thesis["lr_decay"] == 0.95
    assert thesis["l1"] == 0.005 and thesis["class_weighting"] == "inverse-frequency"
    assert thesis["grad_clip_norm"] > 0
    keys = set(thesis)
    for name in MODEL_NAMES:
        for preset in PRESETS[name]:
            recipe = training_defaults(name, preset)
            assert set(recipe) == keys
            assert recipe["optimizer"] in ("sgd", "adamw")
    recipe = training_defaults("mesh", "small")
    recipe["lr"] = 1.0
    assert training_defaults("mesh", "small")["lr"] != 1.0
    with pytest.raises(ValueError, match="preset"):
        training_defaults("thesis", "huge")


def test_model_summary_counts_parameters_and_flops(ico2_mesh):
    model = _tiny("thesis", None, n_rows=162, n_times=16)
    one = model_summary(model)
    two = model_summary(model, batch_size=2)
    assert one["n_parameters"] == sum(p.numel() for p in model.parameters())
    assert one["forward_flops"] > 0
    assert two["forward_flops"] == 2 * one["forward_flops"]
    assert model.training  # restored
    mesh = model_summary(_tiny("mesh", ico2_mesh, n_times=16))
    assert mesh["forward_flops"] > 0 and mesh["input_shape"] == [1, 3, 162, 16]
