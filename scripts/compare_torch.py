#!/usr/bin/env python3
"""flaxpp's gMLP against the PyTorch reference, float32 against float64 (scripts/compare_torch).

Run by scripts/compare_torch, which sets FLAXPP (the flaxpp binary), TORCH_GMLP
(../shared/bench/torch_gmlp.py) and WORK (a scratch directory). Exits 1 if any case is outside
its limits.
"""
import json, os, subprocess, sys
import numpy as np

flaxpp, torch_gmlp, work = os.environ["FLAXPP"], os.environ["TORCH_GMLP"], os.environ["WORK"]
rng = np.random.default_rng(0)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"compare_torch: failed: {' '.join(cmd)}\n{r.stdout}{r.stderr}")


def leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from leaves(v, f"{prefix}/{k}" if prefix else k)
    else:
        yield prefix, np.asarray(tree, dtype=np.float64)


def perturbed(src, dst):
    """Moves LayerNorm scales and all biases off their constant init and gives spatial_weights
    O(0.3) entries (their 1e-3/n init hides token mixing), as torch_gmlp's self-test does."""
    def walk(t, name=""):
        if isinstance(t, dict):
            return {k: walk(v, k) for k, v in t.items()}
        a = np.asarray(t, dtype=np.float64)
        if name == "spatial_weights":
            a = 0.3 * rng.standard_normal(a.shape)
        elif name in ("bias", "scale", "spatial_biases"):
            a = a + 0.1 * rng.standard_normal(a.shape)
        return a.astype(np.float32).tolist()
    with open(src) as f:
        tree = json.load(f)
    with open(dst, "w") as f:
        json.dump(walk(tree), f)


# name, model flags, tokens shape, causal, perturb, params extension
V = 256
spatial = ["--num-tokens", str(V), "--dim", "32", "--depth", "2", "--seq-len", "16"]
original = ["--num-tokens", str(V), "--dim", "32", "--depth", "2", "--attn-dim", "16"]
cases = [
    ("spatial causal, init params", spatial, (3, 16), True, False, "json"),
    ("spatial causal, init params (.msgpack)", spatial, (3, 16), True, False, "msgpack"),
    ("spatial causal, perturbed", spatial, (3, 16), True, True, "json"),
    ("spatial causal, perturbed, prefix L=11", spatial, (2, 11), True, True, "json"),
    ("spatial non-causal, perturbed", spatial, (3, 16), False, True, "json"),
    ("original + attn, init params, (L,)", original, (16,), True, False, "json"),
    ("original + attn, perturbed, (L,)", original, (16,), True, True, "json"),
    ("original + attn non-causal, perturbed, (L,)", original, (16,), False, True, "json"),
]
# float32 (flaxpp) against float64 (torch): a few float32 ulps per operation, amplified by a
# couple of LayerNorms. Limits relative to the largest reference magnitude of each array.
LIMIT = {"logits": 1e-5, "loss": 1e-6, "grads": 1e-4}
failed = False
print(f"{'case':<46} {'logits abs':>10} {'rel':>8} {'loss abs':>9} {'grads abs':>10} {'rel':>8}  worst grad leaf")
for i, (name, flags, shape, causal, perturb, ext) in enumerate(cases):
    params = f"{work}/p{i}.{ext}"
    run([flaxpp, "init", "gmlp", *flags, "--seed", str(i), "--out", params,
         *([] if causal else ["--no-causal"])])
    if perturb:
        params2 = f"{work}/p{i}_perturbed.json"
        perturbed(params, params2)
        params = params2
    tokens = f"{work}/t{i}.json"
    with open(tokens, "w") as f:
        json.dump(rng.integers(0, V, size=shape).tolist(), f)
    causal_flag = "--causal" if causal else "--no-causal"
    ours, ref = f"{work}/ours{i}.json", f"{work}/torch{i}.json"
    run([flaxpp, "apply", "gmlp", "--params", params, "--tokens", tokens, "--out", ours, "--grad", causal_flag])
    run([sys.executable, torch_gmlp, "--params", params, "--tokens", tokens, "--out", ref,
         "--dtype", "float64", causal_flag])
    with open(ours) as f:
        a = json.load(f)
    with open(ref) as f:
        b = json.load(f)
    la, lb = np.asarray(a["logits"]), np.asarray(b["logits"])
    if la.shape != lb.shape:
        sys.exit(f"compare_torch: {name}: logits shapes differ: {la.shape} vs {lb.shape}")
    l_abs = np.abs(la - lb).max()
    l_rel = l_abs / np.abs(lb).max()
    loss_abs = abs(a["loss"] - b["loss"])
    ga, gb = dict(leaves(a["grads"])), dict(leaves(b["grads"]))
    if set(ga) != set(gb):
        sys.exit(f"compare_torch: {name}: gradient trees differ: {sorted(set(ga) ^ set(gb))}")
    g_abs, g_rel, worst = 0.0, 0.0, ""
    for k in gb:
        d = np.abs(ga[k] - gb[k]).max()
        r = d / max(np.abs(gb[k]).max(), 1e-30)
        g_abs = max(g_abs, d)
        if d > 1e-9 and r > g_rel:  # relative figures of ~0 gradients are noise
            g_rel, worst = r, k
    ok = l_rel <= LIMIT["logits"] and loss_abs <= LIMIT["loss"] * abs(b["loss"]) and g_rel <= LIMIT["grads"]
    failed |= not ok
    print(f"{name:<46} {l_abs:10.2e} {l_rel:8.1e} {loss_abs:9.1e} {g_abs:10.2e} {g_rel:8.1e}  {worst}"
          f"{'' if ok else '  FAIL'}")
print("rel: max |flaxpp - torch| / max |torch| over the array (grads: the worst leaf); "
      f"limits logits {LIMIT['logits']:g}, loss {LIMIT['loss']:g}, grads {LIMIT['grads']:g}")
print("compare_torch:", "FAILED" if failed else "PASSED")
sys.exit(1 if failed else 0)
