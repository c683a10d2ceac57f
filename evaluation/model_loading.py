"""Models to evaluate: an antray checkpoint (a run directory or a ``state.pt``) or torchvision.

``load_checkpoint_model`` accepts

- a run directory: ``<run_dir>/checkpoint/state.pt`` (the local trainer), else the newest
  ``state.pt`` anywhere under it by mtime (Ray leaves ``<run_dir>/ray/<name>/checkpoint_*/``);
- a checkpoint directory holding ``state.pt``, or the ``state.pt`` file itself.

Anything that is not an antray checkpoint raises
``trainers.checkpoint_format.CheckpointError`` (a user error: one line, exit 2). Every model
takes images in [0, 1] and normalises inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluation.request import EvalInputError
from trainers.checkpoint_format import BEST_VAL_KEY, STATE_FILE, CheckpointError, load_state
from trainers.models import IMAGENET_MEAN, IMAGENET_STD, Normalized, create_model


def find_checkpoint(path: str | Path) -> Path:
    """The ``state.pt`` a run directory, checkpoint directory or file points to."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at {path}: no such file or directory")
    for candidate in (path / "checkpoint" / STATE_FILE, path / STATE_FILE):
        if candidate.is_file():
            return candidate
    found = [p for p in path.rglob(STATE_FILE) if p.is_file()]
    if not found:
        raise CheckpointError(
            f"no checkpoint under {path}: expected {path / 'checkpoint' / STATE_FILE} "
            f"or {path / 'ray'}/<name>/checkpoint_*/{STATE_FILE}"
        )
    return max(found, key=lambda p: (p.stat().st_mtime, str(p)))


def _run_dir_of(given: Path, state_file: Path) -> Path:
    """The run directory a checkpoint belongs to (the directory the user gave, if any)."""
    if given.is_dir() and given.resolve() != state_file.parent.resolve():
        return given.resolve()
    folder = state_file.resolve().parent
    if folder.name == "checkpoint":
        return folder.parent
    if folder.name.startswith("checkpoint_") and len(folder.parents) > 2:
        if folder.parents[1].name == "ray":  # <run>/ray/<name>/checkpoint_*/state.pt
            return folder.parents[2]
    return folder


def _section(config: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    section = config.get(key)
    if not isinstance(section, dict):
        raise CheckpointError(f"{path} has no '{key}' section in its config")
    return section


def _strip_prefixes(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop DDP (``module.``) and torch.compile (``_orig_mod.``) prefixes, if present."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def served_weights(state: dict[str, Any]) -> Any:
    """The classifier a checkpoint serves: with ``optim.select_epoch: best_val`` the best
    validation epoch's, else the weight average when the run kept one (``optim.ema_decay``;
    the weights its validation measured), else the live weights."""
    best = _best_val(state)
    if best is not None:
        return best["weights"]
    return state["averaged_model"]["weights"] if _has_average(state) else state.get("model")


def served_epoch(state: dict[str, Any]) -> int | None:
    """The 0-based epoch whose weights ``served_weights`` returns."""
    best = _best_val(state)
    return int(best["epoch"]) if best is not None else state.get("epoch")


def _best_val(state: dict[str, Any]) -> dict[str, Any] | None:
    best = state.get(BEST_VAL_KEY)
    return best if isinstance(best, dict) and isinstance(best.get("weights"), dict) else None


def _has_average(state: dict[str, Any]) -> bool:
    averaged = state.get("averaged_model")
    return isinstance(averaged, dict) and isinstance(averaged.get("weights"), dict)


def load_checkpoint_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The classifier of an antray checkpoint (CPU, eval mode) and what the run was.

    ``info``: ``model`` (a label: the run directory's name), ``architecture`` (registry name),
    ``num_classes``, ``dataset``, ``epsilon`` and ``generator`` (``ant`` section; None when
    absent), ``noise_mode``, ``val_size`` and ``split_seed`` (``data`` section; None when
    absent), ``run_dir`` and ``checkpoint`` (paths, as strings), ``epoch``, ``weights``
    (``averaged``: the run's weight average, ``optim.ema_decay``; else ``live``),
    ``served_epoch`` (0-based: the best validation epoch with ``optim.select_epoch:
    best_val``, else ``epoch``).

    Raises:
        CheckpointError: no checkpoint there, not an antray checkpoint, or weights that do not
            fit the architecture its config names.
    """
    given = Path(path).expanduser()
    state_file = find_checkpoint(given)
    state = load_state(state_file)
    config = state.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{state_file} has no config: cannot tell which model it holds")
    model_cfg = _section(config, "model", state_file)
    data_cfg = _section(config, "data", state_file)
    ant_cfg = config.get("ant") if isinstance(config.get("ant"), dict) else {}
    weights = served_weights(state)
    if not isinstance(weights, dict) or "name" not in model_cfg:
        raise CheckpointError(f"{state_file} holds no classifier weights ('model' state_dict)")
    name = str(model_cfg["name"])
    num_classes = int(model_cfg.get("num_classes", 10))
    try:
        model = create_model(name, num_classes=num_classes)
    except KeyError as exc:
        raise CheckpointError(f"{state_file}: {exc.args[0]}") from None
    try:
        model.load_state_dict(_strip_prefixes(weights))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"{state_file}: weights do not fit model {name} ({num_classes} classes): {first}"
        ) from None
    model.eval()
    run_dir = _run_dir_of(given, state_file)
    noise_cfg = config.get("noise") if isinstance(config.get("noise"), dict) else {}
    info = {
        "model": run_dir.name,
        "architecture": name,
        "num_classes": num_classes,
        "dataset": data_cfg.get("dataset"),
        "epsilon": ant_cfg.get("epsilon"),
        "generator": ant_cfg.get("generator"),
        "noise_mode": noise_cfg.get("mode"),
        # The validation split the run carved from its training images: `antray eval
        # --split val` reads the same one (None: the dataset's default size).
        "val_size": data_cfg.get("val_size"),
        "split_seed": data_cfg.get("split_seed"),
        "run_dir": str(run_dir),
        "checkpoint": str(state_file.resolve()),
        "epoch": state.get("epoch"),
        # "averaged": the run's weight average (optim.ema_decay), else "live"
        "weights": "averaged" if _has_average(state) else "live",
        # the epoch whose weights these are (0-based): optim.select_epoch=best_val serves
        # the best validation epoch, else the checkpoint's own
        "served_epoch": served_epoch(state),
    }
    return model, info


def _default_weights(name: str) -> Path | None:
    """torchvision's default weights file for ``name`` if it already sits in the hub cache."""
    import torchvision

    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, AttributeError, KeyError):
        return None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return cached if cached.is_file() else None


def load_torchvision_model(
    name: str, weights_path: str | Path | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """A torchvision ImageNet classifier wrapped to take [0, 1] inputs (CPU, eval mode).

    ``weights_path``: a local state_dict (e.g. ``resnet50-0676ba61.pth``); without one, the
    default weights are used only if they already sit in the torch hub cache (no download:
    machines here are offline). Random weights are never evaluated.

    Raises:
        EvalInputError: unknown model name, or no weights file.
    """
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise EvalInputError(f"unknown torchvision model {name!r}; e.g. resnet50, resnet18")
    path = Path(weights_path).expanduser() if weights_path else _default_weights(name)
    if path is None:
        raise EvalInputError(
            f"no weights for {name}: pass --weights PATH (torchvision's ImageNet state_dict, "
            f"e.g. resnet50-0676ba61.pth) or put it in {Path(torch.hub.get_dir()) / 'checkpoints'}"
        )
    if not path.is_file():
        raise EvalInputError(f"weights file not found: {path}")
    net = torchvision.models.get_model(name, weights=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(_strip_prefixes(state))
    except Exception as exc:  # unpickling errors, shape mismatches
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise EvalInputError(f"weights {path} do not load into {name}: {first}") from None
    model = Normalized(net, IMAGENET_MEAN, IMAGENET_STD).eval()
    info = {
        "model": name,
        "architecture": name,
        "num_classes": 1000,
        "dataset": "imagenet",
        "epsilon": None,
        "generator": None,
        "noise_mode": None,
        "val_size": None,
        "split_seed": None,
        "run_dir": None,
        "checkpoint": str(path.resolve()),
        "epoch": None,
    }
    return model, info


__all__ = ["find_checkpoint", "load_checkpoint_model", "load_torchvision_model"]
