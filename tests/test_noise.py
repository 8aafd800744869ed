"""Label-noise models: realized statistics against what was asked (known answers)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from noisescope.noise import CIFAR10_SEMANTIC_MAP, NOISE_MODELS, apply_noise
from noisescope.noise.pairflip import CIFAR10_CLASSES
from noisescope.noise.transition import check_transition

C = 10


def labels(n: int, c: int = C, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, c, (n,), generator=g)


def within_binomial(count: float, n: float, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1e-9


def check_consistency(y: torch.Tensor, r, c: int = C) -> None:
    """labels/mask/rate/transitions agree with an independent numpy recount."""
    yt, yo = y.numpy(), r.labels.numpy()
    assert r.labels.dtype == torch.int64 and r.mask.dtype == torch.bool
    np.testing.assert_array_equal(r.mask.numpy(), yt != yo)
    assert r.rate == pytest.approx(float(np.mean(yt != yo)))
    counts = np.zeros((c, c), dtype=np.int64)
    np.add.at(counts, (yt, yo), 1)
    np.testing.assert_array_equal(r.transitions.numpy(), counts)


# ---------------------------------------------------------------- symmetric


@pytest.mark.parametrize("rate", [0.1, 0.4, 0.8])
def test_symmetric_bernoulli_rate_and_cells_within_binomial_error(rate):
    n = 20000
    y = labels(n)
    r = apply_noise(y, C, "symmetric", rate, seed=1)
    check_consistency(y, r)
    # the realized flip rate is rate itself: a resampled label never stays on its true class
    assert within_binomial(r.mask.sum().item(), n, rate)
    sizes = torch.bincount(y, minlength=C)
    for i in range(C):
        assert within_binomial(r.transitions[i, i].item(), sizes[i].item(), 1 - rate)
        for j in range(C):
            if j != i:
                assert within_binomial(r.transitions[i, j].item(), sizes[i].item(), rate / (C - 1))


def test_symmetric_include_true_keeps_a_share_on_the_true_class():
    n, rate = 30000, 0.5
    y = labels(n)
    r = apply_noise(y, C, "symmetric", rate, seed=2, include_true=True)
    check_consistency(y, r)
    # flips happen at rate * (C-1)/C, not rate
    assert within_binomial(r.mask.sum().item(), n, rate * (C - 1) / C)
    assert not within_binomial(r.mask.sum().item(), n, rate)


@pytest.mark.parametrize("n,rate", [(1000, 0.4), (997, 0.33), (12345, 0.2), (50, 0.5)])
def test_symmetric_exact_flips_exactly_round_eta_n(n, rate):
    y = labels(n)
    r = apply_noise(y, C, "symmetric", rate, seed=3, exact=True)
    check_consistency(y, r)
    assert int(r.mask.sum()) == round(rate * n)
    sizes = torch.bincount(y, minlength=C).double()
    flips_per_class = r.transitions.sum(1) - r.transitions.diagonal()
    assert ((flips_per_class - rate * sizes).abs() < 1).all()
    for i in range(C):
        k = flips_per_class[i].item()
        off = np.delete(r.transitions[i].numpy(), i)
        assert np.all(np.abs(off - k / (C - 1)) < 1)  # spread as evenly as integers allow


def test_symmetric_exact_include_true():
    n, rate = 5000, 0.3
    y = labels(n)
    r = apply_noise(y, C, "symmetric", rate, seed=0, exact=True, include_true=True)
    assert int(r.mask.sum()) == round(rate * (C - 1) / C * n)


# ---------------------------------------------------------------- pairflip


def test_pairflip_default_map_is_next_class():
    n, rate = 20000, 0.3
    y = labels(n)
    r = apply_noise(y, C, "pairflip", rate, seed=0)
    check_consistency(y, r)
    flipped = r.mask
    assert torch.equal(r.labels[flipped], (y[flipped] + 1) % C)
    assert within_binomial(int(flipped.sum()), n, rate)


def test_pairflip_cifar10_semantic_map():
    names = list(CIFAR10_CLASSES)
    m = {names[s]: names[t] for s, t in CIFAR10_SEMANTIC_MAP.items()}
    assert m == {"truck": "automobile", "bird": "airplane", "deer": "horse",
                 "cat": "dog", "dog": "cat"}
    n, rate = 30000, 0.4
    y = labels(n)
    r = apply_noise(y, C, "pairflip", rate, seed=5, class_map="cifar10")
    check_consistency(y, r)
    for i in range(C):
        row = r.transitions[i]
        size = int(row.sum())
        if i in CIFAR10_SEMANTIC_MAP:
            j = CIFAR10_SEMANTIC_MAP[i]
            assert within_binomial(row[j].item(), size, rate)
            assert row.sum() == row[i] + row[j]  # no other target
        else:
            assert row[i] == size  # unmapped classes untouched


def test_pairflip_exact_and_dict_map_with_string_keys():
    y = labels(4000)
    r = apply_noise(y, C, "pairflip", 0.25, seed=0, exact=True, class_map={"0": 3, "1": 2})
    sizes = torch.bincount(y, minlength=C)
    assert int(r.mask.sum()) == round(0.25 * (sizes[0] + sizes[1]).item())
    assert abs(r.transitions[0, 3].item() - 0.25 * sizes[0].item()) < 1
    assert int(r.mask.sum()) == int(r.transitions[0, 3] + r.transitions[1, 2])


def test_pairflip_bad_map():
    y = labels(100)
    with pytest.raises(ValueError, match="to itself"):
        apply_noise(y, C, "pairflip", 0.2, class_map={1: 1})
    with pytest.raises(ValueError, match="outside"):
        apply_noise(y, C, "pairflip", 0.2, class_map={1: 10})
    with pytest.raises(ValueError, match="named maps"):
        apply_noise(y, C, "pairflip", 0.2, class_map="imagenet")


# ---------------------------------------------------------------- transition


def random_matrix(c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(c), size=c) * 0.5 + 0.5 * np.eye(c)
    p[0, 1:] = 0  # a row that never flips
    p[0, 0] = 1.0
    return p


def test_transition_empirical_rows_match_matrix():
    c, n = 5, 50000
    p = random_matrix(c, 0)
    y = labels(n, c)
    r = apply_noise(y, c, "transition", 0.0, seed=0, matrix=p.tolist())
    check_consistency(y, r, c)
    t = r.transitions.numpy()
    sizes = t.sum(1)
    for i in range(c):
        for j in range(c):
            assert within_binomial(t[i, j], sizes[i], p[i, j]), (i, j)
    assert (t[0, 1:] == 0).all()


def test_transition_exact_counts():
    c, n = 5, 7777
    p = random_matrix(c, 1)
    y = labels(n, c)
    r = apply_noise(y, c, "transition", 0.0, seed=0, matrix=p, exact=True)
    t = r.transitions.numpy()
    sizes = np.bincount(y.numpy(), minlength=c)
    expected = sizes[:, None] * p
    assert np.abs(t - expected).max() < 2
    assert np.abs(np.diag(t) - np.diag(expected)).max() < 1
    assert int(r.mask.sum()) == round(float((sizes * (1 - np.diag(p))).sum()))


def test_transition_validation_names_the_problem():
    with pytest.raises(ValueError, match="row 1 sums to 0.9"):
        check_transition([[1, 0], [0.5, 0.4]], 2)
    with pytest.raises(ValueError, match="negative"):
        check_transition([[1.2, -0.2], [0, 1]], 2)
    with pytest.raises(ValueError, match="must be 3 x 3"):
        check_transition(np.eye(2), 3)
    with pytest.raises(ValueError, match="takes no rate"):
        apply_noise(labels(10, 2), 2, "transition", 0.3, matrix=np.eye(2))


# ---------------------------------------------------------------- instance


def clustered(n: int = 3000, c: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (c, 6))
    y = rng.integers(0, c, n)
    x = centres[y] + rng.normal(0, 1.5, (n, 6))
    return torch.from_numpy(x), torch.from_numpy(y)


def numpy_margins(x: np.ndarray, y: np.ndarray, c: int):
    means = np.stack([x[y == k].mean(0) for k in range(c)])
    d = np.sqrt(((x[:, None, :] - means[None]) ** 2).sum(-1))
    own = d[np.arange(len(y)), y]
    d[np.arange(len(y)), y] = np.inf
    return d.argmin(1), d.min(1) - own


@pytest.mark.parametrize("temperature", [0.0, 0.5])
def test_instance_flips_to_nearest_other_mean_with_exact_count(temperature):
    x, y = clustered()
    c, rate = 4, 0.25
    r = apply_noise(y, c, "instance", rate, seed=0, x_ref=x, temperature=temperature)
    check_consistency(y, r, c)
    assert int(r.mask.sum()) == round(rate * len(y))
    target, margin = numpy_margins(x.numpy(), y.numpy(), c)
    m = r.mask.numpy()
    np.testing.assert_array_equal(r.labels.numpy()[m], target[m])
    if temperature == 0:  # strictly the lowest margins
        assert margin[m].max() <= margin[~m].min()
    else:  # preferred, not exclusive
        assert margin[m].mean() < margin[~m].mean() - 0.5 * margin.std()
        assert margin[m].max() > margin[~m].min()


def test_instance_needs_reference_embedding():
    x, y = clustered(100)
    with pytest.raises(ValueError, match="x_ref"):
        apply_noise(y, 4, "instance", 0.2)


# ---------------------------------------------------------------- file


def test_file_labels_all_formats(tmp_path):
    y = labels(200)
    noisy = y.clone()
    noisy[:30] = (noisy[:30] + 3) % C
    arr = noisy.numpy()
    np.save(tmp_path / "l.npy", arr)
    np.savez(tmp_path / "l.npz", aggre_label=arr, worse_label=y.numpy())
    (tmp_path / "l.json").write_text(json.dumps({"aggre_label": arr.tolist()}))
    (tmp_path / "l.csv").write_text("id,aggre\n" + "".join(f"{i},{v}\n" for i, v in enumerate(arr)))
    (tmp_path / "plain.csv").write_text("".join(f"{v}\n" for v in arr))
    for name, key in [("l.npy", None), ("l.npz", "aggre"), ("l.json", "aggre"),
                      ("l.csv", "aggre"), ("plain.csv", None)]:
        r = apply_noise(y, C, "file", path=str(tmp_path / name), key=key)
        assert torch.equal(r.labels, noisy), name
        check_consistency(y, r)
    r = apply_noise(y, C, "file", path=str(tmp_path / "l.npz"), key="worse")
    assert r.rate == 0.0
    # subset rows
    idx = torch.tensor([5, 0, 31, 29])
    r = apply_noise(y[idx], C, "file", path=str(tmp_path / "l.npy"), indices=idx)
    assert torch.equal(r.labels, noisy[idx])


def test_file_refuses_pickles_and_bad_shapes(tmp_path):
    y = labels(10)
    (tmp_path / "CIFAR-10_human.pt").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(ValueError, match="not a torch file"):
        apply_noise(y, C, "file", path=str(tmp_path / "CIFAR-10_human.pt"))
    np.save(tmp_path / "obj.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        apply_noise(y, C, "file", path=str(tmp_path / "obj.npy"))
    np.save(tmp_path / "short.npy", np.zeros(9, dtype=np.int64))
    with pytest.raises(ValueError, match="has 9 labels but the training set has 10"):
        apply_noise(y, C, "file", path=str(tmp_path / "short.npy"))
    np.savez(tmp_path / "two.npz", a=np.zeros(10), b=np.zeros(10))
    with pytest.raises(ValueError, match="choose one with key"):
        apply_noise(y, C, "file", path=str(tmp_path / "two.npz"))
    np.save(tmp_path / "big.npy", np.full(10, 12))
    with pytest.raises(ValueError, match=r"lie in \[0, 10\)"):
        apply_noise(y, C, "file", path=str(tmp_path / "big.npy"))


# ---------------------------------------------------------------- seeds and dispatch

SEEDED = [
    ("symmetric", {}),
    ("symmetric", {"exact": True}),
    ("symmetric", {"include_true": True}),
    ("pairflip", {}),
    ("pairflip", {"exact": True}),
    ("instance", {}),
]


@pytest.mark.parametrize("model,opts", SEEDED)
def test_same_seed_same_labels_different_seed_differs(model, opts):
    x, y = clustered(2000, c=C)
    a = apply_noise(y, C, model, 0.3, seed=7, x_ref=x, **opts)
    b = apply_noise(y, C, model, 0.3, seed=7, x_ref=x, **opts)
    d = apply_noise(y, C, model, 0.3, seed=8, x_ref=x, **opts)
    assert torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, d.labels)


def test_transition_seeded():
    p = random_matrix(C, 3)
    y = labels(2000)
    a, b, d = (apply_noise(y, C, "transition", seed=s, matrix=p) for s in (1, 1, 2))
    assert torch.equal(a.labels, b.labels) and not torch.equal(a.labels, d.labels)


def test_dispatch_errors_and_none():
    y = labels(100)
    r = apply_noise(y, C, "none")
    assert r.rate == 0.0 and torch.equal(r.labels, y) and r.model == "none"
    with pytest.raises(ValueError, match="unknown noise model 'gaussian'; choose from"):
        apply_noise(y, C, "gaussian", 0.1)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\)"):
        apply_noise(y, C, "symmetric", 1.0)
    with pytest.raises(ValueError, match="has no option 'exactly'; its options: exact"):
        apply_noise(y, C, "symmetric", 0.1, exactly=True)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        apply_noise(y, 5, "symmetric", 0.1)
    assert set(NOISE_MODELS) == {"none", "symmetric", "pairflip", "transition", "instance",
                                 "file"}


def test_summary_is_json_serializable():
    r = apply_noise(labels(500), C, "pairflip", 0.2, seed=0, class_map="cifar10")
    s = json.loads(json.dumps(r.summary()))
    assert s["model"] == "pairflip" and len(s["transitions"]) == C
