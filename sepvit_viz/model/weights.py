"""Checkpoints: safetensors with the config in the metadata, official-layout conversion, the Hub.

* :func:`save_checkpoint` writes a safetensors file whose metadata holds the model config, so a
  checkpoint rebuilds its own model (:func:`load_checkpoint`).
* :func:`checkpoint_filter_fn` converts a state dict laid out like the official SepViT code
  (``patch_embeds.i``, ``pos_block.i.proj.0``, ``blocks.i.j.attn.DSA_qkv`` ...) to this project's names.
* :func:`from_official` builds a ready model straight from such a state dict and the official
  constructor's arguments.
* ``.pt``/``.pth`` files are read with ``torch.load(weights_only=True)`` only: no pickle that runs code.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sepvit_viz.model.config import VARIANTS, SepViTConfig
from sepvit_viz.model.sepvit import SepViT

__all__ = [
    "ASSETS_DIR",
    "DEFAULT_CHECKPOINT",
    "CheckpointError",
    "ConfigMetadataError",
    "card_path_for",
    "checkpoint_filter_fn",
    "coverage_note",
    "default_checkpoint_for",
    "differs_from_variant",
    "from_official",
    "load_checkpoint",
    "load_checkpoint_file",
    "load_from_hub",
    "load_state_dict_file",
    "load_weights_into",
    "model_note",
    "read_checkpoint",
    "read_checkpoint_config",
    "save_checkpoint",
]

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
DEFAULT_CHECKPOINT = ASSETS_DIR / "sepvit_lite_distilled.safetensors"
FORMAT_TAG = "sepvit_viz/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model (message names keys and shapes)."""


class ConfigMetadataError(CheckpointError):
    """A checkpoint whose config metadata no model may be built from: malformed, or outside the
    supported range, or larger than the file's tensors (:func:`load_checkpoint`)."""


def card_path_for(checkpoint: str | Path) -> Path:
    """The model card beside a checkpoint: ``x.safetensors`` -> ``x.card.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + ".card.json")


def coverage_note(checkpoint: str | Path | None = None) -> str | None:
    """The model card's coverage text for ``checkpoint`` (default: the shipped one), whitespace
    collapsed; None when the card or its text is missing. (Measured claims about one checkpoint, such as
    how it does on the example photos, belong in its card, not here.)"""
    checkpoint = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    try:
        text = json.loads(card_path_for(checkpoint).read_text()).get("coverage")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(text, str) or not text.strip():
        return None
    return " ".join(text.split())


def _percent(rate: Any) -> int:
    """A rate as a whole percent, halves rounded up (80.5% -> 81, as people round; Python's format
    rounds 0.805 to 80 on the float's binary value)."""
    return math.floor(100 * float(rate) + 0.5 + 1e-9)


def model_note(checkpoint: str | Path | None = None) -> str | None:
    """One line on what the checkpoint (default: the shipped one) was trained on and how it measured
    on held-out photos, drawn from its model card; None without a card.

    Cards written by ``sepvit_viz.training.distill`` carry a training-data summary and, after
    ``sepvit_viz.training.evaluate --update-card``, held-out results with the teacher's beside them and,
    with ``--many-classes``, the count right on photos of many different classes; an older card without
    the summary gives its coverage text instead.
    """
    checkpoint = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    try:
        card = json.loads(card_path_for(checkpoint).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(card, dict):
        return None
    data = card.get("training_data")
    if not isinstance(data, dict) or "classes_with_at_least_100_photos" not in data:
        return coverage_note(checkpoint)
    try:
        line = (
            f"Distilled from EfficientNet-Lite0 on {int(data['total_photos']):,} photos; "
            f"{int(data['classes_with_at_least_100_photos'])} of the 1000 classes have 100 or more of them."
        )
        evaluation = card.get("evaluation") or {}
        results = evaluation.get("results") or {}
        # only folders the card names as held out: an evaluated training folder says nothing
        held_keys = set(data.get("held_out_never_trained_on", []))
        held_out = {Path(h).name for h in held_keys}
        parts = []
        for name, r in results.items():
            # a result that says where it was measured (val/imagenette) must be that held-out folder
            if name not in held_out or (r.get("folder") and r["folder"] not in held_keys):
                continue
            part = f"{name} {_percent(r['student_top1'])}%"
            if "teacher_top1" in r:
                part += f" (teacher {_percent(r['teacher_top1'])}%)"
            parts.append(part)
    except (KeyError, TypeError, ValueError):
        return coverage_note(checkpoint)
    if parts:
        limit = evaluation.get("limit_per_folder")
        on = f" (on at most {int(limit)} photos per folder)" if limit else ""
        line += f" Held-out top-1{on}: " + ", ".join(parts) + "."
    many = card.get("many_classes")
    # the figure closest to an arbitrary upload (photos of as many classes as photos); a card without
    # it, or with a malformed one, just leaves it out
    with contextlib.suppress(KeyError, TypeError, ValueError):
        line += (
            f" On {int(many['photos'])} photos of {int(many['classes'])} different classes it names "
            f"{int(many['student_right'])} right"
            + (f" (teacher {int(many['teacher_right'])})" if "teacher_right" in many else "")
            + "."
        )
    return line + " Expect less on classes with few training photos."


def default_checkpoint_for(name: str) -> Path:
    """The project's bundled checkpoint for a variant (only ``sepvit_lite`` has one)."""
    if name != "sepvit_lite":
        raise CheckpointError(f"no pretrained weights exist for {name!r}; only 'sepvit_lite' ships a checkpoint")
    if not DEFAULT_CHECKPOINT.is_file():
        raise CheckpointError(f"the default checkpoint {DEFAULT_CHECKPOINT} is missing")
    return DEFAULT_CHECKPOINT


def save_checkpoint(
    model: SepViT, path: str | Path, extra_metadata: Mapping[str, Any] | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write ``model``'s weights (optionally cast to ``dtype``, e.g. fp16) and config to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous()
    meta = {"format": FORMAT_TAG, "config": model.config.to_json()}
    for k, v in (extra_metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic: a reader never sees a half-written checkpoint
    return path


def _existing_file(path: str | Path) -> Path:
    """``path`` as a Path when it names a file; :class:`CheckpointError` for an empty path, a folder
    ("is a folder, not a checkpoint file") or nothing there ("checkpoint not found")."""
    if str(path) == "":
        raise CheckpointError("the checkpoint path is empty: name a weights file")
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, with a clear error for anything else."""
    path = _existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:  # safetensors raises several types for a corrupt header
        hint = ""
        if path.suffix in (".pt", ".pth", ".bin"):
            hint = (
                f"; a {path.suffix} file is a PyTorch pickle: read its state dict with load_state_dict_file, "
                "then build the model with from_official or load_weights_into"
            )
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({e}){hint}") from None
    return tensors, meta


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or (``weights_only=True``) ``.pt``/``.pth``/``.bin``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_checkpoint(path)[0]
    if path.suffix not in (".pt", ".pth", ".bin"):
        if path.is_dir():
            raise CheckpointError(f"{path} is a folder, not a checkpoint file")
        raise CheckpointError(f"unsupported checkpoint type {path.suffix!r}: use .safetensors (or .pt/.pth)")
    path = _existing_file(path)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # includes pickles that would need arbitrary code: refused by weights_only
        raise CheckpointError(
            f"{path.name} could not be loaded safely as PyTorch weights (weights_only=True): {_torch_load_reason(e)}"
        ) from None
    return _unwrap(obj)


def _torch_load_reason(e: BaseException) -> str:
    """One line from a ``torch.load`` failure: the unpickler's own reason ("Unsupported operand 103",
    "Unsupported global: GLOBAL posix.system was not an allowed global by default"), without torch's
    paragraphs on the ``weights_only`` default, filing issues and the documentation."""
    text = str(e)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", text, re.S)
    reason = " ".join((found.group(1) if found else text).split()) or type(e).__name__
    if found:  # the unpickler's first sentence; the rest tells how to allowlist the global
        reason = reason.split(". ")[0].rstrip(".")
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _unwrap(obj: Any) -> dict[str, torch.Tensor]:
    """Unwrap ``{'model': ...}`` / ``{'state_dict': ...}`` containers and ``module.`` prefixes."""
    for key in ("state_dict", "model", "model_ema"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError("the file does not hold a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


_OFFICIAL_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^patch_embeds\.(\d+)\.(proj|norm)\.(weight|bias)$"), r"stages.\1.patch_embed.\2.\3"),
    (re.compile(r"^pos_block\.(\d+)\.proj\.0\.(weight|bias)$"), r"stages.\1.pos_conv.proj.\2"),
    (re.compile(r"^blocks\.(\d+)\.(\d+)\.win_tokens$"), r"stages.\1.blocks.\2.window_tokens"),
    (re.compile(r"^blocks\.(\d+)\.(\d+)\.attn\.DSA_qkv\.(weight|bias)$"), r"stages.\1.blocks.\2.attn.qkv.\3"),
    (re.compile(r"^blocks\.(\d+)\.(\d+)\.attn\.PSA_qk\.(weight|bias)$"), r"stages.\1.blocks.\2.attn.pwa_qk.\3"),
    (
        re.compile(r"^blocks\.(\d+)\.(\d+)\.attn\.win_tokens_norm\.(weight|bias)$"),
        r"stages.\1.blocks.\2.attn.token_norm.\3",
    ),
    (re.compile(r"^blocks\.(\d+)\.(\d+)\.attn\.proj\.(weight|bias)$"), r"stages.\1.blocks.\2.attn.proj.\3"),
    (
        re.compile(r"^blocks\.(\d+)\.(\d+)\.(norm1|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)$"),
        r"stages.\1.blocks.\2.\3.\4",
    ),
    (re.compile(r"^(norm|head)\.(weight|bias)$"), r"\1.\2"),
]


def _is_official(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("patch_embeds.", "pos_block.")) or ".attn.DSA_qkv." in k for k in state_dict)


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: SepViT | None = None) -> dict[str, torch.Tensor]:
    """Convert a checkpoint to this project's key layout.

    Unwraps ``model``/``state_dict`` containers and ``module.`` prefixes, renames official keys,
    and (given ``model``) resizes window-token grids learned at another reference resolution.
    Unknown official keys raise :class:`CheckpointError` naming them.
    """
    sd = _unwrap(state_dict)
    if _is_official(sd):
        out, unknown = {}, []
        for k, v in sd.items():
            for pattern, repl in _OFFICIAL_RULES:
                if pattern.match(k):
                    out[pattern.sub(repl, k)] = v
                    break
            else:
                unknown.append(k)
        if unknown:
            raise CheckpointError(f"keys not in the official SepViT layout: {unknown[:10]}")
        sd = out
    if model is not None:
        for block in model.iter_blocks():
            key = f"{block.name}.window_tokens"
            if key in sd and block.window_tokens is not None and sd[key].shape != block.window_tokens.shape:
                own, got = tuple(block.window_tokens.shape), tuple(sd[key].shape)
                # only the grid may differ: anything else is refused before interpolating (a file could
                # otherwise make the resize allocate its channel count times the model's grid)
                if len(got) != 4 or got[0] != 1 or got[2] != 1 or got[3] != own[3]:
                    raise CheckpointError(f"{key}: checkpoint {got} vs model {own}: only the token grid may differ")
                try:
                    sd[key] = _resize_tokens(sd[key], block.ref_grid)
                except CheckpointError as e:
                    raise CheckpointError(f"{key}: {e} (model expects {tuple(block.window_tokens.shape)})") from None
    return sd


def _resize_tokens(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, g*g, 1, C) -> (1, grid*grid, 1, C), bilinear over the square token grid."""
    g = round(tokens.shape[1] ** 0.5)
    if g * g != tokens.shape[1] or tokens.dim() != 4:
        raise CheckpointError(f"window tokens of shape {tuple(tokens.shape)} are not a square grid")
    C = tokens.shape[-1]
    t = tokens.reshape(1, g, g, C).permute(0, 3, 1, 2).float()
    t = torch.nn.functional.interpolate(t, size=(grid, grid), mode="bilinear", align_corners=False, antialias=grid < g)
    return t.permute(0, 2, 3, 1).reshape(1, grid * grid, 1, C).to(tokens.dtype)


# How much larger than its file a model may be (window tokens resized to a bigger grid), as a factor
# plus a fixed allowance in numbers; anything beyond is refused before the model is allocated.
_MAX_GROWTH = 2
_TOKEN_SLACK = 1 << 20


def _refuse_hostile_config(config: SepViTConfig, tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse, before allocating the model, a config that the file's tensors could never fill.

    A checkpoint's metadata could describe a model of billions of parameters; building it first and
    checking later would let one small file exhaust the server's memory. The config must be within
    :data:`~sepvit_viz.validation.CONFIG_CAPS`; then its size (the parameter estimate plus the exact
    window-token count) is compared with the file's. Window tokens may be resized from another grid,
    so a model somewhat larger than the file is allowed, but not one that would amplify a small file
    into a large allocation.
    """
    from sepvit_viz.validation import checkpoint_config_problem, estimate_parameters, window_token_count

    caps = checkpoint_config_problem(config)  # the range check alone
    if caps is not None:
        raise CheckpointError(f"{what}: {caps}")
    numel = sum(t.numel() for t in tensors.values() if isinstance(t, torch.Tensor))
    problem = checkpoint_config_problem(config, numel)  # the lower-bound estimate against the file
    need = estimate_parameters(config) + window_token_count(config)
    if problem is None and need > _MAX_GROWTH * numel + _TOKEN_SLACK:
        problem = (
            f"its config describes a model of {need / 1e6:.1f}M numbers but the file holds only {numel / 1e6:.1f}M"
        )
    if problem is None:
        return
    # Only to name the keys and shapes that do not fit: the model built on the meta device (shapes
    # only, no memory; the first meta build in a process costs about a second, so not on every load).
    # No model is given to the filter, so nothing is resized.
    with torch.device("meta"):
        skeleton = SepViT(config)
    try:
        _check_fit(skeleton, checkpoint_filter_fn(tensors))
    except CheckpointError as e:
        raise CheckpointError(f"{what}: {problem}; {e}") from None
    raise CheckpointError(f"{what}: {problem}")


def _check_fit(model: SepViT, sd: Mapping[str, torch.Tensor]) -> None:
    """Raise a CheckpointError that names missing/unexpected keys and mismatched shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {shapes[:8]}")
        raise CheckpointError("checkpoint does not fit the model: " + "; ".join(parts))


def load_weights_into(
    model: SepViT, source: str | Path | Mapping[str, torch.Tensor], *, new_head_if_classes_differ: bool = False
) -> SepViT:
    """Load a file or state dict into ``model`` strictly (converted by :func:`checkpoint_filter_fn`).

    new_head_if_classes_differ: when the checkpoint's classifier is for another number of classes
    (or the model has none), load every other weight and keep the model's own fresh ``head``, e.g.
    to fine-tune; everything else must still fit exactly.
    """
    sd = load_state_dict_file(source) if isinstance(source, (str, Path)) else dict(source)
    sd = checkpoint_filter_fn(sd, model)
    own_head = {k: v for k, v in model.state_dict().items() if k.startswith("head.")}
    file_head = {k: v for k, v in sd.items() if k.startswith("head.")}
    if new_head_if_classes_differ and {k: v.shape for k, v in own_head.items()} != {
        k: v.shape for k, v in file_head.items()
    }:
        file_classes = file_head["head.weight"].shape[0] if "head.weight" in file_head else 0
        warnings.warn(
            f"the checkpoint's classifier is for {file_classes} classes, the model has {model.num_classes}: "
            "every other weight is loaded, the head starts fresh",
            stacklevel=3,
        )
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")} | own_head
    _check_fit(model, sd)
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
    return model


def load_checkpoint(path: str | Path, config: SepViTConfig | None = None) -> SepViT:
    """Rebuild a model from a checkpoint (its config from the file's metadata unless given), eval mode.

    Raises :class:`CheckpointError` (never another type) for a file that is missing, a folder, not
    safetensors, without config metadata, or whose tensors do not fit; its subclass
    :class:`ConfigMetadataError` for config metadata no SepViT may be built from (malformed JSON,
    Infinity or NaN in a count, a stage without window sizes ...: "invalid config metadata (reason)"),
    or a config outside the supported range or larger than the file's tensors.
    """
    tensors, meta = read_checkpoint(path)
    if config is None:
        config = _config_from_metadata(meta, path)
        try:
            _refuse_hostile_config(config, tensors, Path(path).name)
        except CheckpointError as e:
            raise ConfigMetadataError(str(e)) from None
    else:
        _refuse_hostile_config(config, tensors, Path(path).name)
    model = SepViT(config)
    load_weights_into(model, tensors)
    return model.eval()


def _config_from_metadata(meta: Mapping[str, str], path: str | Path) -> SepViTConfig:
    """The SepViTConfig a checkpoint's metadata describes (this project's field names, or the official
    constructor's); :class:`CheckpointError` without ``config`` metadata, :class:`ConfigMetadataError`
    for metadata no config may be made of."""
    if "config" not in meta:
        raise CheckpointError(
            f"{Path(path).name} has no 'config' metadata, so it is not a SepViT checkpoint saved by "
            "sepvit_viz.save_checkpoint (a SepViT state dict without it loads with config=...)"
        )
    try:
        cfg_dict = json.loads(meta["config"])
        if not isinstance(cfg_dict, dict):
            raise ValueError(f"expected a JSON object, got {type(cfg_dict).__name__}")
        return (
            SepViTConfig.from_official(cfg_dict)
            if "ws" in cfg_dict or "mlp_ratios" in cfg_dict
            else SepViTConfig.from_dict(cfg_dict)
        )
    except KeyError as e:  # a field the official constructor cannot do without
        raise ConfigMetadataError(f"{Path(path).name}: invalid config metadata (missing field {e})") from None
    # OverflowError: Infinity where a count belongs; RecursionError: absurdly nested JSON
    except (ValueError, TypeError, IndexError, OverflowError, RecursionError) as e:
        raise ConfigMetadataError(f"{Path(path).name}: invalid config metadata ({e})") from None


def read_checkpoint_config(path: str | Path) -> SepViTConfig:
    """The config a project checkpoint's metadata describes, read from the file's header alone (no
    tensor is loaded): for a check before anything slow starts, e.g. distill's ``--init-from``.

    Raises :class:`CheckpointError` for a path that is empty, a folder or missing, a file that is not
    safetensors (or is cut short) or has no config metadata; :class:`ConfigMetadataError` for config
    metadata no SepViT may be built from, or outside :data:`~sepvit_viz.validation.CONFIG_CAPS`. Whether
    the tensors fit the config is known only when :func:`load_checkpoint` reads them.
    """
    from sepvit_viz.validation import checkpoint_config_problem

    path = _existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:  # safetensors raises several types for a corrupt header
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({e})") from None
    config = _config_from_metadata(meta, path)
    problem = checkpoint_config_problem(config)  # the ranges alone
    if problem is not None:
        raise ConfigMetadataError(f"{path.name}: {problem}")
    return config


def load_checkpoint_file(path: str | Path, name: str) -> SepViT:
    """An eval-mode model from the weights file the command lines' ``--checkpoint`` names.

    A project checkpoint (safetensors with config metadata) rebuilds its own architecture, whatever
    ``name`` says (see :func:`differs_from_variant`); any other state dict (safetensors without config,
    ``.pt``/``.pth``/``.bin``) is loaded strictly into the variant ``name``. A file whose config
    metadata is invalid is refused (:class:`ConfigMetadataError`, the reason named), never loaded
    into ``name`` instead.

    Raises:
        CheckpointError: an empty path, a folder ("is a folder, not a checkpoint file"), nothing there,
            invalid config metadata, or a file that loads neither way. For the latter the message gives
            both reasons ("cannot load checkpoint X: <as a project checkpoint>; as <name> weights: <strictly>").
        ValueError: an unknown variant ``name``.
    """
    from sepvit_viz.model.sepvit import create_model

    path = _existing_file(path)
    if path.suffix in (".pt", ".pth", ".bin"):  # a PyTorch pickle never holds a project checkpoint
        return create_model(name, checkpoint_path=str(path)).eval()
    try:
        return load_checkpoint(path)
    except ConfigMetadataError:
        raise  # a project checkpoint with a broken config: its own reason, not a guess at `name`
    except CheckpointError as first:
        # not a project checkpoint (unreadable as one, or no config metadata): try it as weights for `name`
        try:
            return create_model(name, checkpoint_path=str(path)).eval()
        except (CheckpointError, RuntimeError) as second:
            raise CheckpointError(f"cannot load checkpoint {path.name}: {first}; as {name} weights: {second}") from None


def differs_from_variant(config: SepViTConfig, name: str) -> bool:
    """Whether ``config`` describes another network than the variant ``name``; False for an unknown
    ``name``. Window sizes are compared block by block, as built, not as spelled: a pattern such as
    ``(7, 14)`` and the official per-block list ``(7, 14, 7, 14, 7, 14)`` are the same network.
    Dropout rates, which only training uses, and the name are not compared."""
    if name not in VARIANTS:
        return False

    def network(cfg: SepViTConfig) -> tuple[SepViTConfig, tuple[tuple[int, ...], ...]]:
        blocks = tuple(cfg.stage_window_sizes(s) for s in range(cfg.num_stages))
        plain = cfg.replace(
            drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, window_patterns=((1,),) * cfg.num_stages
        )
        return plain, blocks

    return network(config) != network(VARIANTS[name])


def from_official(state_dict: Mapping[str, Any], config: Mapping[str, Any] | SepViTConfig, **overrides: Any) -> SepViT:
    """A ready (eval-mode) model from an official-layout state dict and official constructor args.

    ``config`` uses the official argument names (``embed_dims, num_heads, depths, ws, num_classes,
    patch_size, mlp_ratios, qkv_bias, ...``), as the reference file's metadata does; or a SepViTConfig.
    """
    cfg = config if isinstance(config, SepViTConfig) else SepViTConfig.from_official(dict(config), **overrides)
    prefix = "state_dict."
    sd = dict(state_dict)
    if any(k.startswith(prefix) for k in sd):  # a bundle such as the reference file: keep its weights only
        sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    _refuse_hostile_config(cfg, sd, "the official checkpoint")
    model = SepViT(cfg)
    load_weights_into(model, sd)
    return model.eval()


def load_from_hub(
    repo_id: str,
    filename: str = "model.safetensors",
    revision: str | None = None,
    cache_dir: str | None = None,
    timeout: float | None = None,
    max_bytes: int | None = None,
) -> SepViT:
    """Download a checkpoint from the Hugging Face Hub (needs network) and build its model.

    ``revision`` pins a branch, tag or commit hash. Only safetensors files are accepted. A file not
    in the local cache is first asked for with one request of at most ``timeout`` seconds
    (:data:`sepvit_viz.limits.HUB_TIMEOUT_S`), so an unreachable Hub fails in seconds instead of
    after huggingface_hub's retries; that answer's size must be at most ``max_bytes``
    (:data:`sepvit_viz.limits.MAX_HUB_CHECKPOINT_BYTES`) before anything is downloaded. Every failure is a :class:`CheckpointError` with one plain
    sentence (unreachable, switched off, no such repo, revision or file, gated).
    """
    from sepvit_viz.limits import HUB_TIMEOUT_S, MAX_HUB_CHECKPOINT_BYTES
    from sepvit_viz.validation import is_hub_repo_id, is_hub_revision

    if not is_hub_repo_id(repo_id):
        raise CheckpointError(f"invalid Hub repo id {repo_id!r}: expected 'owner/name'")
    if not filename.endswith(".safetensors") or ".." in filename or filename.startswith("/"):
        raise CheckpointError("only .safetensors files are loaded from the Hub")
    if revision is not None and not is_hub_revision(revision):
        raise CheckpointError(f"invalid revision {revision!r}")
    import huggingface_hub as hf
    from huggingface_hub import constants

    timeout = HUB_TIMEOUT_S if timeout is None else float(timeout)
    max_bytes = MAX_HUB_CHECKPOINT_BYTES if max_bytes is None else int(max_bytes)
    try:
        cached = hf.try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
        size = Path(cached).stat().st_size if isinstance(cached, str) else None
        if not isinstance(cached, str) and not constants.HF_HUB_OFFLINE:
            # one HEAD request, no retries: fails fast when the Hub cannot be reached
            size = hf.get_hf_file_metadata(hf.hf_hub_url(repo_id, filename, revision=revision), timeout=timeout).size
    except Exception as e:  # offline, missing repo/file, auth: one plain sentence
        raise CheckpointError(_hub_problem(e, repo_id, filename, revision, timeout)) from None
    if size is not None and size > max_bytes:
        raise CheckpointError(
            f"{repo_id}/{filename} is {size / 2**20:,.0f} MB, more than the {max_bytes / 2**20:,.0f} MB a SepViT "
            "checkpoint can be (SepViT-Base in float32 is about 330 MB); not downloaded"
        )
    try:
        local = hf.hf_hub_download(
            repo_id=repo_id, filename=filename, revision=revision, cache_dir=cache_dir, etag_timeout=timeout
        )
    except Exception as e:  # offline, missing repo/file, auth: one plain sentence
        raise CheckpointError(_hub_problem(e, repo_id, filename, revision, timeout)) from None
    return load_checkpoint(local)


def _timed_out(e: BaseException) -> bool:
    """Whether ``e`` or an exception it was raised from is a timeout (socket, requests or httpx)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, TimeoutError) or "Timeout" in type(cur).__name__:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _hub_problem(e: BaseException, repo_id: str, filename: str, revision: str | None, timeout: float) -> str:
    """One sentence for a failed Hub download (never the library's exception name or its wording)."""
    from huggingface_hub import constants
    from huggingface_hub import errors as hf

    where = f"{repo_id} (revision {revision or 'main'})"
    if constants.HF_HUB_OFFLINE or isinstance(e, hf.OfflineModeIsEnabled):
        return f"downloads from the Hugging Face Hub are switched off on this server (HF_HUB_OFFLINE) and {where} is not in its cache"
    if isinstance(e, hf.GatedRepoError):
        return f"{repo_id} is a gated repo: this server has no access to it"
    if isinstance(e, hf.RepositoryNotFoundError):
        return f"there is no repo {repo_id} on the Hugging Face Hub (or it is private)"
    if isinstance(e, hf.RevisionNotFoundError):
        return f"{repo_id} has no revision {revision!r}"
    if isinstance(e, hf.LocalEntryNotFoundError) or not isinstance(e, hf.HfHubHTTPError | hf.EntryNotFoundError):
        why = f"no answer within {timeout:g} s" if _timed_out(e) else "no connection"
        return f"the Hugging Face Hub cannot be reached from this server ({why})"
    if isinstance(e, hf.EntryNotFoundError):
        return f"{where} has no file {filename}"
    status = getattr(getattr(e, "response", None), "status_code", None)
    return f"the Hugging Face Hub refused {filename} of {where}" + (f" (HTTP {status})" if status else "")


def variant_config(name: str) -> SepViTConfig:
    """The config of a named variant (for callers that have only a name)."""
    return VARIANTS[name]
