"""Screening candidates for the 30-D MNIST autoencoder of the Hinton 2006 reproduction.

A standalone plain-JAX loop (not aepca's), so that ideas aepca does not implement (input
augmentation by small random affine warps, decoupled weight decay, weight averaging) can be
screened in a few minutes before anything is built; ``drop`` is dropout on the decoder's hidden units. It mirrors aepca's best recipe:
784-1000-500-250-30, ELU, linear code, logistic output, cross-entropy, Adam with a
1-epoch warm-up and cosine decay, batch 128, Glorot-uniform weights, 55,000 training /
5,000 validation images. After every epoch it prints the summed squared error per image
on validation and test, for the weights and for their running average; ``refine=N``
then measures code refinement (N Adam steps on each test code through the decoder), and
``every=K`` every K epochs the refined error of the first 1,000 validation images (100 steps,
for the weights and for their running average).

    .venv/bin/python scripts/hinton2006_screen.py NAME [epochs=20] [lr=1e-3] [wd=0]
        [aug=0] [noise=0] [drop=0] [act=elu] [ema=0.999] [refine=0] [refine_lr=0.01] [every=0]
        [save=FILE.npz]

The log goes to stdout and to NAME.json in the working directory. Results: docs/hinton2006.md.
"""
import json, math, os, sys, time
import numpy as np
import jax
import jax.numpy as jnp
from aepca.data.mnist import load_mnist

# act=: the hidden units' activation.
ACTIVATIONS = {"elu": jax.nn.elu, "gelu": jax.nn.gelu, "silu": jax.nn.silu}

def main(name, epochs=20, hidden="1000,500,250", lr=1e-3, wd=0.0, aug=0.0, noise=0.0, batch=128,
         ema=0.999, loss="ce", seed=0, full=0, refine=0, refine_lr=1e-2, drop=0.0, act="elu", save="", every=0):
    epochs, batch, seed, full = int(epochs), int(batch), int(seed), int(full)
    lr, wd, aug, noise, ema = float(lr), float(wd), float(aug), float(noise), float(ema)
    refine_lr, drop = float(refine_lr), float(drop)
    hidden = [int(h) for h in hidden.split(",")]
    m = load_mnist()
    rng = np.random.default_rng(0)
    order = rng.permutation(60000)
    xtr_all = m.x_train
    if full:
        xtr, xval = xtr_all, xtr_all[order[55000:]]
    else:
        xtr, xval = xtr_all[order[:55000]], xtr_all[order[55000:]]
    xte = m.x_test
    sizes = [784] + hidden + [30] + hidden[::-1] + [784]
    key = jax.random.PRNGKey(seed)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        key, k = jax.random.split(key)
        lim = math.sqrt(6 / (a + b))
        params.append((jax.random.uniform(k, (a, b), minval=-lim, maxval=lim), jnp.zeros(b)))
    code_layer = len(hidden)

    def forward(p, x, key=None):
        h = x
        for i, (w, b) in enumerate(p):
            h = h @ w + b
            if i == len(p) - 1:
                return h  # logits
            if i != code_layer:
                h = ACTIVATIONS[act](h)
            if key is not None and i > code_layer:  # dropout on the decoder's hidden units, training only
                key, k = jax.random.split(key)
                h = h * jax.random.bernoulli(k, 1 - drop, h.shape) / (1 - drop)

    def lossf(p, x, t, key=None):
        z = forward(p, x, key)
        if loss == "ce":
            l = jnp.maximum(z, 0) - z * t + jnp.log1p(jnp.exp(-jnp.abs(z)))
        else:
            l = (jax.nn.sigmoid(z) - t) ** 2
        return jnp.mean(l)

    steps = math.ceil(len(xtr) / batch)
    total = steps * epochs
    warm = steps

    def lr_at(s):
        s = s.astype(jnp.float32)
        w = s / warm
        c = 0.5 * (1 + jnp.cos(jnp.pi * jnp.clip((s - warm) / max(total - warm, 1), 0, 1)))
        return lr * jnp.where(s < warm, w, c)

    # Small random affine warps (rotation, scale, shear, shift) by bilinear resampling.
    yy, xx = jnp.meshgrid(jnp.arange(28.0) - 13.5, jnp.arange(28.0) - 13.5, indexing="ij")

    def warp(img, k):
        k1, k2, k3, k4 = jax.random.split(k, 4)
        ang = jax.random.uniform(k1, (), minval=-1, maxval=1) * 0.15 * aug
        sc = 1 + jax.random.uniform(k2, (), minval=-1, maxval=1) * 0.1 * aug
        sh = jax.random.uniform(k3, (), minval=-1, maxval=1) * 0.15 * aug
        t = jax.random.uniform(k4, (2,), minval=-1, maxval=1) * 1.5 * aug
        ca, sa = jnp.cos(ang), jnp.sin(ang)
        sy = ( ca * yy + sa * xx) / sc + t[0] + 13.5
        sx = (-sa * yy + ca * xx + sh * yy) / sc + t[1] + 13.5
        out = jax.scipy.ndimage.map_coordinates(img.reshape(28, 28), [sy, sx], order=1, mode="constant")
        return out.reshape(784)

    grad = jax.value_and_grad(lossf)

    def step(carry, idx):
        p, m1, m2, e, s, k = carry
        xb = X[idx]
        k, ka, kn = jax.random.split(k, 3)
        if aug:
            xb = jax.vmap(warp)(xb, jax.random.split(ka, xb.shape[0]))
        inp = xb
        if noise:
            inp = xb * jax.random.bernoulli(kn, 1 - noise, xb.shape)
        l, g = grad(p, inp, xb, jax.random.fold_in(kn, 1) if drop else None)
        s = s + 1
        a = lr_at(s)
        m1 = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m1, g)
        m2 = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, m2, g)
        bc1, bc2 = 1 - 0.9 ** s, 1 - 0.999 ** s
        p = jax.tree.map(lambda w, m, v: w - a * (m / bc1) / (jnp.sqrt(v / bc2) + 1e-7) - a * wd * w, p, m1, m2)
        e = jax.tree.map(lambda ew, w: ema * ew + (1 - ema) * w, e, p)
        return (p, m1, m2, e, s, k), l

    X = jnp.asarray(xtr)

    @jax.jit
    def epoch(carry, idxs):
        return jax.lax.scan(step, carry, idxs)

    @jax.jit
    def sse(p, x):
        return jnp.sum((jax.nn.sigmoid(forward(p, x)) - x) ** 2)

    def err(p, x):
        return sum(float(sse(p, jnp.asarray(x[i:i + 5000]))) for i in range(0, len(x), 5000)) / len(x)

    zeros = jax.tree.map(jnp.zeros_like, params)
    carry = (params, zeros, zeros, params, jnp.zeros((), jnp.int32), jax.random.PRNGKey(seed + 1))
    log = dict(name=name, args=dict(epochs=epochs, hidden=hidden, lr=lr, wd=wd, aug=aug, noise=noise, drop=drop,
               batch=batch, ema=ema, loss=loss, full=full), epochs=[])
    t0 = time.perf_counter()
    for ep in range(epochs):
        perm = np.random.default_rng([seed, ep]).permutation(len(xtr))
        perm = np.concatenate([perm, perm[: steps * batch - len(perm)]]).reshape(steps, batch)
        carry, losses = epoch(carry, jnp.asarray(perm))
        p, e = carry[0], carry[3]
        row = dict(epoch=ep + 1, s=time.perf_counter() - t0, loss=float(jnp.mean(losses)),
                   val=err(p, xval), val_ema=err(e, xval), test=err(p, xte), test_ema=err(e, xte))
        if int(every) and (ep + 1) % int(every) == 0:
            r = refine_codes(p, code_layer, forward, xval[:1000], 100, loss, refine_lr, act, quiet=True)
            row["val_refined100"] = r["after"][-1]
            r = refine_codes(e, code_layer, forward, xval[:1000], 100, loss, refine_lr, act, quiet=True)
            row["val_ema_refined100"] = r["after"][-1]
        log["epochs"].append(row)
        print(name, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    p, e = carry[0], carry[3]
    log["train_sub"] = err(p, xtr[:10000]); log["train_sub_ema"] = err(e, xtr[:10000])
    print(name, "train", log["train_sub"], log["train_sub_ema"], flush=True)
    if save:
        np.savez(save, *[np.asarray(a) for wb in p for a in wb])
    if int(refine):
        log["refined"] = refine_codes(p, code_layer, forward, xte, int(refine), loss, refine_lr, act)
    
    with open(f"{name}.json", "w") as fh:
        json.dump(log, fh)

def refine_codes(p, code_layer, forward, x, steps, loss, lr=1e-2, act="elu", quiet=False):
    enc, dec = p[: code_layer + 1], p[code_layer + 1:]
    def encode(x):
        h = x
        for i, (w, b) in enumerate(enc):
            h = h @ w + b
            if i != code_layer:
                h = ACTIVATIONS[act](h)
        return h
    def decode(c):
        h = c
        for i, (w, b) in enumerate(dec):
            h = h @ w + b
            if i != len(dec) - 1:
                h = ACTIVATIONS[act](h)
        return h
    def obj(c, t):
        z = decode(c)
        if loss == "ce":
            l = jnp.maximum(z, 0) - z * t + jnp.log1p(jnp.exp(-jnp.abs(z)))
        else:
            l = (jax.nn.sigmoid(z) - t) ** 2
        return jnp.sum(l)
    g = jax.grad(obj)
    @jax.jit
    def run(x):
        c = encode(x)
        sse0 = jnp.sum((jax.nn.sigmoid(decode(c)) - x) ** 2)
        def step(carry, i):
            c, m, v = carry
            gr = g(c, x)
            m = 0.9 * m + 0.1 * gr; v = 0.999 * v + 0.001 * gr * gr
            c = c - lr * (m / (1 - 0.9 ** (i + 1))) / (jnp.sqrt(v / (1 - 0.999 ** (i + 1))) + 1e-8)
            return (c, m, v), jnp.sum((jax.nn.sigmoid(decode(c)) - x) ** 2)
        (c, _, _), curve = jax.lax.scan(step, (c, jnp.zeros_like(c), jnp.zeros_like(c)), jnp.arange(steps))
        return sse0, curve
    total0, curve = 0.0, 0.0
    for i in range(0, len(x), 2000):
        a, b = run(jnp.asarray(x[i:i + 2000]))
        total0 += float(a); curve = curve + np.asarray(b)
    out = {"before": total0 / len(x), "after": [float(v) / len(x) for v in curve]}
    if not quiet: print("refine before", out["before"], "after", [round(v, 3) for v in out["after"][9::10]], flush=True)
    return out


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")  # this program's process: JAX unless set
    kw = dict(a.split("=", 1) for a in sys.argv[2:])
    main(sys.argv[1], **kw)
