"""Episode recording to zarr v3 and datasets for training (see docs/recorder.md)."""

from robot_stack.recorder.dataset import DatasetError, Episode, EpisodeDataset, augment
from robot_stack.recorder.store import SCHEMA_VERSION, StoreError
from robot_stack.recorder.writer import EpisodeRecorder, RecorderError

__all__ = ["DatasetError", "Episode", "EpisodeDataset", "EpisodeRecorder", "RecorderError", "SCHEMA_VERSION",
           "StoreError", "augment"]
