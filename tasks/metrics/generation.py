"""Sample-quality metrics on feature vectors: Fréchet distance (FID) and kernel distance (KID).

    fid(real_features, fake_features)         # ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))
    kid(real_features, fake_features)         # unbiased MMD^2, cubic polynomial kernel, subset mean

Both are defined on the features of a fixed network; the standard one is Inception-v3's pool
layer. Here the features come from whatever network the caller chooses (this package: a
classifier trained on the same dataset), so values are comparable only within one feature
network and one sample count (FID is biased upward for small samples; KID is not).

References:
- [GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium](https://arxiv.org/abs/1706.08500) (FID)
- [Demystifying MMD GANs](https://arxiv.org/abs/1801.01401) (KID)
"""

import numpy as np
from scipy import linalg


def statistics(features):
    """Mean (D,) and covariance (D, D) of features (N, D), in float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2. Received: shape={features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mean_a, covariance_a, mean_b, covariance_b, epsilon=1e-6):
    """The Fréchet (2-Wasserstein) distance between two Gaussians, squared.

    A near-singular product gets `epsilon` on the diagonals before the matrix square root (as in
    the reference implementation); the imaginary part left by rounding is dropped.
    """
    mean_a, mean_b = np.atleast_1d(mean_a), np.atleast_1d(mean_b)
    covariance_a, covariance_b = np.atleast_2d(covariance_a), np.atleast_2d(covariance_b)
    root, _ = linalg.sqrtm(covariance_a @ covariance_b, disp=False)
    if not np.isfinite(root).all():
        offset = np.eye(len(mean_a)) * epsilon
        root = linalg.sqrtm((covariance_a + offset) @ (covariance_b + offset))
    root = root.real
    difference = mean_a - mean_b
    value = difference @ difference + np.trace(covariance_a) + np.trace(covariance_b) - 2.0 * np.trace(root)
    return float(max(value, 0.0))


def fid(features_a, features_b):
    """Fréchet distance between Gaussians fitted to two sets of features (N, D) and (M, D)."""
    return frechet_distance(*statistics(features_a), *statistics(features_b))


def polynomial_kernel(x, y):
    """k(x, y) = (x . y / D + 1)^3, for rows of x (N, D) and y (M, D) → (N, M)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd_squared(x, y):
    """The unbiased estimate of MMD^2 between samples x (N, D) and y (M, D) with the cubic kernel."""
    n, m = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kid(features_a, features_b, num_subsets=20, subset_size=1000, seed=0):
    """Kernel Inception Distance: the mean of MMD^2 over random subsets of both feature sets.

    Args:
        features_a: array (N, D).
        features_b: array (M, D).
        num_subsets: int. Subsets drawn (without replacement within each). Defaults to 20.
        subset_size: int. Examples per subset, at most min(N, M). Defaults to 1000.
        seed: int. Seed of the subset draws. Defaults to 0.

    Returns:
        `(mean, standard deviation)` of the subsets' MMD^2 (the spread the KID paper reports). When
        both sets are no larger than `subset_size`, every subset is the whole of both: the mean is
        the one whole-set estimate and the standard deviation is None (undefined, not 0).
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError(f"KID needs at least 2 examples in each set. Received: {len(a)} and {len(b)}")
    if size == len(a) == len(b):
        return mmd_squared(a, b), None
    rng = np.random.default_rng(seed)
    values = [
        mmd_squared(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))
