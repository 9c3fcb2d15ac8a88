"""The centre head: source positions between grid vertices, learned by the network.

A mesh U-Net with ``centre_head=True`` outputs, besides its two class logits,
one *centre logit* per vertex and time. Its mean over the epoch, ``h``, places
a source near vertex ``v`` at the softmax-weighted mean position of ``v``'s
``hops``-ring (``v`` and every vertex at most ``hops`` mesh edges away)::

    w_u = exp(h_u) / sum_{u' in ring(v)} exp(h_u')       p = sum_{u in ring(v)} w_u r_u

so the estimate can lie anywhere in the ring's convex hull, not only on the
grid. The network's filters are isotropic (they cannot tell directions apart),
so it cannot regress an offset vector; a scalar per vertex ("how close is the
source to me") is what they can learn, and the fixed vertex positions ``r_u``
supply the direction. Inference (:func:`centre_positions`) centres the ring
on the network's peaks, which are often not the vertex nearest to the source
(60% of single dipoles at SNR 1). Training (:func:`centre_loss`) therefore
minimises the distance of ``p`` from each true source for two rings: the one
centred on the vertex nearest to it, and the one centred where inference would
centre it, the network's most probable vertex in that vertex's ring.
"""

from __future__ import annotations

import numpy as np
import torch

from .mesh import MeshHierarchy

#: Ring radius (mesh edges) of the centre head.
CENTRE_HOPS = 2

#: Weight of :func:`centre_loss` (centimetres) added to the cross-entropy.
CENTRE_LOSS_WEIGHT = 1.0

#: True sources farther than this from every row (m) are left out of the loss.
_MAX_ROW_DISTANCE = 0.02


def ring_table(mesh: MeshHierarchy, hops: int = CENTRE_HOPS) -> tuple[np.ndarray, np.ndarray]:
    """Each finest vertex's ``hops``-ring, padded: indices and a validity mask ``(n, width)``.

    The vertex itself comes first; padding repeats it with mask False.
    """
    if int(hops) < 0:
        raise ValueError(f"hops must be >= 0, got {hops!r}.")
    index, weight = mesh.neighbour_table(0)
    neighbours = [index[v, weight[v] > 0] for v in range(len(index))]
    rings = []
    for v in range(len(index)):
        ring, frontier = {v}, {v}
        for _ in range(int(hops)):
            frontier = {int(u) for w in frontier for u in neighbours[w]} - ring
            ring |= frontier
        rings.append([v] + sorted(ring - {v}))
    width = max(len(r) for r in rings)
    table = np.empty((len(rings), width), np.int64)
    mask = np.zeros((len(rings), width), bool)
    for v, ring in enumerate(rings):
        table[v, : len(ring)], table[v, len(ring) :] = ring, v
        mask[v, : len(ring)] = True
    return table, mask


def _ring_means(h, centres, table, mask, positions):
    """Softmax-weighted mean positions of the rings of ``centres`` under scores ``h``."""
    idx, valid = table[centres], mask[centres]
    rows = torch.arange(h.shape[0], device=h.device)[:, None, None]
    scores = torch.where(valid, h[rows, idx], torch.finfo(h.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    return (weights[..., None] * positions[idx]).sum(dim=-2)


class CentreTarget:
    """What :func:`centre_loss` needs of the training rows, on a device.

    Parameters
    ----------
    mesh : MeshHierarchy
        The network's mesh (rows in its finest-vertex order).
    positions : array, shape (n_rows, 3)
        The rows' positions in metres.
    device : torch.device | str
    """

    def __init__(self, mesh: MeshHierarchy, positions, *, device="cpu"):
        positions = np.array(positions, np.float64)  # a copy: sets hold read-only maps
        if positions.shape != (mesh.n_vertices[0], 3):
            raise ValueError(
                f"positions must have shape ({mesh.n_vertices[0]}, 3) for this mesh, got "
                f"{positions.shape}."
            )
        table, mask = ring_table(mesh)
        self.table = torch.as_tensor(table, device=device)
        self.mask = torch.as_tensor(mask, device=device)
        self.positions = torch.as_tensor(positions, dtype=torch.float32, device=device)


def centre_loss(centre_logits, true_positions, target: CentreTarget, *, source_map=None
                ) -> torch.Tensor:  # fmt: skip
    """Mean distance (cm) of the ring means from the true sources.

    Parameters
    ----------
    centre_logits : Tensor, shape (batch, n_rows)
        The centre head's epoch mean (``MeshUNet.forward(x, centre=True)[1]``).
    true_positions : Tensor, shape (batch, k_max, 3)
        True source positions (m), NaN-padded; sources farther than 2 cm from every
        row (the other hemisphere) are left out.
    target : CentreTarget
    source_map : Tensor, shape (batch, n_rows), optional
        The network's source probability (epoch mean). With it, each source counts
        twice, with its ring centred on its nearest vertex and on the most probable
        vertex of that vertex's ring (the peak inference would centre it on; no
        gradient flows through the choice). Without it, only the first.

    Returns
    -------
    loss : Tensor
        Scalar; zero (with a gradient) when the batch has no source.
    """
    h = centre_logits.float()
    true = torch.as_tensor(true_positions, dtype=torch.float32, device=h.device)
    if true.ndim != 3 or true.shape[0] != h.shape[0] or true.shape[2] != 3:
        raise ValueError(
            f"true_positions must have shape ({h.shape[0]}, k_max, 3), got {tuple(true.shape)}."
        )
    if source_map is not None and tuple(source_map.shape) != tuple(h.shape):
        raise ValueError(
            f"source_map must have shape {tuple(h.shape)}, got {tuple(source_map.shape)}."
        )
    event, source = torch.nonzero(torch.isfinite(true).all(dim=-1), as_tuple=True)
    points = true[event, source]
    distance, nearest = torch.cdist(points, target.positions).min(dim=-1)
    keep = distance <= _MAX_ROW_DISTANCE
    if not bool(keep.any()):
        return h.sum() * 0.0
    event, points, nearest = event[keep], points[keep], nearest[keep]
    centres = nearest[:, None]
    if source_map is not None:
        centres = torch.cat([centres, _ring_peaks(source_map, event, nearest, target)], dim=1)
    means = _ring_means(h[event], centres, target.table, target.mask, target.positions)
    return 100.0 * torch.sqrt(((means - points[:, None]) ** 2).sum(dim=-1) + 1e-12).mean()


def _ring_peaks(source_map, event, nearest, target: CentreTarget) -> torch.Tensor:
    """``(n, 1)``: the most probable vertex of each ``nearest`` vertex's ring."""
    idx, valid = target.table[nearest], target.mask[nearest]
    scores = source_map.detach().float()[event[:, None], idx]
    scores = torch.where(valid, scores, -torch.inf)
    return idx.gather(1, scores.argmax(dim=1, keepdim=True))


def centre_positions(centre_logits, peaks, positions, rings) -> np.ndarray:
    """Positions (m) of the sources at ``peaks`` under one event's centre logits.

    Parameters
    ----------
    centre_logits : array, shape (n_rows,)
        The centre head's epoch mean for one event.
    peaks : array of int, shape (n_peaks,)
        Rows the sources are near (the network's peaks).
    positions : array, shape (n_rows, 3)
        The rows' positions (m).
    rings : tuple of array
        The network mesh's :func:`ring_table`.

    Returns
    -------
    positions : array, shape (n_peaks, 3)
    """
    table, mask = rings
    h = torch.as_tensor(np.asarray(centre_logits, np.float64))
    means = _ring_means(h[None], torch.as_tensor(np.asarray(peaks, np.int64))[None],
                        torch.as_tensor(table), torch.as_tensor(mask),
                        torch.as_tensor(np.asarray(positions, np.float64)))  # fmt: skip
    return means[0].numpy()
