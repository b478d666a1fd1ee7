"""The constant-velocity Kalman filter FairMOT tracks boxes with (DeepSORT's): the state is
the box centre, aspect ratio (w / h) and height, with their velocities; every noise scales
with the height, except the aspect ratio's, which is fixed. Float64 throughout, vectorised
over tracks where FairMOT predicts them together."""
import numpy as np
import scipy.linalg

# The 0.95 quantile of the chi-square distribution with 4 degrees of freedom: the gate on
# the squared Mahalanobis distance of a 4-number measurement (x, y, a, h).
GATE_4DOF = 9.4877

_POSITION_WEIGHT = 1.0 / 20
_VELOCITY_WEIGHT = 1.0 / 160
_NDIM = 4

# State transition (one frame) and observation matrices.
_MOTION = np.eye(2 * _NDIM) + np.eye(2 * _NDIM, k=_NDIM)
_OBSERVE = np.eye(_NDIM, 2 * _NDIM)


def _noise(heights, position_weight, velocity_weight, aspect, aspect_velocity):
    """Diagonal variances (N, 8) for tracks of ``heights`` (N,)."""
    h = np.asarray(heights, np.float64)
    ones = np.ones_like(h)
    std = np.stack([position_weight * h, position_weight * h, aspect * ones,
                    position_weight * h, velocity_weight * h, velocity_weight * h,
                    aspect_velocity * ones, velocity_weight * h], axis=-1)
    return np.square(std)


def initiate(xyah):
    """A new track's (mean (8,), covariance (8, 8)) from its first box, at rest."""
    xyah = np.asarray(xyah, np.float64)
    mean = np.concatenate([xyah, np.zeros(_NDIM)])
    variances = _noise(xyah[3], 2 * _POSITION_WEIGHT, 10 * _VELOCITY_WEIGHT, 1e-2, 1e-5)
    return mean, np.diag(variances)


def predict(means, covariances):
    """One frame ahead for N tracks at once: (N, 8), (N, 8, 8) -> the same shapes."""
    means = np.asarray(means, np.float64)
    process = _noise(means[:, 3], _POSITION_WEIGHT, _VELOCITY_WEIGHT, 1e-2, 1e-5)
    predicted = means @ _MOTION.T
    spread = np.matmul(np.matmul(_MOTION, covariances), _MOTION.T)
    idx = np.arange(2 * _NDIM)
    spread[:, idx, idx] += process
    return predicted, spread


def _projected(mean, covariance):
    """The state in measurement space, with the measurement noise added."""
    noise = np.diag(np.square([_POSITION_WEIGHT * mean[3], _POSITION_WEIGHT * mean[3], 1e-1,
                               _POSITION_WEIGHT * mean[3]]))
    return _OBSERVE @ mean, _OBSERVE @ covariance @ _OBSERVE.T + noise


def update(mean, covariance, xyah):
    """One track corrected by a measured box: the new (mean, covariance)."""
    projected_mean, projected_cov = _projected(mean, covariance)
    factor = scipy.linalg.cho_factor(projected_cov, lower=True, check_finite=False)
    gain = scipy.linalg.cho_solve(factor, (covariance @ _OBSERVE.T).T, check_finite=False).T
    innovation = np.asarray(xyah, np.float64) - projected_mean
    new_mean = mean + innovation @ gain.T
    new_covariance = covariance - gain @ projected_cov @ gain.T
    return new_mean, new_covariance


def mahalanobis_squared(means, covariances, measurements):
    """Squared Mahalanobis distances (T, M) of measured boxes (M, 4) from each of T tracks
    ((T, 8) means, (T, 8, 8) covariances), all tracks at once: each track's projected
    covariance factored (Cholesky) and the offsets solved against the factor."""
    means = np.asarray(means, np.float64)
    covariances = np.asarray(covariances, np.float64)
    heights = means[:, 3]
    noise = np.square(np.stack([_POSITION_WEIGHT * heights, _POSITION_WEIGHT * heights,
                                np.full_like(heights, 1e-1), _POSITION_WEIGHT * heights], -1))
    projected = covariances[:, :_NDIM, :_NDIM].copy()
    idx = np.arange(_NDIM)
    projected[:, idx, idx] += noise
    lower = np.linalg.cholesky(projected)
    offsets = np.asarray(measurements, np.float64)[None, :, :] - means[:, None, :_NDIM]
    z = np.linalg.solve(lower, offsets.transpose(0, 2, 1))
    return np.sum(z * z, axis=1)
