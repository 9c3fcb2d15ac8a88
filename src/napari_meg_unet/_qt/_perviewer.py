"""One helper object per napari viewer (the layer queue, the cortex controller)."""

from __future__ import annotations

import weakref


class PerViewer:
    """``per_viewer(viewer)``: the object ``factory(viewer)`` made on first use for that viewer.

    Weakly keyed, so a closed viewer is not kept alive by its helper objects.
    """

    def __init__(self, factory, doc: str):
        self._factory = factory
        self._objects: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.__doc__ = doc

    def __call__(self, viewer):
        key = getattr(viewer, "__wrapped__", viewer)  # the viewer behind napari's public proxy
        obj = self._objects.get(key)
        if obj is None:
            obj = self._objects[key] = self._factory(key)
        return obj
