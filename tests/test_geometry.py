"""openmm_mlcg.util.geometry: box validation, minimum image (numpy == torch == 27-image search), wrap, unwrap."""
import itertools

import numpy as np
import pytest
import torch

from openmm_mlcg.util.geometry import as_box_frames, check_box, is_reduced, minimum_image, unwrap_in_time, wrap

REDUCED = np.array([[3.0, 0, 0], [1.2, 3.2, 0], [-1.0, 1.4, 3.3]])
SHEARED = np.array([[3.0, 0, 0], [3.0, 3.0, 0], [0.0, 0.0, 3.0]])   # same lattice as a 3 nm cube, not reduced


def _shortest_image(d, box):
    shifts = np.array(list(itertools.product(range(-3, 4), repeat=3)), dtype=float) @ box
    cand = d[:, None, :] + shifts[None]
    return cand[np.arange(len(d)), np.argmin((cand ** 2).sum(-1), 1)]


def test_check_box_accepts_reduced_and_names_what_is_wrong():
    np.testing.assert_array_equal(check_box(REDUCED), REDUCED)
    np.testing.assert_array_equal(check_box(torch.tensor(REDUCED, dtype=torch.float32), cutoff_nm=1.2),
                                  REDUCED.astype(np.float32))
    with pytest.raises(ValueError, match=r"my_box: expected \(3, 3\)"):
        check_box(np.eye(2), "my_box")
    with pytest.raises(ValueError, match="lower-triangular"):
        check_box([[3.0, 0.5, 0], [0, 3, 0], [0, 0, 3]])
    with pytest.raises(ValueError, match="not a reduced"):
        check_box(SHEARED)
    with pytest.raises(ValueError, match="positive"):
        check_box(np.diag([3.0, -3.0, 3.0]))
    with pytest.raises(ValueError, match="finite"):
        check_box(np.diag([3.0, np.nan, 3.0]))
    with pytest.raises(ValueError, match="cutoff_nm"):
        check_box(REDUCED, cutoff_nm=1.6)


def test_as_box_frames_shapes():
    assert as_box_frames(None, 4) is None
    np.testing.assert_array_equal(as_box_frames([2.0, 3.0, 4.0], 5)[3], np.diag([2.0, 3.0, 4.0]))
    assert as_box_frames(REDUCED, 3).shape == (3, 3, 3)      # (3, 3) is one box even for 3 frames
    np.testing.assert_array_equal(as_box_frames(REDUCED, 3)[2], REDUCED)
    with pytest.raises(ValueError, match="shape"):
        as_box_frames(np.zeros((2, 3, 3)), 5)


@pytest.mark.parametrize("box", [REDUCED, np.diag([2.5, 3.0, 4.0])])
def test_minimum_image_numpy_torch_and_exact(box):
    rng = np.random.default_rng(0)
    d = rng.uniform(-10, 10, (500, 3))
    got = minimum_image(d, box)
    # shortest image wherever it is shorter than half the smallest width
    ref = _shortest_image(d, box)
    short = np.linalg.norm(ref, axis=1) < 0.5 * min(np.diag(box))
    assert short.sum() > 20
    np.testing.assert_allclose(got[short], ref[short], atol=1e-12)
    # always the same lattice point as d
    frac = (got - d) @ np.linalg.inv(box)
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)
    t = minimum_image(torch.tensor(d), torch.tensor(box))
    np.testing.assert_allclose(t.numpy(), got, atol=1e-12)


def test_minimum_image_non_reduced_box_is_shortest_and_torch_grad():
    rng = np.random.default_rng(1)
    d = rng.uniform(-6, 6, (300, 3))
    assert not is_reduced(SHEARED)
    cube = d - 3.0 * np.round(d / 3.0)                       # SHEARED spans the lattice of a 3 nm cube
    np.testing.assert_allclose(np.linalg.norm(minimum_image(d, SHEARED), axis=1), np.linalg.norm(cube, axis=1),
                               atol=1e-12)
    x = torch.tensor(d, requires_grad=True)
    minimum_image(x, torch.tensor(REDUCED)).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))             # shifts are piecewise constant


def test_wrap_is_an_image_inside_the_brick():
    rng = np.random.default_rng(2)
    x = rng.uniform(-20, 20, (4, 50, 3))
    w = wrap(x, REDUCED)
    assert np.all(w >= 0) and np.all(w < np.diag(REDUCED))
    frac = (w - x) @ np.linalg.inv(REDUCED)
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)
    np.testing.assert_allclose(wrap(torch.tensor(x), torch.tensor(REDUCED)).numpy(), w, atol=1e-12)


def test_unwrap_in_time_recovers_continuous_paths():
    rng = np.random.default_rng(3)
    steps = rng.normal(0, 0.2, (40, 30, 3))
    true = np.cumsum(steps, 0) + 1.5
    boxes = as_box_frames(REDUCED, 40)
    got = unwrap_in_time(wrap(true, REDUCED), boxes)
    frac0 = (got[0] - true[0]) @ np.linalg.inv(REDUCED)
    np.testing.assert_allclose(got - got[0], true - true[0], atol=1e-9)     # same path up to one lattice shift
    np.testing.assert_allclose(frac0, np.round(frac0), atol=1e-9)
    # continuing from the last frame of a previous chunk: no jump at the seam
    nxt = unwrap_in_time(wrap(true[20:], REDUCED), boxes[20:], previous=true[19])
    np.testing.assert_allclose(nxt, true[20:], atol=1e-9)
