"""Packed multi-model training: K same-architecture models trained as one batched model.

Small models that differ only in seed, label-noise draw, learning rate or weight decay share
every shape, so K of them can run as *one* model whose parameters carry a leading member
dimension: K small matmuls become one batched matmul, K optimizer steps a handful of
whole-buffer kernels, K Python/dispatch overheads one. Each member keeps its own data order
(its own :class:`~noisescope.pipeline.TensorPipeline` seed), its own observed labels and its
own learning rate and weight decay; its trajectory equals an unpacked ``torch.optim`` run of
the same member up to float rounding (batched and single matmuls may round differently).

Two forward engines: ``vmap`` (``torch.func.vmap`` over ``functional_call`` of the
architecture; any model, BatchNorm included) and ``direct`` (the model's own forward on
(K, B, ...) tensors with every ``nn.Linear`` replaced by a batched one and the input
standardization reading stacked statistics: no vmap overhead; noisescope MLPs only, and chosen
for them by default).

Pieces:

* :class:`PackedModels`: stacked parameters (leaf tensors (K, ...), views of one (K, P)
  buffer so the optimizer is a few whole-buffer kernels) and buffers; ``forward`` on
  (K, B, ...) batches, ``packed_logits`` / ``iter_taps`` on one shared split (logits and tap
  activations of every member from one packed pass); ``member(i)`` / ``load_member`` for
  probes and checkpoints; ``failed`` (K,) bool.
* :class:`PackedOptimizer`: SGD (momentum, coupled weight decay), Adam (coupled) and AdamW
  (decoupled) with per-member ``lr`` and ``weight_decay`` as (K,) vectors, the formulas of
  ``torch.optim``'s single-tensor implementations; ``member_optimizer(i, model)`` exports a
  member's state as a real ``torch.optim`` optimizer.
* :func:`train_packed_epoch`: one epoch over K pipelines; loss = sum over members of each
  member's mean cross-entropy, so each member's gradient is its unpacked gradient.
* :func:`packed_state_dict` / :func:`load_packed_state_dict` (flat tensors, safetensors-ready)
  and :func:`save_packed` / :func:`load_packed` for resume.

Modules: :mod:`~noisescope.packed.engine` (the direct engine), :mod:`~noisescope.packed.model`
(:class:`PackedModels`), :mod:`~noisescope.packed.optim` (:class:`PackedOptimizer`,
:data:`PACKABLE_FIELDS`, :func:`member_lrs`, :func:`pack_incompatibility`),
:mod:`~noisescope.packed.epoch` (:func:`member_pipelines`, :func:`member_batches`,
:func:`train_packed_epoch`), :mod:`~noisescope.packed.io` (state dicts, files, memory). Whole
runs (run directories, probes, checkpoints, resume, sweeps) are packed by
:func:`noisescope.runs.packed_runs.run_packed`.

Failures: a member whose loss or gradient becomes non-finite is marked failed at that step:
its update for that step is skipped, its gradient rows are zeroed and its learning rate is 0
from then on, so its parameters stay frozen at their last finite state while the others go
on. It is still computed (wasted work, no effect); ``train_packed_epoch`` reports NaN as its
epoch loss.

When it pays: on a CPU, small models whose step time is mostly per-op overhead (MLPs of
width <= ~128: about 2x the runs per hour at K = 8-16 on one core); wide models are compute
bound there and gain ~1x. On a GPU small models are launch bound, which packing removes.
K = 1 is slower than the plain loop (don't pack one run).

Limits: all members need identical parameter names, shapes and dtypes (one architecture and
options); parameters must all require grad. Dropout runs with vmap ``randomness="different"``
(every member draws its own mask, but not from the stream an unpacked run would use).
BatchNorm running statistics are stacked buffers updated in place per member.
``torch.compile`` and channels_last are not applied to the packed model.

Example::

    torch.manual_seed(0)
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(build_model("mlp", shape, 10, widths=[64, 64, 64]))
    packed = PackedModels(models)
    opt = PackedOptimizer(packed, "adam", lr=[1e-3, 3e-3, 1e-2], weight_decay=0.0)
    pipes = member_pipelines(x_train, [y_noisy_a, y_noisy_b, y_noisy_c], seeds, batch_size=128)
    for epoch in range(1, epochs + 1):
        losses = train_packed_epoch(packed, pipes, opt, epoch=epoch)   # (K,) float64
    logits = packed.packed_logits(x_test)                              # (K, N, C)
    model_1 = packed.member(1)                                         # a real TappedModel
"""

from __future__ import annotations

from noisescope.packed.epoch import member_batches, member_pipelines, train_packed_epoch
from noisescope.packed.io import load_packed, load_packed_state_dict, packed_nbytes, packed_state_dict, save_packed
from noisescope.packed.model import PackedModels
from noisescope.packed.optim import PACKABLE_FIELDS, PackedOptimizer, member_lrs, pack_incompatibility

__all__ = [
    "PACKABLE_FIELDS",
    "PackedModels",
    "PackedOptimizer",
    "load_packed",
    "load_packed_state_dict",
    "member_batches",
    "member_lrs",
    "member_pipelines",
    "pack_incompatibility",
    "packed_nbytes",
    "packed_state_dict",
    "save_packed",
    "train_packed_epoch",
]
