"""The update rule and its inverse (shared by trainer and runtime), units and atomic writes."""
import numpy as np
import pytest
import torch
from openmm import unit

from openmm_mlcg.model import dynamics
from openmm_mlcg.generators import score_samplers as samplers
from openmm_mlcg.util.io_utils import atomic_write, sha256_arrays
from openmm_mlcg.util.units import to_array, to_float


def test_inverse_update_reproduces_trajectory():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(50, 7, 3)), axis=0)
    # rolling the update forward from the inverse's (v, a) reproduces every frame
    pos, vel = x[1], x[1] - x[0]
    for t in range(1, 49):
        v, a = dynamics.inverse_update(x[t - 1], x[t], x[t + 1])
        np.testing.assert_allclose(v, vel, atol=1e-9)
        pos, vel = dynamics.update(pos, vel, a)
        np.testing.assert_allclose(pos, x[t + 1], atol=1e-9)


def test_history_velocities_match_inverse():
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    hv = dynamics.history_velocities(x)
    assert hv.shape == (5, 4, 3)
    v, _ = dynamics.inverse_update(x[2], x[3], x[4])
    torch.testing.assert_close(hv[2], v)


def test_geometric_sigmas():
    s = dynamics.geometric_sigmas(1.0, 0.001, 20)
    assert s.shape == (20,)
    assert s[0].item() == pytest.approx(1.0) and s[-1].item() == pytest.approx(0.001)
    ratios = s[:-1] / s[1:]
    torch.testing.assert_close(ratios, torch.full_like(ratios, ratios[0].item()))
    with pytest.raises(ValueError, match="sigma_max"):
        dynamics.geometric_sigmas(0.01, 1.0, 5)
    with pytest.raises(ValueError, match="n_levels"):
        dynamics.geometric_sigmas(1.0, 0.1, 0)


def test_annealed_langevin_zero_steps_is_identity_and_bad_args():
    x0 = torch.randn(5, 3)
    out = samplers.annealed_langevin(lambda x, sigma: -x, x0, [1.0, 0.1], 0, 1e-3)
    torch.testing.assert_close(out, x0)
    with pytest.raises(ValueError, match="step_size"):
        samplers.annealed_langevin(lambda x, sigma: -x, x0, [1.0], 1, -1.0)


def test_units_conversion_and_errors():
    assert to_float(2 * unit.angstrom, unit.nanometer, "cutoff") == pytest.approx(0.2)
    assert to_float(0.3, unit.nanometer, "cutoff") == 0.3
    with pytest.raises(ValueError, match="cutoff"):
        to_float(1 * unit.picosecond, unit.nanometer, "cutoff")
    arr = to_array([[1.0, 2.0, 3.0]] * unit.angstrom, unit.nanometer, "positions")
    np.testing.assert_allclose(arr, [[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="positions.*NaN"):
        to_array([[np.nan, 0, 0]], unit.nanometer, "positions")


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "f.txt"
    with atomic_write(p, "w") as fh:
        fh.write("old")
    with pytest.raises(RuntimeError):
        with atomic_write(p, "w") as fh:
            fh.write("new")
            raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert list(tmp_path.iterdir()) == [p]
    with pytest.raises(FileNotFoundError, match="path"):
        with atomic_write(tmp_path / "missing" / "x", "w"):
            pass


def test_hash_depends_on_content_and_dtype():
    a = np.arange(4)
    assert sha256_arrays(a) == sha256_arrays(a.copy())
    assert sha256_arrays(a) != sha256_arrays(a.astype(np.float64))
    assert sha256_arrays(a, extra="x") != sha256_arrays(a)
