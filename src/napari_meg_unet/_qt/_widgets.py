"""npe2 ``widgets`` entry points: one dock widget class per step of the workflow, and View."""

from ._evaluate import EvaluateWidget
from ._headmodel import HeadModelWidget
from ._inverse import InverseWidget
from ._predict import PredictWidget
from ._simulate import SimulateWidget
from ._train import TrainWidget
from ._view import ViewWidget

__all__ = [
    "EvaluateWidget",
    "HeadModelWidget",
    "InverseWidget",
    "PredictWidget",
    "SimulateWidget",
    "TrainWidget",
    "ViewWidget",
]
