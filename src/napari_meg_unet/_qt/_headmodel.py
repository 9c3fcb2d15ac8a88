"""Head model dock widget: template or opened-recording head model, summary, SVD spectrum."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, LineEdit
from qtpy.QtWidgets import QLabel

from ..headmodel import MODALITIES, TEMPLATE_SPACINGS
from ._common import (
    DockWidget,
    ThreadedPlot,
    current_headmodel,
    is_recording_layer,
    layer_combo,
    widen_combo,
)
from ._inputs import HeadModelInputs
from ._layerqueue import queue_for
from ._prepare import CORTEX
from ._tasks import iter_headmodel_step


class HeadModelWidget(DockWidget):
    """Build the template head model or one for the opened recording (BIDS or FIF).

    The result goes into the ``cortex`` layer's metadata (``headmodel``),
    where the other widgets find it. The plot shows the singular values of
    the whitened, depth-weighted lead field (the operator's SVD) with the
    condition number and the ``sqrt(lambda2)`` marker, whose Tikhonov filter
    factor is 1/2.
    """

    title = "Head model"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        d = HeadModelInputs()
        self.source = ComboBox(
            label="source", choices=HeadModelInputs.SOURCES, value=d.source,
            tooltip="the fsaverage5 template, or the opened recording's sensors (and its "
            "anatomy when the BIDS dataset has it)",
        )  # fmt: skip
        self.recording = layer_combo(napari_viewer, is_recording_layer, label="recording")
        self.spacing = ComboBox(
            label="spacing", choices=TEMPLATE_SPACINGS, value=d.spacing,
            tooltip="source space: ico3 = 642 sources per hemisphere",
        )  # fmt: skip
        self.modality = ComboBox(label="modality", choices=MODALITIES, value=d.modality)
        self.noise_cov = ComboBox(
            label="noise covariance", choices=HeadModelInputs.NOISE_COVS, value=d.noise_cov,
            tooltip="auto: the recording's empty-room data when it matches (same MEG "
            "channels, within 30 days), else ad hoc; the summary says which",
        )  # fmt: skip
        for combo in (self.source, self.spacing, self.modality, self.noise_cov):
            widen_combo(combo)
        self.lambda2 = LineEdit(
            label="λ² (marker)", value=d.lambda2,
            tooltip="regularisation, fractions allowed (1/9 = SNR 3)",
        )  # fmt: skip
        self.form = Container(
            widgets=[self.source, self.recording, self.spacing, self.modality, self.noise_cov,
                     self.lambda2]  # fmt: skip
        )
        self.add(self.form)
        self.build_button = self.button("Build head model", self.build)
        self.summary = QLabel("No head model yet.")
        self.summary.setWordWrap(True)
        self.add(self.summary)
        self.plot = ThreadedPlot(_setup_spectrum, _update_spectrum, height=2.6)
        self.add(self.plot)
        self.finish(self.form)
        self.headmodel = None
        self.inverse = None
        self.spectrum = None
        self.lambda2.changed.connect(self._update_marker)

    def inputs(self) -> HeadModelInputs:
        return HeadModelInputs(
            source=self.source.value, spacing=self.spacing.value, modality=self.modality.value,
            noise_cov=self.noise_cov.value, lambda2=self.lambda2.value,
        )  # fmt: skip

    def build(self):
        """Build (or load from the cache) the head model in a worker process."""
        try:
            inputs = self.inputs()
            inputs.validate()
            recording = None
            if inputs.source == "recording":
                if not self.recording.value:
                    raise ValueError("open a recording first (File > Open File / Open Folder).")
                recording = self.viewer.layers[self.recording.value].metadata["recording"]
        except Exception as err:
            self.fail(err)
            return None
        return self.run_step(iter_headmodel_step, inputs, recording=recording,
                             on_done=self._built)  # fmt: skip

    def _built(self, step, made):
        hm, inv, spectrum, description = step.value
        self.headmodel, self.inverse, self.spectrum = hm, inv, spectrum
        s = hm.summary()
        self.summary.setText(
            f"{description}: {s['n_sources']} sources ({s['spacing']}, lh {s['n_sources_lh']} / "
            f"rh {s['n_sources_rh']}), {s['n_channels']} channels {s['channels']}, "
            f"{s['conductor']}; condition number {spectrum['condition_number']:.3g}, "
            f"noise rank {spectrum['rank']} of {spectrum['n_channels']} channels, fingerprint "
            f"{s['fingerprint']}."
        )
        self.status.setText("head model ready")
        self._draw_spectrum()
        queue_for(self.viewer).add(made)

    def _update_marker(self, *_):
        if self.inverse is None:
            return
        from ..inverse import svd_spectrum

        try:
            self.spectrum = svd_spectrum(self.inverse, lambda2=self.inputs().lambda2_value())
        except ValueError as err:
            self.status.setText(str(err))
            return
        self._draw_spectrum()

    def _draw_spectrum(self):
        self.plot.submit(dict(self.spectrum))

    def current(self):
        """The head model built here, else the one of the ``cortex`` layer."""
        return self.headmodel or current_headmodel(self.viewer)


def _setup_spectrum(figure):
    figure.subplots_adjust(left=0.17, right=0.97, bottom=0.17, top=0.88)
    return figure.add_subplot()


def _update_spectrum(ax, spec):
    ax.clear()
    sing = np.asarray(spec["singular_values"])[: spec["rank"]]
    ax.semilogy(np.arange(1, len(sing) + 1), sing, lw=1.5, label="σ (whitened lead field)")
    ax.axhline(spec["lambda2_marker"], color="C3", ls="--",
               label=f"√λ² = {spec['lambda2_marker']:.3g} ({spec['n_above_marker']} above)")
    ax.set_xlabel("component")
    ax.set_ylabel("singular value")
    ax.set_title(f"cond = {spec['condition_number']:.3g}, "
                 f"dof = {spec['effective_dof']:.1f}", fontsize=9)  # fmt: skip
    ax.legend(fontsize=7)


__all__ = ["HeadModelWidget", "CORTEX"]
