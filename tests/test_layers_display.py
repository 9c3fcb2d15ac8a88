"""Truth markers, titles, units, hover text, colormaps, row orders, the estimate writer (no Qt)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from napari_meg_unet import _writer, layers
from napari_meg_unet.layers import META_KEY, colormaps, hover, ordering


@pytest.fixture(scope="module")
def sim(template_hm):
    from napari_meg_unet.simulate import simulate

    return simulate(template_hm, design="multi", n_events=3, n_dipoles=(1, 2), hemi="rh",
                    snr=3.0, seed=5, verbose="error")  # fmt: skip


@pytest.fixture(scope="module")
def tuples(template_hm, sim):
    from napari_meg_unet._sample_data import simulation_layers

    return {kw["name"]: (d, kw, t) for d, kw, t in simulation_layers(template_hm, sim)}


def test_stack_markers_sit_on_every_true_source(template_hm, sim, tuples):
    points, kwargs, kind = tuples["truth sources"]
    assert kind == "points" and kwargs["blending"] == "translucent_no_depth"
    truth_data, truth_kw, _ = tuples["truth"]
    scale, translate = np.asarray(truth_kw["scale"]), np.asarray(truth_kw["translate"])
    n_sources = len(sim.sources["event"])
    assert len(points) == n_sources  # one stack (truth): one marker per source
    for (event, _, y, x), label in zip(points, kwargs["features"]["source"], strict=True):
        row = int((y - translate[-2]) / scale[-2])
        sample = int((x - translate[-1]) / scale[-1])
        # the marked pixel carries the truth of that event, inside its active window
        assert truth_data[int(event), 0, row].any()
        onset, stop = sim.window(int(event))
        assert onset <= sample < stop
        assert label.startswith(f"event {int(event)}: rh vertex")


def test_markers_follow_new_stacks_and_row_orders(template_hm, sim, tuples):
    truth = tuples["truth"]
    stack = layers.stack_values(truth[0], truth[1]["metadata"])
    order = ordering.row_order(template_hm, "rh", "spectral")
    dspm = layers.stack_layer(stack, name="dSPM", sfreq=sim.sfreq, group=sim.fingerprint,
                              row_order=order, metadata={"hemi": "rh"})  # fmt: skip
    placed = layers.layout_tuples([truth, dspm, tuples["truth sources"]])
    points = placed[2][0]
    assert len(points) == 2 * len(sim.sources["event"])  # on both stacks
    # on the reordered stack, each marker still sits on a row carrying its source
    data, kw = placed[1][0], placed[1][1]
    for event, _, y, _x in points[len(points) // 2 :]:
        row = int((y - kw["translate"][-2]) / kw["scale"][-2])
        assert data[int(event), 0, row].any()


def test_cortex_markers_at_source_vertices(template_hm, sim, tuples):
    points, kwargs, _ = tuples["truth sources (cortex)"]
    mesh = tuples["cortex"][1]["metadata"]["mesh"]
    verts = layers.napari_vertices(mesh.vertices)
    for _event, *xyz in points:
        v = np.flatnonzero(np.all(np.isclose(verts, xyz, atol=1e-6), axis=1))
        assert len(v) and mesh.row_of_vertex[v[0]] >= 0
    assert kwargs["metadata"][META_KEY]["on"] == "cortex"
    assert kwargs["blending"] == "translucent_no_depth"


def test_titles_name_every_result_with_its_unit(tuples):
    titles = tuples["titles"][1]["features"]["title"]
    assert "truth [A·m]" in titles and "cortex: truth [A·m]" in titles
    assert any(t.startswith("sensor data: mag ±") and "fT" in t for t in titles)
    points = tuples["titles"][0]
    truth_kw = tuples["truth"][1]
    # the truth's title sits above or below the truth image, centred on it
    y, x = points[titles.index("truth [A·m]")]
    top = truth_kw["translate"][-2]
    assert y < top or y > top + tuples["truth"][0].shape[-2] * truth_kw["scale"][-2]
    width = tuples["truth"][0].shape[-1] * truth_kw["scale"][-1]
    assert x == pytest.approx(truth_kw["translate"][-1] + width / 2)


def test_sensor_types_get_their_own_contrast(template_hm_megeeg):
    info = template_hm_megeeg.info
    rng = np.random.default_rng(0)
    types = np.array(info.get_channel_types())
    scale = np.where(types == "mag", 1e-12, np.where(types == "grad", 1e-11, 1e-5))
    data = rng.standard_normal((len(types), 50)) * scale[:, None]
    shown, kwargs, _ = layers.sensor_layer(data, info)
    meta = kwargs["metadata"]
    assert kwargs["contrast_limits"] == (-1.0, 1.0)
    for kind, (start, stop) in meta["type_rows"].items():
        band = np.abs(shown[start:stop])
        assert np.percentile(band, 99) == pytest.approx(1.0, rel=0.05), kind
    np.testing.assert_allclose(
        layers.sensor_values(shown, meta), layers.sensor_image(data, info).data, rtol=1e-5
    )
    assert set(meta["type_peaks"]) == {"mag", "grad", "eeg"}


def test_hover_text(template_hm, sim, tuples):
    data, kwargs, _ = tuples["truth"]
    meta = kwargs["metadata"]
    event = int(sim.sources["event"][0])
    row = int(np.flatnonzero(np.asarray(sim.rows) == sim.sources["row"][0])[0])
    sample = sim.window(event)[0] + 2
    text = hover.stack_status(meta, (event, 0, row, sample), data[event, 0, row, sample])
    vertex = int(template_hm.vertno[1][sim.sources["row"][0] - len(template_hm.vertno[0])])
    assert text.startswith(f"truth: rh vertex {vertex} (row {row}), t = ")
    assert f"{1e3 * sample / sim.sfreq:.1f} ms" in text and text.endswith("A·m")
    assert f"event {event} (event {event})" in text
    sensor_data, skw, _ = tuples["sensor data"]
    smeta = skw["metadata"]
    text = hover.sensor_status(smeta, (0, 0, 0, 3), sensor_data[0, 0, 0, 3])
    expected = sensor_data[0, 0, 0, 3] * smeta["type_peaks"]["mag"]
    assert text.startswith(f"sensor data: {smeta['ch_names'][0]} (mag), t = ")
    assert text.endswith(f"{expected:.4g} fT")
    cmeta = tuples["cortex"][1]["metadata"]
    mesh = cmeta["mesh"]
    v = int(mesh.vertex_of_row[row])
    text = hover.cortex_status(cmeta, v, 1.5e-9, sample=sample, event=event)
    assert f"rh source vertex {vertex} (row {row})" in text and text.endswith("1.5e-09 A·m")


def test_thresholded_colormap():
    cmap = colormaps.thresholded("bwr", 0.5, (-2.0, 2.0), signed=True)
    x = np.asarray(cmap["controls"])
    colors = np.asarray(cmap["colors"])
    values = -2 + 4 * x
    grey = np.all(np.isclose(colors, colormaps.NEUTRAL), axis=1)
    assert grey[np.abs(values) < 0.45].all() and not grey[np.abs(values) > 0.55].any()
    assert np.all(np.diff(x) > 0) and x[0] == 0 and x[-1] == 1
    assert colormaps.thresholded("viridis", 0.0, (0, 1), signed=False) == "viridis"
    prob = colormaps.thresholded("probability", 0.3, (0.0, 1.0), signed=False)
    values = np.asarray(prob["controls"])
    below = np.all(np.isclose(np.asarray(prob["colors"]), colormaps.NEUTRAL), axis=1)
    assert below[values < 0.29].all() and not below[values > 0.31].any()


@pytest.mark.parametrize("kind", ["spectral", "bisection"])
def test_readable_row_orders(template_hm, kind):
    order = ordering.row_order(template_hm, "both", kind)
    n_lh = len(template_hm.vertno[0])
    assert sorted(order.tolist()) == list(range(template_hm.n_sources))
    assert (order[:n_lh] < n_lh).all()  # lh rows stay first
    adjacency = template_hm.adjacency("rh")
    rh = order[n_lh:] - n_lh
    base, new = ordering.edge_spread(adjacency, None), ordering.edge_spread(adjacency, rh)
    assert new["median"] < base["median"] / 3  # neighbours become close rows
    positions = template_hm.positions[template_hm.rows("rh")]
    base, new = ordering.patch_runs(positions, None), ordering.patch_runs(positions, rh)
    # a 10 mm patch spans about half the image in the documented order, under 15% here
    assert base["span_mean"] > 0.4 and new["span_mean"] < 0.15
    if kind == "bisection":  # and it breaks into fewer stripes
        assert new["mean"] < base["mean"]


def test_stack_values_undo_the_display_order(template_hm):
    stack = np.random.default_rng(2).standard_normal((2, template_hm.n_sources, 5))
    order = ordering.row_order(template_hm, "both", "bisection")
    data, kwargs, _ = layers.stack_layer(stack, name="MNE", sfreq=100.0, row_order=order)
    np.testing.assert_allclose(data[:, 0], stack[:, order], rtol=1e-6)
    np.testing.assert_allclose(layers.stack_values(data, kwargs["metadata"]), stack, rtol=1e-6)
    with pytest.raises(ValueError, match="permutation"):
        layers.stack_layer(stack, name="MNE", sfreq=100.0, row_order=order[:-1])


def test_writer_round_trip(template_hm, sim, tmp_path):
    import mne

    rng = np.random.default_rng(3)
    rows = template_hm.rows("rh")
    stack = rng.standard_normal((2, len(rows), 6)).astype(np.float32)
    order = ordering.row_order(template_hm, "rh", "spectral")
    meta = {"headmodel": template_hm, "rows": rows, "hemi": "rh", "simulation": sim,
            "labels": ["left/aud", "right"], "lambda2": 1 / 9, "method": "dSPM"}  # fmt: skip
    data, kwargs, _ = layers.stack_layer(stack, name="dSPM", sfreq=250.0, tmin=-0.1,
                                         metadata=meta, row_order=order)  # fmt: skip
    written = _writer.write_estimate(str(tmp_path / "dspm.stc"), data, kwargs)
    names = sorted(p.rsplit("/", 1)[-1] for p in written)
    assert names == ["dspm.json", "dspm_000_left-aud-lh.stc", "dspm_000_left-aud-rh.stc",
                     "dspm_001_right-lh.stc", "dspm_001_right-rh.stc"]  # fmt: skip
    stc = mne.read_source_estimate(tmp_path / "dspm_001_right")
    assert stc.tmin == pytest.approx(-0.1) and stc.tstep == pytest.approx(1 / 250.0, rel=1e-6)
    assert len(stc.vertices[0]) == 0
    np.testing.assert_array_equal(stc.vertices[1], template_hm.vertno[1])
    np.testing.assert_allclose(stc.data, stack[1], rtol=1e-5)  # documented order, not display
    side = json.loads((tmp_path / "dspm.json").read_text())
    assert side["layer"] == "dSPM" and side["unit"] == "F (noise-normalised)"
    assert side["headmodel"]["fingerprint"] == template_hm.fingerprint
    assert side["simulation"] == sim.fingerprint and side["lambda2"] == pytest.approx(1 / 9)
    assert side["events"] == ["left/aud", "right"]
    with pytest.raises(FileExistsError):
        _writer.write_estimate(str(tmp_path / "dspm.stc"), data, kwargs)
    with pytest.raises(ValueError, match=".stc or .h5"):
        _writer.write_estimate(str(tmp_path / "x.npy"), data, kwargs)
    anatomy = {META_KEY: {"role": "cortex", "name": "cortex"}, "headmodel": template_hm,
               "rows": rows}  # fmt: skip
    with pytest.raises(ValueError, match="anatomy only"):
        _writer.write_estimate(str(tmp_path / "c.stc"), None, {"metadata": anatomy})


def test_arrange_sets_the_cortex_time_axis(template_hm, tuples):
    d, kw, _ = tuples["cortex"]
    layer = SimpleNamespace(metadata=kw["metadata"], ndim=5, scale=(1.0,) * 5,
                            translate=(0.0,) * 5)  # fmt: skip
    layers.arrange([layer])
    sfreq = kw["metadata"][META_KEY]["sfreq"]
    assert layer.scale[0] == pytest.approx(1 / sfreq) and layer.scale[1] == 1.0


def test_neighbouring_titles_alternate_above_and_below():
    from napari_meg_unet.layers.layout import _stagger_titles

    # (y above, y below, x): one row of four titles given out of order, one far below
    places = np.array([[0.0, 1.0, 3.0], [0.0, 1.0, 1.0], [0.01, 1.01, 2.0], [0.0, 1.0, 0.0],
                       [5.0, 6.0, 1.0]])  # fmt: skip
    out = _stagger_titles(places, height=1.0)
    row = out[[3, 1, 2, 0]]  # left to right
    assert np.allclose(row[:, 0], [0.0, 1.0, 0.01, 1.0])
    assert np.allclose(row[:, 1], [0.0, 1.0, 2.0, 3.0])
    assert np.array_equal(out[4], [5.0, 1.0])


def test_stack_titles_below_sit_under_the_stack(tuples):
    titles = list(tuples["titles"][1]["features"]["title"])
    points = tuples["titles"][0]
    below = 0
    for name, (data, kwargs, kind) in tuples.items():
        title = kwargs.get("metadata", {}).get(META_KEY, {}).get("title")
        if title in titles and kind == "image":
            y = points[titles.index(title)][0]
            top = kwargs["translate"][-2]
            bottom = top + data.shape[-2] * kwargs["scale"][-2]
            assert y < top or y > bottom, name
            below += y > bottom
    assert below >= 1
