"""The window rule, defined once (numpy only).

A window is the last `WINDOW_FRAMES` rendered frames of one episode, oldest first, ending at the current step.
At the start of an episode there is not enough history: the episode's first frame fills the missing slots.
So the window ending at step t (t = 0, 1, ...) holds frames max(0, t-7), ..., t:

    t = 0  ->  [f0 f0 f0 f0 f0 f0 f0 f0]
    t = 3  ->  [f0 f0 f0 f0 f0 f1 f2 f3]
    t = 9  ->  [f2 f3 f4 f5 f6 f7 f8 f9]

The rule lives in the SDK package because it is part of the wire contract: a frame stream (the encoder keeps each
env's last frames and the client sends only the newest one) must give the same embeddings as `POST /encode` of the
full windows, and the client must be able to rebuild full windows itself when a stream is lost. The live env
wrapper, the encoder's dataset job, the encoder's streams and the SDK all use the functions below.

Shapes: frames (T, H, W, 3) uint8; windows (B, WINDOW_FRAMES, H, W, 3) uint8.
"""

from __future__ import annotations

import numpy as np

WINDOW_FRAMES = 8  # the last 8 rendered frames make one window (the original study's protocol)


def window_index(t: int | np.ndarray, size: int = WINDOW_FRAMES) -> np.ndarray:
    """Frame indices of the windows ending at steps t: shape (..., size); the episode's first frame pads the start."""
    return np.clip(np.asarray(t)[..., None] + np.arange(-size + 1, 1), 0, None)


def window_at(frames: np.ndarray, t: int, size: int = WINDOW_FRAMES) -> np.ndarray:
    """The window ending at step t of one episode's frames (T, H, W, 3) -> (size, H, W, 3)."""
    return frames[window_index(t, size)]


def episode_windows(frames: np.ndarray, size: int = WINDOW_FRAMES) -> np.ndarray:
    """All windows of one episode: (T, H, W, 3) -> (T, size, H, W, 3), as one gather."""
    return frames[window_index(np.arange(frames.shape[0]), size)]


def chunk_windows(frames: np.ndarray, start: int, stop: int, size: int = WINDOW_FRAMES) -> np.ndarray:
    """Windows ending at steps start..stop-1 of one episode's frames: (stop-start, size, H, W, 3).

    Gathers only the history those windows need, so an episode can be embedded chunk by chunk without
    materialising all T windows at once (T x 1.5 MB at 256x256).
    """
    lo = max(0, start - size + 1)
    return episode_windows(frames[lo:stop], size)[start - lo :]


class WindowBuffer:
    """The last `size` frames of each of N envs, as one (N, size, H, W, 3) array.

    `push(frames, reset)` appends each env's newest frame; an env listed in `reset` starts a new episode, so its
    frame fills its whole window. The result equals `window_at(episode_frames, t)` for every env and step.
    """

    def __init__(self, envs: int, height: int, width: int, size: int = WINDOW_FRAMES):
        self.size = size
        self.windows = np.zeros((envs, size, height, width, 3), np.uint8)
        self.started = np.zeros(envs, bool)  # False until an env's first frame arrives (then it counts as a reset)

    def push(self, frames: np.ndarray, reset: np.ndarray | list[int] | None = None) -> np.ndarray:
        """frames: (N, H, W, 3) uint8, the newest frame of each env -> the N current windows."""
        self.windows = advance(self.windows, frames, self.reset_mask(reset))
        self.started[:] = True
        return self.windows

    def reset_mask(self, reset: np.ndarray | list[int] | None) -> np.ndarray:
        """(N,) bool: the envs listed in `reset`, and every env that has not received a frame yet."""
        mask = ~self.started
        if reset is not None and len(reset):
            mask[np.asarray(reset, dtype=np.int64)] = True
        return mask


def advance(windows, frames, reset_mask):
    """The windows after one step, as a new array: each shifted one frame left with the newest frame last; an env in
    `reset_mask` gets its frame in every slot (its episode starts there).

    windows: (N, T, H, W, 3); frames: (N, H, W, 3); reset_mask: (N,) bool. numpy arrays or torch tensors alike (only
    indexing: one gather makes the new array), so the encoder's streams apply the same rule on the model's device.
    """
    t = windows.shape[1]
    new = windows[:, [*range(1, t), t - 1]]  # a copy: slots 1..T-1, then the last slot again (overwritten below)
    new[:, -1] = frames
    idx = np.flatnonzero(np.asarray(reset_mask))
    if len(idx):
        new[idx] = frames[idx][:, None]
    return new
