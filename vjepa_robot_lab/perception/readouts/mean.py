"""mean: the MLP on one (D,) vector per window -- the mean-pooled embedding, or a state / random vector, or the
pixels' own conv encoder output. The source is read as it is: no wrapper, no network, nothing refused."""

from __future__ import annotations

from vjepa_robot_client.contract import Pooling, Readout
from vjepa_robot_lab.perception.readouts._registry import ReadoutKind, register


class MeanReadout(ReadoutKind):
    name = Readout.mean.value
    pooling = Pooling.mean
    reads_pixels = True  # features 'pixels' train their conv encoder with the MLP: its output is read as it is


MEAN = register(MeanReadout())
