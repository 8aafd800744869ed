"""``cleanlab_cv``: cleanlab on K-fold cross-validated probabilities of a run's own architecture
and training config, each fold's model trained with noisescope's :class:`Trainer` on the other
folds' observed labels for the run's early-stopping epoch count (stratified folds seeded with
``seed``, the model seeded with ``train.seed``); the folds' training is timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from noisescope.data.base import NoisyDataset
from noisescope.detect import cleanlab_issues, cleanlab_scores, cross_val_pred_probs
from noisescope.evaluate import predict_logits
from noisescope.runs.build import prepare_model
from noisescope.runs.run import Run
from noisescope.training.loop import Trainer
from noisescope.workflows.label_issues_scores import Scoring


def fold_trainer(run: Run, epochs: int, device: torch.device, batch_size: int) -> tuple[Callable, Callable]:
    """(make_model, train_fn) for :func:`~noisescope.detect.cross_val_pred_probs`: the run's
    architecture (seeded with ``train.seed``), trained with :class:`Trainer` for ``epochs``
    epochs on the other folds' observed labels only."""
    cfg, data = run.config, run.data
    train_cfg = replace(cfg.train, epochs=max(1, int(epochs)), device=str(device))

    def make_model():
        return prepare_model(cfg, data)

    def train_fn(model, x_tr: torch.Tensor, y_tr: torch.Tensor):
        empty = slice(0, 0)
        fold = NoisyDataset(
            x_train=x_tr, y_train=y_tr, y_train_true=y_tr,  # observed labels only
            x_val=data.x_val[empty], y_val=data.y_val[empty], y_val_true=data.y_val[empty],
            x_test=data.x_test[empty], y_test=data.y_test[empty],
            num_classes=data.num_classes, name=data.name,
        )
        trained = Trainer(model, fold, train_cfg, probes=[], probe_at=[]).fit()

        def predict_proba(xs: torch.Tensor) -> torch.Tensor:
            return torch.softmax(predict_logits(trained, xs, batch_size, device).double(), 1)

        return predict_proba

    return make_model, train_fn


def score_cleanlab_cv(sc: Scoring, run: Run, x: torch.Tensor, y: torch.Tensor, num_classes: int, folds: int,
                      cv_epochs: int, device: torch.device, batch_size: int, seed: int) -> dict[str, Any]:
    """``cleanlab_cv`` with ``folds`` folds of ``cv_epochs`` epochs each (one progress step per
    fold); returns what ``label_issues.json`` says about the folds."""
    make_model, train_fn = fold_trainer(run, cv_epochs, device, batch_size)
    counter = [0]

    def timed_train(model, x_tr, y_tr):
        counter[0] += 1
        sc.step(f"cleanlab CV: training fold {counter[0]}/{folds} ({cv_epochs} epochs)")
        return train_fn(model, x_tr, y_tr)

    sc.step(f"cleanlab_cv ({folds} folds)")
    t = time.perf_counter()
    cv = cross_val_pred_probs(make_model, timed_train, x, y, k=folds, seed=seed, num_classes=num_classes)
    t_cl = time.perf_counter()
    score = cleanlab_scores(y, cv.pred_probs).numpy()
    flag = cleanlab_issues(y, cv.pred_probs).numpy()
    sc.add("cleanlab_cv", score, flag, time.perf_counter() - t, ["load"])
    return {"folds": folds, "epochs_per_fold": cv_epochs, "fit_seconds": cv.fit_seconds.tolist(),
            "predict_seconds": cv.predict_seconds.tolist(), "cleanlab_seconds": time.perf_counter() - t_cl}
