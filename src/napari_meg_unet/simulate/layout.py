"""Where each event's sources sit: rows, dense (off-grid) vertices and patches."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

#: Attempts at drawing one event's dipoles under ``min_separation_mm``.
_MAX_PLACEMENT_ATTEMPTS = 200


def _draw_layout(hm, config, rng, dense) -> dict:
    """Which rows (and dense vertices / patches) each event uses.

    Returns the event pointers, the source table columns fixed by the layout
    (row, vertex, hemi, position, normal, field, ...), the distinct fields
    (n_fields, n_channels) and the CSR membership of each source over rows.
    """
    rows = hm.rows(config.hemi)
    candidates, dense_pool = rows, None
    if dense is not None:
        dense_pool = _dense_pools(hm, dense, rows)
        if config.design == "sweep" and (dense_pool["count"][rows] == 0).any():
            empty = rows[dense_pool["count"][rows] == 0]
            raise ValueError(
                f"{len(empty)} row(s) of hemi={config.hemi!r} (first {empty[:5].tolist()}) have "
                "no dense vertex nearest to them, so an off-grid sweep cannot cover them; "
                "use a finer dense_spacing."
            )
        candidates = rows[dense_pool["count"][rows] > 0]

    row, counts = _draw_event_rows(hm, config, rng, rows, candidates)
    if dense is not None:
        placed = _place_off_grid(hm, dense, dense_pool, row, rng)
    else:
        placed = _place_on_grid(hm, config, row)
    n_lh = len(hm.vertno[0])
    return dict(
        event_indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        event=np.repeat(np.arange(len(counts)), counts).astype(np.int64),
        row=row,
        vertex=np.asarray(placed["vertex"], np.int64),
        dense_vertex=placed["dense_vertex"],
        hemi=(row >= n_lh).astype(np.int8),
        position=np.ascontiguousarray(placed["position"], np.float64),
        normal=np.ascontiguousarray(placed["normal"], np.float64),
        field=placed["field_of"].astype(np.int64).ravel(),
        fields=np.ascontiguousarray(placed["fields"], np.float64),
        grid_distance=placed["grid_distance"].astype(np.float64),
        member_indptr=placed["member_indptr"],
        member_rows=np.asarray(placed["member_rows"], np.int64),
        member_weights=np.asarray(placed["member_weights"], np.float64),
    )


def _draw_event_rows(hm, config, rng, rows, candidates):
    """The (coarse) row of every source, sorted by event, and the sources per event."""
    design = config.design
    if design == "multi":
        row, counts = _draw_multi(hm, config, rng, candidates)
    elif design == "extended" and config.n_events:
        row = rng.choice(rows, size=config.n_events, replace=True)
        counts = np.ones(len(row), int)
    else:  # sweep, and extended seeds sweeping the rows
        row = rng.permutation(np.repeat(rows, config.n_repeats))
        counts = np.ones(len(row), int)
    return np.asarray(row, np.int64), counts


def _place_off_grid(hm, dense, pool, row, rng) -> dict:
    """A random dense vertex among those nearest to each source's row."""
    pick = np.floor(rng.random(len(row)) * pool["count"][row]).astype(np.int64)
    dense_idx = pool["order"][pool["start"][row] + pick]
    position = np.asarray(dense.positions, float)[dense_idx]
    key, field_of = np.unique(dense_idx, return_inverse=True)
    return dict(
        position=position,
        normal=np.asarray(dense.normals, float)[dense_idx],
        vertex=np.concatenate(dense.vertno)[dense_idx],  # dense sources: lh then rh
        dense_vertex=dense_idx.astype(np.int64),
        field_of=field_of,
        fields=np.asarray(dense.gain, np.float64)[:, key].T,
        grid_distance=np.linalg.norm(position - hm.positions[row], axis=1),
        **_dipole_members(row),
    )


def _place_on_grid(hm, config, row) -> dict:
    """Dipoles at their rows, or (``"extended"``) patches grown from them."""
    n_src = len(row)
    key, field_of = np.unique(row, return_inverse=True)
    placed = dict(
        position=hm.positions[row],
        normal=hm.normals[row],
        vertex=np.concatenate(hm.vertno)[row],
        dense_vertex=np.full(n_src, -1, np.int64),
        grid_distance=np.zeros(n_src),
        field_of=field_of,
    )
    if config.design != "extended":
        placed.update(fields=hm.gain[:, key].T, **_dipole_members(row))
        return placed
    patches = _grow_patches(hm, config.hemi, key, config.extent_mm / 1000.0)
    sizes = np.array([len(m) for m in patches])
    patch_ptr = np.concatenate([[0], np.cumsum(sizes)])
    weights = sparse.csr_matrix(
        (np.ones(patch_ptr[-1]), np.concatenate(patches), patch_ptr),
        shape=(len(key), hm.n_sources),
    )
    member_rows = np.concatenate([patches[k] for k in field_of]).astype(np.int64)
    placed.update(
        fields=np.asarray(weights @ hm.gain.T),
        member_indptr=np.concatenate([[0], np.cumsum(sizes[field_of])]).astype(np.int64),
        member_rows=member_rows,
        member_weights=np.ones(len(member_rows)),
    )
    return placed


def _dipole_members(row) -> dict:
    """CSR membership of dipoles: each source is its own row with weight 1."""
    n_src = len(row)
    return dict(
        member_indptr=np.arange(n_src + 1, dtype=np.int64),
        member_rows=row.copy(),
        member_weights=np.ones(n_src),
    )


def _dense_pools(hm, dense, rows) -> dict:
    """Dense vertices grouped by nearest coarse row (restricted to ``rows``)."""
    nearest = np.asarray(dense.nearest_row, np.int64)
    keep = np.isin(nearest, rows)
    order = np.flatnonzero(keep)
    order = order[np.argsort(nearest[order], kind="stable")]
    count = np.bincount(nearest[order], minlength=hm.n_sources)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    return dict(order=order, count=count, start=start)


def _draw_multi(hm, config, rng, candidates):
    """Rows of ``n_events`` events of ``n_dipoles`` distinct (and separated) rows each."""
    lo, hi = config.n_dipoles
    hemi = config.hemi
    if hi > len(candidates):
        raise ValueError(
            f"n_dipoles={hi} is more than the {len(candidates)} available rows of hemi={hemi!r}."
        )
    counts = rng.integers(lo, hi + 1, size=config.n_events)
    sep = config.min_separation_mm
    if not sep:
        chosen = [rng.choice(candidates, size=int(k), replace=False) for k in counts]
        return np.concatenate(chosen), counts
    pos = hm.positions[candidates]
    tree = cKDTree(pos)
    chosen = []
    for k in counts:
        picks = _draw_separated(tree, pos, int(k), sep / 1000.0, rng)
        if picks is None:
            raise ValueError(
                f"Could not place {k} dipoles at least min_separation_mm={sep:g} mm apart "
                f"among the {len(candidates)} rows of hemi={hemi!r} "
                f"({_MAX_PLACEMENT_ATTEMPTS} attempts); lower min_separation_mm or n_dipoles."
            )
        chosen.append(candidates[picks])
    return np.concatenate(chosen), counts


def _draw_separated(tree, pos, k, sep_m, rng):
    """Indices of ``k`` points at least ``sep_m`` apart, or None after every attempt failed."""
    for _ in range(_MAX_PLACEMENT_ATTEMPTS):
        allowed = np.ones(len(pos), bool)
        picks = []
        for _ in range(k):
            free = np.flatnonzero(allowed)
            if len(free) == 0:
                break
            j = free[rng.integers(len(free))]
            picks.append(j)
            # strictly closer than sep is forbidden (the pick itself included)
            near = tree.query_ball_point(pos[j], np.nextafter(sep_m, 0))
            allowed[near] = False
            allowed[j] = False
        if len(picks) == k:
            return np.array(picks)
    return None


def _grow_patches(hm, hemi, seeds, radius) -> list[np.ndarray]:
    """Rows connected to each seed along mesh edges within ``radius`` (m) of it."""
    rows = hm.rows(hemi)
    adjacency = hm.adjacency(hemi).tocsr()
    local = np.full(hm.n_sources, -1, int)
    local[rows] = np.arange(len(rows))
    pos = hm.positions[rows]
    tree = cKDTree(pos)
    patches = []
    for seed in seeds:
        s = local[seed]
        near = np.asarray(tree.query_ball_point(pos[s], radius), int)
        near = np.union1d(near, [s])
        sub = adjacency[near][:, near]
        reached = csgraph.breadth_first_order(
            sub, int(np.searchsorted(near, s)), directed=False, return_predecessors=False
        )
        patches.append(np.sort(rows[near[reached]]))
    return patches
