"""Shell occupancy and residence correlation (openmm_mlcg.analysis.residence)."""
import numpy as np
import pytest
from openmm import unit

from openmm_mlcg.analysis.residence import residence_correlation, shell_occupancy


def test_two_state_markov_has_the_known_correlation():
    # telegraph process per pair: on -> off with k_off, off -> on with k_on per frame
    rng = np.random.default_rng(0)
    k_on, k_off, F, P = 0.02, 0.05, 4000, 200
    p = k_on / (k_on + k_off)
    h = np.zeros((F, P), dtype=bool)
    h[0] = rng.random(P) < p
    for t in range(1, F):
        u = rng.random(P)
        h[t] = np.where(h[t - 1], u >= k_off, u < k_on)
    c = residence_correlation(h, max_lag=60)
    lag = np.arange(61)
    lam = 1 - k_on - k_off  # discrete-time two-state chain: exact (1 - k_on - k_off)^k
    expected = p + (1 - p) * lam ** lag
    assert c[0] == pytest.approx(1.0)
    np.testing.assert_allclose(c, expected, atol=0.02)
    # a pair that never leaves keeps C = 1; one that flips every frame drops to 0 at odd lags
    frozen = np.ones((50, 1), dtype=bool)
    assert np.allclose(residence_correlation(frozen), 1.0)
    flip = (np.arange(50) % 2 == 0)[:, None]
    assert residence_correlation(flip, max_lag=3)[1] == 0.0


def test_shell_occupancy_uses_the_minimum_image_and_units():
    box = np.eye(3) * 2.0
    # centre at x = 0.05, ligand A at x = 1.9 (0.15 nm away through the boundary), B at x = 0.5 (0.45 nm)
    x = np.array([[[0.05, 1.0, 1.0], [1.9, 1.0, 1.0], [0.5, 1.0, 1.0]],
                  [[0.05, 1.0, 1.0], [1.5, 1.0, 1.0], [0.2, 1.0, 1.0]]])
    occ = shell_occupancy(x, box, [0], [1, 2], 0.3 * unit.nanometer)
    assert occ.shape == (2, 1, 2)
    assert occ[:, 0].tolist() == [[True, False], [False, True]]
    # a bead listed as both centre and ligand is not its own ligand
    assert not shell_occupancy(x, box, [0], [0, 2], 0.3)[:, 0, 0].any()


def test_bad_input_names_the_argument():
    x = np.zeros((3, 4, 3))
    with pytest.raises(ValueError, match="box"):
        shell_occupancy(x, None, [0], [1], 0.3)
    with pytest.raises(ValueError, match="ligands"):
        shell_occupancy(x, np.eye(3) * 2, [0], [7], 0.3)
    with pytest.raises(ValueError, match="cutoff_nm"):
        shell_occupancy(x, np.eye(3) * 2, [0], [1], 1.5)
    with pytest.raises(ValueError, match="no ligand"):
        residence_correlation(np.zeros((5, 2), dtype=bool))
    with pytest.raises(ValueError, match="max_lag"):
        residence_correlation(np.ones((5, 2), dtype=bool), max_lag=9)
