"""Hand-written layers that mix elements: dense, layer-norm, batch-norm, softmax,
log-softmax, cross-entropy and attention, each a NumPy forward and a backward with its
usual slips (``slip=`` names one; None is the correct backward).

Written independently of gradcheck's ops and checker, the way one writes backprop by hand.
"""

from __future__ import annotations

import numpy as np

def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ============================================================================ dense

def dense_f(x, w, b):
    return x @ w + b


def dense_vjp(g, x, w, b, slip=None):
    dx = g @ w.T
    dw = x.T @ g
    db = g.sum(0)
    if slip == "dw_transposed":        # PyTorch's (out, in) layout: g.T @ x
        dw = g.T @ x
    if slip == "db_mean":
        db = g.mean(0)
    if slip == "dw_loop_from_1":       # for n in range(1, N): dw += outer(x[n], g[n])
        dw = sum(np.outer(x[n], g[n]) for n in range(1, x.shape[0]))
    return dx, dw, db


def dense_relu_f(x, w):
    return np.maximum(x @ w, 0)


def dense_relu_vjp(g, x, w, slip=None):
    z = x @ w
    d = g if slip == "relu_mask_missing" else g * (z > 0)
    return d @ w.T, x.T @ d


def mse_l2_f(w, x, t, lam=0.03):
    r = x @ w - t
    return np.asarray(np.mean(r * r) + 0.5 * lam * np.sum(w * w))


def mse_l2_vjp(g, w, x, t, lam=0.03, slip=None):
    r = x @ w - t
    dr = 2 * r / r.size
    if slip == "two_missing":
        dr = r / r.size
    if slip == "sign":                 # (t - y) where (y - t) belongs
        dr = -dr
    dw = x.T @ dr + (0 if slip == "decay_missing" else lam * w)
    # x and t are differentiated too: a gradient not returned (None) is a zero gradient
    return g * dw, g * (dr @ w.T), -g * dr


# ============================================================================ layer norm

LN_EPS = 1e-3


def layernorm_f(x, gamma, beta):
    mu = x.mean(1, keepdims=True)
    var = x.var(1, keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + LN_EPS) + beta


def layernorm_vjp(g, x, gamma, beta, slip=None):
    mu = x.mean(1, keepdims=True)
    var = x.var(1, keepdims=True)
    sigma = np.sqrt(var + LN_EPS)
    xhat = (x - mu) / sigma
    dxhat = g * gamma
    inv = 1 / np.sqrt(var) if slip == "eps_missing" else 1 / sigma
    m1 = dxhat.mean(1, keepdims=True)
    m2 = (dxhat * xhat).mean(1, keepdims=True)
    if slip == "mean_term_missing":
        m1 = 0
    if slip == "xhat_term_missing":
        m2 = 0
    if slip == "both_terms_missing":
        m1 = m2 = 0
    dx = inv * (dxhat - m1 - xhat * m2)
    dgamma = (g * xhat).sum(0)
    if slip == "dgamma_mean":
        dgamma = (g * xhat).mean(0)
    if slip == "dgamma_uses_x":
        dgamma = (g * x).sum(0)
    return dx, dgamma, g.sum(0)


# ============================================================================ batch norm

BN_EPS = 1e-3
BN_AXES = (0, 2, 3)


def batchnorm_f(x, gamma, beta):
    mu = x.mean(BN_AXES, keepdims=True)
    var = x.var(BN_AXES, keepdims=True)
    return gamma[:, None, None] * (x - mu) / np.sqrt(var + BN_EPS) + beta[:, None, None]


def batchnorm_vjp(g, x, gamma, beta, slip=None):
    mu = x.mean(BN_AXES, keepdims=True)
    var = x.var(BN_AXES, keepdims=True)
    sigma = np.sqrt(var + BN_EPS)
    xhat = (x - mu) / sigma
    dxhat = g * gamma[:, None, None]
    count = x.shape[0] if slip == "mean_over_batch_only" else x.size // x.shape[1]
    m1 = dxhat.sum(BN_AXES, keepdims=True) / count
    m2 = (dxhat * xhat).sum(BN_AXES, keepdims=True) / count
    if slip == "both_terms_missing":
        m1 = m2 = 0
    if slip == "xhat_term_missing":
        m2 = 0
    inv = 1 / np.sqrt(var) if slip == "eps_missing" else 1 / sigma
    dx = inv * (dxhat - m1 - xhat * m2)
    dbeta = g.mean(BN_AXES) if slip == "dbeta_mean" else g.sum(BN_AXES)
    return dx, (g * xhat).sum(BN_AXES), dbeta


# ============================================================================ softmax

def softmax_f(x, temperature=1.0):
    return softmax(x / temperature, axis=1)


def softmax_vjp(g, x, temperature=1.0, slip=None):
    p = softmax(x / temperature, axis=1)
    pg = (p * g).sum(1, keepdims=True)
    if slip == "rank_one_missing":
        return (p * g / temperature,)
    if slip == "rank_one_sign":
        return (p * (g + pg) / temperature,)
    if slip == "sum_over_wrong_axis":
        return (p * (g - (p * g).sum(0, keepdims=True)) / temperature,)
    if slip == "temperature_missing":
        return (p * (g - pg),)
    return (p * (g - pg) / temperature,)


def log_softmax_f(x):
    z = x - x.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def log_softmax_vjp(g, x, slip=None):
    p = softmax(x, axis=1)
    s = g.sum(1, keepdims=True)
    if slip == "p_term_missing":
        return (g.copy(),)
    if slip == "mean_for_p":
        return (g - s / x.shape[1],)
    if slip == "p_term_sign":
        return (g + p * s,)
    return (g - p * s,)


def cross_entropy_f(logits):
    """Per-sample cross-entropy, shape (N,), labels n mod K."""
    labels = np.arange(len(logits)) % logits.shape[1]
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(labels)), labels]


def cross_entropy_vjp(g, logits, slip=None):
    labels = np.arange(len(logits)) % logits.shape[1]
    p = softmax(logits, axis=1)
    onehot = np.eye(logits.shape[1])[labels]
    if slip == "ignores_g":            # the textbook "dlogits = p - y"
        return (p - onehot,)
    if slip == "divides_by_batch":
        return (g[:, None] * (p - onehot) / len(labels),)
    if slip == "g_summed":             # treats the incoming gradient as a scalar
        return (g.sum() * (p - onehot),)
    if slip == "clips_g":              # "gradient clipping" inside the backward
        return (np.clip(g, -1, 1)[:, None] * (p - onehot),)
    return (g[:, None] * (p - onehot),)


# ============================================================================ attention

def attention_f(q, k, v):
    d = q.shape[-1]
    p = softmax(q @ k.T / np.sqrt(d), axis=1)
    return p @ v


def attention_vjp(g, q, k, v, slip=None):
    d = q.shape[-1]
    scale = 1 / np.sqrt(d)
    p = softmax(q @ k.T * scale, axis=1)
    dv = p.T @ g
    if slip == "dv_not_transposed":
        dv = p @ g
    dp = g @ v.T
    ds = p * (dp - (p * dp).sum(1, keepdims=True))
    if slip == "softmax_rank_one_missing":
        ds = p * dp
    if slip == "scale_missing":
        scale = 1.0
    if slip == "scale_twice":
        scale = 1 / d
    dq = ds @ k * scale
    dk = ds.T @ q * scale
    return dq, dk, dv


def mha_f(q, k, v):
    """Multi-head attention on (B, T, H, dh) inputs; heads moved to axis 1 inside."""
    qh, kh, vh = (a.transpose(0, 2, 1, 3) for a in (q, k, v))
    s = qh @ kh.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
    return (softmax(s, axis=-1) @ vh).transpose(0, 2, 1, 3)


def mha_vjp(g, q, k, v, slip=None):
    qh, kh, vh = (a.transpose(0, 2, 1, 3) for a in (q, k, v))
    scale = 1 / np.sqrt(q.shape[-1])
    p = softmax(qh @ kh.transpose(0, 1, 3, 2) * scale, axis=-1)
    gh = g.transpose(0, 2, 1, 3)
    dvh = p.transpose(0, 1, 3, 2) @ gh
    dp = gh @ vh.transpose(0, 1, 3, 2)
    ds = p * (dp - (p * dp).sum(-1, keepdims=True))
    dqh = ds @ kh * scale
    dkh = ds.transpose(0, 1, 3, 2) @ qh * scale
    if slip == "heads_reshaped_back":  # .reshape where .transpose(0, 2, 1, 3) belongs
        return dqh.reshape(q.shape), dkh.transpose(0, 2, 1, 3), dvh.transpose(0, 2, 1, 3)
    return tuple(a.transpose(0, 2, 1, 3) for a in (dqh, dkh, dvh))
