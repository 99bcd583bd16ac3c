"""Engines for tests that run tensors or images, built as every front end builds one: the
plan :func:`~vidsr.plan.run_plan.resolve_plan` makes for the model and options, then its engine."""

from __future__ import annotations

from vidsr.engine.engine import Engine
from vidsr.models.zoo import SRModel
from vidsr.plan.run_plan import EngineOptions, resolve_plan


def engine_for(model: SRModel, options: EngineOptions | None = None) -> Engine:
    """An engine that runs ``model`` as ``options`` ask, on this machine."""
    return Engine(model, resolve_plan(model, options))
