""":func:`iter_simulate`: draw the layout and waveforms, then simulate the events chunk by chunk."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from .. import __version__
from .._config import takes_config
from .._docs import fill_doc
from .._logging import verbose as verbose_decorator
from .._resources import ResourceEstimate, check_resources
from ..configs import SimulationConfig
from ..headmodel import HeadModel
from ..progress import Progress, plain
from .container import FORMAT_NAME, FORMAT_VERSION, Simulation, simulation_fingerprint
from .layout import _draw_layout
from .noise import _noise_colour, _noise_model
from .waveforms import _draw_event_snr, _draw_waveforms

#: Dense spacing of an off-grid template sweep when ``dense_spacing`` is None.
SWEEP_DENSE_SPACING = "ico5"
#: Chunk memory budget (bytes of one float64 event block times events) for batching.
_CHUNK_BYTES = 32 * 2**20
#: Bytes per source of the source table, membership and waveform parameters (estimate).
_SOURCE_BYTES = 200


@fill_doc
@takes_config(SimulationConfig)
@verbose_decorator
def iter_simulate(hm, *, config, force=False, chunk=None, model_error=(), verbose=None):
    """Simulate M/EEG sensor data for many events, yielding progress.

    Sensor data of every event are ``gain[:, sources] @ time_courses`` plus
    noise, computed for chunks of events with one batched matrix product each;
    the SNR is set exactly per event in whitened sensor space (see
    ``docs/simulation.md``).

    Parameters
    ----------
    %(hm)s
    %(options)s
    force : bool
        Simulate even when the estimated memory (see
        :func:`estimate_simulation`, logged at INFO) exceeds what is available;
        otherwise :class:`~napari_meg_unet._resources.InsufficientResourcesError`
        is raised before anything is allocated.
    chunk : int | None
        ``precision="float32"`` only: events per block of the torch core
        (default 256). The blocks are its unit of counter-based seeding, so a
        float32 simulation with ``chunk=B`` holds exactly the events of the
        training stream with the same seed and batch size ``B`` in one process.
    model_error : sequence of HeadModel | TrueModel
        ``precision="float32"`` only: alternative forward models making the
        signal of the events, one drawn per event (model-error augmentation,
        :class:`~napari_meg_unet.simulate.torch_core.TorchCore`).
    %(verbose)s

    Yields
    ------
    progress : Progress
        One event per chunk of simulated events.

    Returns
    -------
    sim : Simulation
        Returned through ``StopIteration.value``.

    Notes
    -----
    ``design="sweep"`` uses each row of ``hemi`` exactly ``n_repeats`` times,
    in a shuffled order. ``"multi"`` draws ``n_events`` events of
    ``n_dipoles`` dipoles at distinct rows (at least ``min_separation_mm``
    apart). ``"extended"`` grows one patch per event from a seed row: the
    vertices connected to the seed along mesh edges through vertices at most
    ``extent_mm`` from it (Euclidean); the seeds sweep the rows like
    ``"sweep"`` when ``n_events`` is None, else ``n_events`` seeds are drawn
    uniformly (with replacement).

    ``off_grid=True`` puts dipoles at dense source-space vertices (their own
    normals and dense forward, from
    :func:`~napari_meg_unet.headmodel.make_dense_sources`); an off-grid sweep
    on the template uses the full ``"ico5"`` mesh unless ``dense_spacing`` is
    given, so that every row has dense vertices nearest to it (recorded in
    ``meta["dense_spacing"]``).

    ``noise="cov"`` draws Gaussian noise with the head model's noise
    covariance (coloured with MNE's colourer); ``"white"`` i.i.d. Gaussian
    noise with one variance per channel type (the mean of that type's diagonal
    of ``hm.noise_cov``); ``None`` none. The same seed gives bit-identical
    output.

    ``precision="float32"`` makes the events with the float32 torch core
    (:mod:`~napari_meg_unet.simulate.torch_core`, the training stream's path):
    the same designs, waveform presets, exact whitened SNR and noise model, from
    other (counter-based) random draws; a sweep is then ``n_repeats``
    consecutive sweeps of every row, each in its own shuffled order.
    """
    _check_headmodel(hm)
    check_resources(estimate_simulation(hm, config), force=force)
    if config.precision == "float32":
        from .torch_simulation import iter_simulate_torch

        return (yield from iter_simulate_torch(
            hm, config, chunk=chunk, model_error=model_error, verbose=verbose
        ))  # fmt: skip
    if chunk is not None or model_error:
        raise ValueError("chunk and model_error apply to precision='float32' only.")
    rng_design, rng_time, rng_snr, rng_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(4)
    )
    dense = None
    if config.off_grid:
        dense = yield from _iter_dense_sources(hm, config, verbose=verbose)
    layout = _draw_layout(hm, config, rng_design, dense)
    n_events = len(layout["event_indptr"]) - 1
    tc = _draw_waveforms(
        config.timecourse,
        len(layout["row"]),
        n_times=config.resolved_n_times,
        sfreq=config.resolved_sfreq,
        rng=rng_time,
    )
    event_snr = _draw_event_snr(config.snr, n_events, rng_snr)
    whitener, colorer = _noise_model(hm, config.noise, verbose=verbose)
    chunks = _ChunkSimulator(
        layout, tc, whitener, colorer, event_snr=event_snr, config=config, rng=rng_noise
    )
    data, scale = yield from chunks.iter_run()
    return _assemble(
        hm, config, layout, tc, data=data, scale=scale, event_snr=event_snr,
        rank=whitener.shape[0], dense=dense,
    )  # fmt: skip


simulate = plain(iter_simulate)


#: Vertices of the full fsaverage5 mesh (the densest source space of off-grid dipoles).
_DENSE_VERTICES = 20484

@fill_doc
def estimate_simulation(hm, config: SimulationConfig, *, saving: bool = False) -> ResourceEstimate:
    """Bytes a simulation will hold in memory (and write to disk, when ``saving``).

    Counts the float32 data (events x channels x samples), the float64
    waveforms and fields, the source table, the dense forward of off-grid
    dipoles and the temporaries of one chunk; computed from the options alone,
    before anything is drawn.

    Parameters
    ----------
    %(hm)s
    config : SimulationConfig
        The simulation's options.
    saving : bool
        Also estimate the bytes :meth:`Simulation.save` writes.

    Returns
    -------
    estimate : ResourceEstimate
        For :func:`~napari_meg_unet._resources.check_resources`.
    """
    n_rows = len(hm.rows(config.hemi))
    n_events = n_rows * config.n_repeats if config.n_events is None else config.n_events
    per_event = config.n_dipoles[1] if config.design == "multi" else 1
    n_src = n_events * per_event
    n_ch, n_times = int(hm.gain.shape[0]), config.resolved_n_times
    n_fields = n_src if config.off_grid else min(n_src, n_rows)
    data = 4 * n_events * n_ch * n_times
    waveforms = 8 * n_src * n_times  # unit waveforms; the scaled time courses again
    fields = 8 * n_fields * n_ch  # fields; their whitened copy again
    table = _SOURCE_BYTES * n_src + n_events * (n_times + 8 * (per_event + 4))
    # the dense forward of off-grid dipoles (free orientation), at most the full ico5 mesh
    dense = 8 * 3 * n_ch * _DENSE_VERTICES if config.off_grid else 0
    memory = data + 2 * waveforms + 2 * fields + table + dense + 4 * _CHUNK_BYTES
    disk = data + waveforms + fields + table if saving else 0
    what = f"simulate {n_events} events x {n_ch} channels x {n_times} samples"
    return ResourceEstimate(what, memory=memory, disk=disk)


# --------------------------------------------------------------------------- steps
def _check_headmodel(hm) -> None:
    """The head-model checks the config cannot do: its type and a finite gain."""
    if not isinstance(hm, HeadModel):
        raise TypeError(f"hm must be a HeadModel, got {type(hm).__name__}.")
    _check_finite_gain(hm.gain, "hm.gain")


def _check_finite_gain(gain, name) -> None:
    if not np.isfinite(gain).all():
        bad = np.flatnonzero(~np.isfinite(gain).all(axis=0))
        raise ValueError(
            f"{name} contains NaN/Inf values (in {len(bad)} source column(s), first "
            f"{bad[:5].tolist()}); rebuild the head model."
        )


def _iter_dense_sources(hm, config, *, verbose=None):
    """Generator: the dense sources of off-grid dipoles (checked for a finite gain)."""
    from ..headmodel import _is_template, iter_make_dense_sources

    spacing = config.dense_spacing
    if spacing is None and config.design == "sweep" and _is_template(hm):
        # one level finer than the grid leaves some rows without any dense vertex
        # nearest to them; the full fsaverage5 mesh gives every row several
        spacing = SWEEP_DENSE_SPACING
    dense = yield from iter_make_dense_sources(hm, spacing=spacing, verbose=verbose)
    _check_finite_gain(np.asarray(dense.gain), "The dense gain")
    return dense


class _ChunkSimulator:
    """Sensor data of chunks of events, each scaled to its exact whitened SNR.

    The sources of each event are gathered through a padded (event, slot)
    table, so a chunk of events takes a few batched matrix products; the
    products are formed as (event, time, channel).
    """

    def __init__(self, layout, tc, whitener, colorer, *, event_snr, config, rng):
        self.layout, self.tc, self.rng = layout, tc, rng
        self.fields = layout["fields"]
        self.w_fields = self.fields @ whitener.T  # (n_fields, rank)
        self.rank = whitener.shape[0]
        self.colour = None if config.noise is None else _noise_colour(colorer, config.nave)
        self.target = event_snr / np.sqrt(config.nave)
        self.n_events = len(layout["event_indptr"]) - 1
        self.n_channels = self.fields.shape[1]
        self.n_times = tc["unit"].shape[1]
        indptr = layout["event_indptr"]
        counts = np.diff(indptr)
        n_src = len(layout["row"])
        slots = np.arange(n_src) - np.repeat(indptr[:-1], counts)
        self.pad = np.full((self.n_events, counts.max()), -1, int)
        self.pad[layout["event"], slots] = np.arange(n_src)
        starts = np.minimum.reduceat(tc["onset"], indptr[:-1])
        stops = np.maximum.reduceat(tc["onset"] + tc["duration"], indptr[:-1])
        times = np.arange(self.n_times)
        self.in_window = (times >= starts[:, None]) & (times < stops[:, None])

    def iter_run(self):
        """Generator: ``(data, scale)`` of all events, one progress event per chunk."""
        n = self.n_events
        data = np.empty((n, self.n_channels, self.n_times), np.float32)
        scale = np.empty(n)
        chunk = max(1, _CHUNK_BYTES // (8 * max(self.n_channels, self.rank) * self.n_times))
        yield Progress("simulate", 0, n, f"{n} events")
        for start in range(0, n, chunk):
            sl = slice(start, min(start + chunk, n))
            signal, scale[sl] = self.simulate(sl)
            data[sl] = signal.transpose(0, 2, 1)
            yield Progress("simulate", sl.stop, n, f"{n} events")
        return data, scale

    def simulate(self, sl: slice):
        """Signal plus noise (events, times, channels) of the events ``sl`` and their scales."""
        idx = self.pad[sl]
        valid = (idx >= 0)[..., None]
        src = np.where(idx >= 0, idx, 0)
        # (event, time, slot) amplitudes
        amp = self.tc["unit"][src] * (self.tc["rel_amplitude"][src][..., None] * valid)
        amp = np.ascontiguousarray(amp.transpose(0, 2, 1))
        f_idx = self.layout["field"][src]
        scale = self._scale(sl, amp, f_idx)
        signal = np.matmul(amp, self.fields[f_idx])
        signal *= scale[:, None, None]
        if self.colour is not None:
            n_ev = signal.shape[0]
            z = self.rng.standard_normal(
                (n_ev * self.n_times, self.colour.shape[0]), dtype=np.float32
            )
            signal += np.asarray(z @ self.colour).reshape(n_ev, self.n_times, self.n_channels)
        return signal, scale

    def _scale(self, sl, amp, f_idx) -> np.ndarray:
        """Per-event factor giving the unscaled amplitudes exactly the target SNR."""
        w_sig = np.matmul(amp, self.w_fields[f_idx])
        power = np.einsum("etr,etr->et", w_sig, w_sig)
        window = self.in_window[sl]
        rms = np.sqrt((power * window).sum(axis=1) / (window.sum(axis=1) * self.rank))
        bad = ~(np.isfinite(rms) & (rms > 0))
        if bad.any():
            e = sl.start + int(np.flatnonzero(bad)[0])
            rows = self.layout["row"][self.pad[e][self.pad[e] >= 0]].tolist()
            raise ValueError(
                f"Event {e} (rows {rows}) has no whitened signal: its sources are "
                "invisible to the sensors, so no amplitude reaches the requested snr."
            )
        return self.target[sl] / rms


# --------------------------------------------------------------------------- result
def _assemble(hm, config, layout, tc, *, data, scale, event_snr, rank, dense) -> Simulation:
    """The :class:`Simulation` of the drawn layout, waveforms and simulated data."""
    amplitude = tc["rel_amplitude"] * scale[layout["event"]]
    sources = dict(
        event=layout["event"],
        row=layout["row"],
        vertex=layout["vertex"],
        dense_vertex=layout["dense_vertex"],
        hemi=layout["hemi"],
        position=layout["position"],
        normal=layout["normal"],
        field=layout["field"],
        onset=tc["onset"],
        duration=tc["duration"],
        frequency=tc["frequency"],
        phase=tc["phase"],
        amplitude=amplitude,
        snr=event_snr[layout["event"]],
        grid_distance=layout["grid_distance"],
    )
    sim = Simulation(
        data=data,
        info=_sim_info(hm, config.resolved_sfreq),
        sources=sources,
        event_indptr=layout["event_indptr"],
        timecourses=tc["unit"] * amplitude[:, None],
        fields=layout["fields"],
        member_indptr=layout["member_indptr"],
        member_rows=layout["member_rows"],
        member_weights=layout["member_weights"],
        rows=hm.rows(config.hemi),
        meta=_meta(hm, config, n_events=len(data), n_src=len(amplitude), rank=rank, dense=dense),
    )
    sim.meta["fingerprint"] = simulation_fingerprint(sim)
    return sim


def _sim_info(hm, sfreq):
    """The head model's info at the simulation's sampling rate."""
    info = hm.info.copy()
    with info._unlock():
        info["sfreq"] = sfreq
        info["lowpass"] = min(float(info["lowpass"] or np.inf), sfreq / 2.0)
    return info


def _meta(hm, config, *, n_events, n_src, rank, dense) -> dict:
    """Head-model identity, the parameters (sfreq and n_times resolved) and the sizes."""
    from ..headmodel.perturb import perturbation_record

    params = config.to_dict()
    params.update(sfreq=config.resolved_sfreq, n_times=config.resolved_n_times)
    if params["precision"] == "float64":  # the reference path: fingerprints as before
        del params["precision"]
    # a perturbed (model-error) head model records what it perturbs: see headmodel.perturb
    perturbed = perturbation_record(hm) or {}
    return dict(
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        package_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        headmodel=dict(
            fingerprint=hm.fingerprint,
            subject=hm.subject,
            spacing=hm.spacing,
            modality=hm.modality,
            n_sources=int(hm.n_sources),
            n_channels=int(hm.gain.shape[0]),
            **perturbed,
        ),
        params=params,
        seed=config.seed,
        n_events=int(n_events),
        n_sources_total=int(n_src),
        noise_rank=int(rank),
        dense_spacing=None if dense is None else dense.spacing,
        snr_definition="rms_whitened_signal_over_window * sqrt(nave)",
    )
