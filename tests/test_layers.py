"""Layer data tuples and the non-overlapping layout (no Qt needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_meg_unet import layers
from napari_meg_unet.layers import META_KEY


def _box(data_shape, kwargs, layer_type):
    """World (y, x) bounding box of a tuple's displayed plane."""
    scale, translate = np.asarray(kwargs["scale"]), np.asarray(kwargs["translate"])
    if layer_type == "surface":
        verts = data_shape  # vertices array
        world = verts * scale + translate
        return world[:, 1].min(), world[:, 1].max(), world[:, 2].min(), world[:, 2].max()
    rows, cols = data_shape[-2:]
    y0, x0 = translate[-2:]
    return y0, y0 + rows * scale[-2], x0, x0 + cols * scale[-1]


def _overlap(a, b):
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def test_sensor_image_groups_and_scales(template_hm):
    info = template_hm.info
    n_ch = len(info["ch_names"])
    data = np.random.default_rng(0).standard_normal((2, n_ch, 5)) * 1e-13
    image = layers.sensor_image(data, info)
    types = info.get_channel_types()
    assert image.type_rows == {"mag": (0, 102), "grad": (102, 306)}
    assert image.ch_types == ["mag"] * 102 + ["grad"] * 204
    assert image.units[0] == "fT" and image.units[-1] == "fT/cm"
    # each row is the picked channel, scaled to display units
    for row in (0, 101, 102, 305):
        ch = image.picks[row]
        assert types[ch] == image.ch_types[row]
        assert image.ch_names[row] == info["ch_names"][ch]
        np.testing.assert_allclose(
            image.data[:, row], data[:, ch] * layers.SCALINGS[types[ch]], rtol=1e-6
        )
    assert image.data.dtype == np.float32
    with pytest.raises(ValueError, match="n_channels=306"):
        layers.sensor_image(data[:, :10], info)


def test_sensor_layer_continuous_and_events(template_hm):
    info = template_hm.info.copy()
    with info._unlock():
        info["sfreq"] = 200.0
    n_ch = len(info["ch_names"])
    data, kwargs, kind = layers.sensor_layer(np.zeros((n_ch, 400)), info, name="MEG x", tmin=0.5)
    assert kind == "image" and data.shape == (n_ch, 400)
    assert kwargs["name"] == "MEG x" and kwargs["colormap"] == "gray"
    assert kwargs["scale"][-1] == pytest.approx(1 / 200.0)
    assert kwargs["translate"][-1] == pytest.approx(0.5)
    assert kwargs["metadata"]["info"] is info
    assert kwargs["metadata"][META_KEY]["role"] == "sensor"
    data3, kwargs3, _ = layers.sensor_layer(np.zeros((3, n_ch, 40)), info)
    assert data3.shape == (3, 1, n_ch, 40)
    assert len(kwargs3["scale"]) == 4


def test_events_layer_lines(template_hm):
    info = template_hm.info.copy()
    with info._unlock():
        info["sfreq"] = 100.0
    n_ch = len(info["ch_names"])
    sensor = layers.sensor_layer(np.zeros((n_ch, 300)), info, name="MEG x")
    lines, kwargs, kind = layers.events_layer([0.5, 1.25], ["a", "b"], sensor=sensor)
    assert kind == "shapes"
    np.testing.assert_allclose(lines[0], [[0, 50], [n_ch, 50]])
    np.testing.assert_allclose(lines[1], [[0, 125], [n_ch, 125]])
    assert kwargs["features"]["event"] == ["a", "b"]
    assert kwargs["scale"] == sensor[1]["scale"] and kwargs["translate"] == sensor[1]["translate"]
    with pytest.raises(ValueError, match="one entry per event"):
        layers.events_layer([0.5], ["a", "b"], sensor=sensor)


def test_stack_layer():
    stack = np.random.default_rng(0).standard_normal((3, 10, 8))
    data, kwargs, kind = layers.stack_layer(stack, name="dSPM", sfreq=250.0, tmin=-0.1)
    assert kind == "image" and data.shape == (3, 1, 10, 8) and data.dtype == np.float32
    np.testing.assert_allclose(layers.stack_data(data), stack, rtol=1e-6)
    assert kwargs["name"] == "dSPM" and kwargs["colormap"] == "bwr"
    assert kwargs["metadata"]["unit"] == "F (noise-normalised)"
    assert kwargs["metadata"][META_KEY]["title"] == "dSPM [F]"
    lo, hi = kwargs["contrast_limits"]
    # symmetric, saturating the strongest 1% of the values
    assert lo == -hi and hi == pytest.approx(np.percentile(np.abs(stack), 99), rel=1e-5)
    sparse = np.zeros((1, 100, 10))
    sparse[0, 3, 4:6] = [2.0, -3.0]
    assert layers.stack_layer(sparse, name="truth", sfreq=1.0)[1]["contrast_limits"][1] == (
        pytest.approx(np.percentile([2.0, 3.0], 99))
    )
    assert kwargs["scale"][-1] == pytest.approx(1 / 250.0)
    assert kwargs["metadata"][META_KEY]["slot"] == layers.STACK_ORDER.index("dSPM")
    probs = 0.5 + 0.01 * np.random.default_rng(1).random((3, 10, 8))  # near uniform
    _, kw_pred, _ = layers.stack_layer(probs, name=layers.prediction_name("thesis"), sfreq=250.0)
    assert kw_pred["name"] == "prediction (thesis)"
    # zero is dark grey, not black: an empty map stays visible on napari's black canvas
    assert kw_pred["colormap"]["name"] == "probability"
    assert tuple(kw_pred["colormap"]["colors"][0][:3]) == (0.25, 0.25, 0.25)
    # limits from the data's actual range: a near-uniform map keeps its contrast
    lo, hi = kw_pred["contrast_limits"]
    assert lo == pytest.approx(probs.min(), rel=1e-6) and hi == pytest.approx(probs.max(), rel=1e-6)
    assert kw_pred["metadata"][META_KEY]["slot"] == len(layers.STACK_ORDER)
    assert kw_pred["metadata"]["unit"] == "probability"
    with pytest.raises(ValueError, match="sfreq"):
        layers.stack_layer(stack, name="MNE", sfreq=0.0)
    with pytest.raises(ValueError, match="n_events, n_rows, n_times"):
        layers.stack_layer(np.zeros(5), name="MNE", sfreq=1.0)


@pytest.mark.parametrize("full", [True, False])
def test_cortex_mesh_from_headmodel(template_hm, full):
    hm = template_hm
    mesh = layers.cortex_mesh_from_headmodel(hm, hemi="rh", kind="inflated", full=full)
    n_lh = len(hm.vertno[0])
    n_vertices = sum(len(hm.surfaces["inflated"][h][0]) for h in ("lh", "rh"))
    assert len(mesh.vertices) == (n_vertices if full else hm.n_sources)
    # lh vertices show nothing, every rh row is drawn
    lh = slice(0, len(hm.surfaces["inflated"]["lh"][0]) if full else n_lh)
    assert (mesh.row_of_vertex[lh] == -1).all()
    assert set(np.unique(mesh.row_of_vertex[lh.stop :])) == set(range(len(hm.rows("rh"))))
    # a source's own surface vertex shows that source's row
    rh_first = lh.stop + (hm.vertno[1][5] if full else 5)
    assert mesh.row_of_vertex[rh_first] == 5
    assert mesh.faces.max() < len(mesh.vertices)
    # inflated hemispheres are pulled apart at x = 0
    assert mesh.vertices[lh, 0].max() == pytest.approx(0.0)
    assert mesh.vertices[lh.stop :, 0].min() == pytest.approx(0.0)


def test_cortex_values_mapping():
    mesh = layers.CortexMesh(
        vertices=np.zeros((4, 3)), faces=np.array([[0, 1, 2]]), background=np.zeros(4),
        row_of_vertex=np.array([1, -1, 0, 1]),
    )  # fmt: skip
    stack = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)  # events, rows, times
    values = mesh.values(stack)
    assert values.shape == (3, 2, 4)
    for t in range(3):
        for e in range(2):
            np.testing.assert_array_equal(
                values[t, e], [stack[e, 1, t], 0.0, stack[e, 0, t], stack[e, 1, t]]
            )
    with pytest.raises(ValueError, match="stack has 1 rows"):
        mesh.values(stack[:, :1])


def test_cortex_layer(template_hm):
    mesh = layers.cortex_mesh_from_headmodel(template_hm, hemi="both", kind="inflated")
    stack = np.random.default_rng(1).standard_normal((2, template_hm.n_sources, 4))
    (verts, faces, values), kwargs, kind = layers.cortex_layer(mesh, values=stack, colormap="bwr")
    assert kind == "surface" and values.shape == (4, 2, len(verts))
    # napari order: depth = z, row = -y (anterior up), col = x
    np.testing.assert_allclose(verts[:, 0], mesh.vertices[:, 2], rtol=1e-6)
    np.testing.assert_allclose(verts[:, 1], -mesh.vertices[:, 1], rtol=1e-6)
    assert len(kwargs["scale"]) == 3
    dle = np.linspace(0, 10, len(verts))
    (_, _, map_values), map_kwargs, _ = layers.cortex_layer(mesh, values=dle, name="DLE")
    assert map_values.shape == (len(verts),) and map_kwargs["metadata"][META_KEY]["role"] == "map"
    with pytest.raises(ValueError, match="per-vertex values"):
        layers.cortex_layer(mesh, values=dle[:-1])
    # signed cortex values: limits rounded up so that the colorbar labels both ends
    lo, hi = kwargs["contrast_limits"]
    assert lo == -hi and hi in (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
    assert hi >= np.percentile(np.abs(values), 99) / 1.7
    (_, _, _), given, _ = layers.cortex_layer(mesh, values=stack, colormap="bwr",
                                              limits=(-7.2e-10, 7.2e-10))  # fmt: skip
    assert given["contrast_limits"] == (-1e-9, 1e-9)


def test_a_sparse_per_vertex_map_shows_the_cortex_grey_where_it_has_no_value(template_hm):
    from napari_meg_unet.layers.colormaps import NEUTRAL

    mesh = layers.cortex_mesh_from_headmodel(template_hm, hemi="rh", kind="inflated")
    per_row = np.full(len(template_hm.rows("rh")), np.nan)
    per_row[[3, 100, 400]] = [2.0, 10.0, 30.0]  # three true sources scored, mm
    values = mesh.per_vertex(per_row)
    (_, _, shown), kwargs, _ = layers.cortex_layer(mesh, values=values, name="mean DLE (x)")
    lo, hi = kwargs["contrast_limits"]
    assert np.isfinite(shown).all() and hi == 30.0 and lo < 2.0
    missing = ~np.isfinite(values)
    assert np.all(shown[missing] == lo) and np.array_equal(shown[~missing], values[~missing])
    cmap = kwargs["colormap"]
    colors, controls = np.asarray(cmap["colors"]), np.asarray(cmap["controls"])
    np.testing.assert_allclose(colors[0], NEUTRAL)  # the missing vertices: grey
    # the map's own range [2, 30] keeps the colormap's colours, from its first one
    start = (2.0 - lo) / (hi - lo)
    first = np.searchsorted(controls, start)
    assert controls[first] == pytest.approx(start) and not np.allclose(colors[first], NEUTRAL)
    assert np.allclose(colors[first - 1], NEUTRAL) and controls[first - 1] < start
    # a full map is left as it is
    (_, _, full), full_kw, _ = layers.cortex_layer(mesh, values=np.linspace(0, 10, len(values)))
    assert full_kw["contrast_limits"] == (0.0, 10.0)


@pytest.mark.parametrize(("value", "expected"), [
    (1.0, 1.0), (1.2, 1.5), (7.9, 10.0), (8.5, 10.0), (0.031, 0.04), (4.2e-10, 5e-10),
    (60.0, 60.0), (61.0, 100.0),
])  # fmt: skip
def test_nice_ceiling(value, expected):
    assert layers.nice_ceiling(value) == pytest.approx(expected)
    assert layers.nice_ceiling(0.0) == 0.0 and np.isnan(layers.nice_ceiling(np.nan))


def test_layout_has_no_overlaps(template_hm):
    info = template_hm.info.copy()
    with info._unlock():
        info["sfreq"] = 100.0
    n_ch, n_rows, n_times = len(info["ch_names"]), template_hm.n_sources, 50
    stack = np.zeros((2, n_rows, n_times))
    tuples = [
        layers.sensor_layer(np.zeros((n_ch, 3000)), info, name="MEG run-1", band=0),
        layers.sensor_layer(np.zeros((n_ch, 3000)), info, name="MEG run-2", band=1),
        # a simulation's sensor data asking for band 0 as well: packed into its own band
        layers.sensor_layer(np.zeros((2, n_ch, 50)), info, name="sensor data", band=0),
        layers.stack_layer(stack, name=layers.prediction_name("mesh"), sfreq=100.0, tmin=-0.2),
        layers.stack_layer(stack, name="MNE", sfreq=100.0, tmin=-0.2),
        layers.stack_layer(stack, name="truth", sfreq=100.0, tmin=-0.2),
    ]
    mesh = layers.cortex_mesh_from_headmodel(template_hm, kind="inflated")
    tuples.append(layers.cortex_layer(mesh, values=stack, name="cortex"))
    tuples.append(layers.cortex_layer(mesh, values=np.ones(len(mesh.vertices)), name="DLE"))
    layers.layout_tuples(tuples)
    boxes = {
        kw["name"]: _box(d[0] if t == "surface" else np.shape(d), kw, t) for d, kw, t in tuples
    }
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not _overlap(boxes[a], boxes[b]), (a, b, boxes[a], boxes[b])
    # stacks: truth, MNE, prediction from left to right, time scale untouched
    xs = [boxes[n][2] for n in ("truth", "MNE", "prediction (mesh)")]
    assert xs == sorted(xs) and xs[0] == pytest.approx(-0.2)
    for _, kw, t in tuples:
        if t == "image":
            assert kw["scale"][-1] == pytest.approx(0.01)
    # cortex surfaces sit left of every image
    left = min(boxes[n][2] for n in names if n not in ("cortex", "DLE"))
    assert boxes["cortex"][3] < left and boxes["DLE"][3] < left


def test_arrange_moves_layers():
    stack_meta = layers.stack_layer(np.zeros((1, 4, 10)), name="MNE", sfreq=10.0)[1]["metadata"]
    truth_meta = layers.stack_layer(np.zeros((1, 4, 10)), name="truth", sfreq=10.0)[1]["metadata"]
    mne_layer = SimpleNamespace(metadata=stack_meta, ndim=4, scale=None, translate=None)
    truth_layer = SimpleNamespace(metadata=truth_meta, ndim=4, scale=None, translate=None)
    foreign = SimpleNamespace(metadata={}, ndim=2, scale=(1, 1), translate=(5, 5))
    layers.arrange([foreign, mne_layer, truth_layer])
    assert foreign.translate == (5, 5)
    assert truth_layer.translate[-1] == 0.0
    assert mne_layer.translate[-1] == pytest.approx(1.0 * (1 + layers.GAP))
    assert mne_layer.scale[-2:] == pytest.approx((0.25, 0.1))


def test_spread_to_neighbours():
    from scipy import sparse

    # a path 0 - 1 - 2 - 3 - 4: rows 1 and 4 scored
    i, j = np.arange(4), np.arange(1, 5)
    adjacency = sparse.coo_matrix((np.ones(8), (np.r_[i, j], np.r_[j, i])), shape=(5, 5))
    out = layers.spread_to_neighbours([np.nan, 2.0, np.nan, np.nan, 6.0], adjacency)
    np.testing.assert_allclose(out, [2.0, 2.0, 2.0, 6.0, 6.0])  # row 2: its valued neighbour
    lone = layers.spread_to_neighbours([np.nan, np.nan, np.nan, np.nan, 1.0], adjacency)
    assert np.isnan(lone[:3]).all() and lone[3] == 1.0
    with pytest.raises(ValueError, match="adjacency must be"):
        layers.spread_to_neighbours([1.0, 2.0], adjacency)
