"""napari dock widgets (private). Only the widget modules import Qt; ``_inputs`` does not."""
