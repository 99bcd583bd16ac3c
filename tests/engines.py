"""Engines for tests that run tensors or images, built as every front end builds one: the
plan :func:`~vidsr.plan.plan_run` makes for the model and options, then its engine."""

from __future__ import annotations

from vidsr.engine import Engine
from vidsr.models import SRModel
from vidsr.plan import EngineOptions, plan_run


def engine_for(model: SRModel, options: EngineOptions | None = None) -> Engine:
    """An engine that runs ``model`` as ``options`` ask, on this machine."""
    return Engine(model, plan_run(model, options))
