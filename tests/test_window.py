"""The window rule (vjepa_robot_client.window): one definition, used by the env, the dataset job and streams."""

import numpy as np

from vjepa_robot_client.window import (
    WINDOW_FRAMES,
    WindowBuffer,
    chunk_windows,
    episode_windows,
    window_at,
    window_index,
)


def _episode(T, h=4, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, h, w, 3), dtype=np.uint8)


def test_index_pads_with_first_frame():
    assert window_index(0).tolist() == [0] * 8
    assert window_index(3).tolist() == [0, 0, 0, 0, 0, 1, 2, 3]
    assert window_index(9).tolist() == [2, 3, 4, 5, 6, 7, 8, 9]
    assert WINDOW_FRAMES == 8


def test_chunks_equal_whole_episode():
    frames = _episode(37)
    whole = episode_windows(frames)
    for start, stop in [(0, 5), (5, 13), (13, 37), (30, 31)]:
        assert np.array_equal(chunk_windows(frames, start, stop), whole[start:stop])


def test_buffer_equals_gather_across_resets_and_long_episodes():
    # three envs with episodes of different lengths, restarting at different steps
    lengths = [(30, 4, 17), (3, 40, 8), (50, 2, 2)]
    eps = [[_episode(L, seed=10 * i + j) for j, L in enumerate(ls)] for i, ls in enumerate(lengths)]
    streams = []  # per env: list of (frame, is_reset, expected_window)
    for env_eps in eps:
        s = []
        for ep in env_eps:
            wins = episode_windows(ep)
            s += [(ep[t], t == 0, wins[t]) for t in range(len(ep))]
        streams.append(s)
    n = min(len(s) for s in streams)
    buf = WindowBuffer(3, 4, 5)
    for k in range(n):
        frames = np.stack([s[k][0] for s in streams])
        reset = [i for i, s in enumerate(streams) if s[k][1]]
        got = buf.push(frames, reset)
        for i, s in enumerate(streams):
            assert np.array_equal(got[i], s[k][2]), (i, k)
    assert np.array_equal(window_at(eps[0][0], 12), episode_windows(eps[0][0])[12])
