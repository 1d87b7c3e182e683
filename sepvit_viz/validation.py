"""Validate the settings a user can send (through the UI, the API or the CLI) before any work runs.

Every function returns the cleaned value or raises :class:`SettingsError`; both it and
:class:`sepvit_viz.imageio.ImageInputError` derive from :class:`UserInputError`, whose message is
written for the person who sent the value. The app turns exactly these into ``gr.Error``::

    try:
        image = load_image(path)
        size = validate_resolution(size)
        target = resolve_class(target_name, imagenet_class_names())
    except UserInputError as err:
        raise gr.Error(str(err)) from None

Anything else that escapes is a bug: log it, show a generic message, never the traceback.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from sepvit_viz.limits import (  # one home for the bounds; re-exported here
    DEFAULT_RESOLUTION,
    MAX_RESOLUTION,
    MAX_STEPS,
    MIN_RESOLUTION,
    RESOLUTION_MULTIPLE,
)
from sepvit_viz.viz.maps import FUSIONS  # head fusions accepted wherever a head index is

if TYPE_CHECKING:
    from sepvit_viz.model.config import SepViTConfig

__all__ = [
    "DEFAULT_RESOLUTION",
    "FUSIONS",
    "HUB_REPO_RE",
    "HUB_REVISION_RE",
    "MAX_RESOLUTION",
    "MAX_STEPS",
    "MIN_RESOLUTION",
    "RESOLUTION_MULTIPLE",
    "AmbiguousClassError",
    "SettingsError",
    "UserInputError",
    "checkpoint_config_problem",
    "choose",
    "estimate_parameters",
    "is_hub_repo_id",
    "is_hub_revision",
    "resolve_block",
    "resolve_class",
    "suggest",
    "validate_head",
    "validate_opacity",
    "validate_resolution",
    "validate_steps",
    "window_token_count",
]


#: A Hugging Face Hub repo id ``owner/name`` and a revision (branch, tag or commit): the one home of
#: these rules. Check with :func:`is_hub_repo_id` and :func:`is_hub_revision` (which also refuse ``..``),
#: as ``weights.load_from_hub``, the app's model choice and ``deploy`` do.
HUB_REPO_RE: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
HUB_REVISION_RE: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9._/-]{1,100}")


def is_hub_repo_id(value: object) -> bool:
    """Whether ``value`` is a Hub repo id the Hub takes: ``owner/name`` of letters, digits, ``-``,
    ``_`` and ``.`` (:data:`HUB_REPO_RE`), with no ``..`` anywhere."""
    return isinstance(value, str) and HUB_REPO_RE.fullmatch(value) is not None and ".." not in value


def is_hub_revision(value: object) -> bool:
    """Whether ``value`` is a branch, tag or commit name (:data:`HUB_REVISION_RE`), with no ``..``."""
    return isinstance(value, str) and HUB_REVISION_RE.fullmatch(value) is not None and ".." not in value


class UserInputError(ValueError):
    """A value sent by a user that cannot be used; ``str(err)`` is a message meant for that user."""


class SettingsError(UserInputError):
    """An impossible setting (resolution, block, head, steps, class, choice)."""


class AmbiguousClassError(SettingsError):
    """A class name that several classes share (ImageNet has two "crane"s and two "maillot"s)."""


#: A decimal integer as text: one optional sign, then at most 100 digits ("+-1" and "²" pass
#: ``str.isdigit`` checks but not ``int()``, nor do more than 4,300 digits; 100 is past every range).
_INT_TEXT: Final[re.Pattern[str]] = re.compile(r"[+-]?\d{1,100}")


def _as_int(value: object, what: str) -> int:
    """int, integral float (Gradio numbers are floats) or a decimal string -> int; anything else is a
    :class:`SettingsError`, never a bare ``ValueError``."""
    if isinstance(value, bool):
        raise SettingsError(f"{what} must be a whole number, got {value!r}.")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise SettingsError(f"{what} must be a whole number, got {value!r}.")
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    raise SettingsError(f"{what} must be a whole number, got {value!r}.")


def validate_resolution(
    value: object,
    *,
    minimum: int = MIN_RESOLUTION,
    maximum: int = MAX_RESOLUTION,
    multiple: int = RESOLUTION_MULTIPLE,
) -> int:
    """Input resolution in pixels: a whole number in ``[minimum, maximum]``, a multiple of ``multiple``.

    >>> validate_resolution(448.0)
    448
    """
    size = _as_int(value, "The input resolution")
    if not minimum <= size <= maximum:
        raise SettingsError(f"The input resolution must be between {minimum} and {maximum} pixels, got {size}.")
    if size % multiple:
        lower = max(minimum, size - size % multiple)
        raise SettingsError(
            f"The input resolution must be a multiple of {multiple} (for example {lower} or "
            f"{min(maximum, lower + multiple)}), got {size}."
        )
    return size


def validate_steps(value: object, *, maximum: int = MAX_STEPS, what: str = "The number of steps") -> int:
    """A step / sample count: a whole number in ``[1, maximum]``."""
    steps = _as_int(value, what)
    if not 1 <= steps <= maximum:
        raise SettingsError(f"{what} must be between 1 and {maximum}, got {steps}.")
    return steps


def validate_opacity(value: object) -> float:
    """Overlay opacity in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise SettingsError(f"The opacity must be a number between 0 and 1, got {value!r}.")
    if not 0.0 <= float(value) <= 1.0:
        raise SettingsError(f"The opacity must be between 0 and 1, got {value}.")
    return float(value)


def validate_head(value: object, num_heads: int) -> int | str:
    """A head index ``0 <= h < num_heads`` or a fusion name (``mean``, ``max``, ``min``).

    Head indices from a UI may arrive as strings ("2") or floats; fusions are case-insensitive. Labels
    such as "head 2" are refused on purpose: UIs number heads from 1 while indices start at 0.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in FUSIONS:
            return text
        if not _INT_TEXT.fullmatch(text):
            raise SettingsError(
                f"Unknown head {value!r}: choose a head from 0 to {num_heads - 1} or one of {', '.join(FUSIONS)}."
            )
        value = text
    head = _as_int(value, "The head")
    if not 0 <= head < num_heads:
        raise SettingsError(
            f"This block has {num_heads} head{'s' if num_heads != 1 else ''} (indices 0 to {num_heads - 1}); "
            f"head {head} does not exist."
        )
    return head


def suggest(word: str, options: Iterable[str], n: int = 3) -> list[str]:
    """Options close to ``word``: case-insensitive close matches first, then options containing it."""
    options = list(options)
    lower = {o.lower(): o for o in reversed(options)}
    key = word.strip().lower()
    found = [lower[m] for m in difflib.get_close_matches(key, list(lower), n=n, cutoff=0.6)]
    if key:
        found += [o for o in options if key in o.lower() and o not in found]
    return found[:n]


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = suggest(word, options)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def choose(value: object, options: Sequence[str], what: str) -> str:
    """One of ``options`` (exact, else case-insensitive), else an error listing them or suggesting some."""
    if not isinstance(value, str):
        raise SettingsError(f"{what} must be a name, got {value!r}.")
    if value in options:
        return value
    for o in options:
        if o.lower() == value.strip().lower():
            return o
    listing = f" Choose one of: {', '.join(options)}." if len(options) <= 12 else ""
    raise SettingsError(f"Unknown {what.lower()} {value!r}.{_did_you_mean(value, options)}{listing}")


def resolve_block(value: object, names: Sequence[str]) -> str:
    """A block name (``"stages.2.blocks.1"``) from ``names``; UI labels that start with a name
    followed by a space (``"stages.2.blocks.1 · GSA · window 14"``) resolve to that name.

    ``names`` is ``[b.name for b in model.iter_blocks()]``.
    """
    if isinstance(value, str):
        head = value.strip().split(" ", 1)[0]
        if head in names:
            return head
    return choose(value, names, "Block")


def resolve_class(value: object, class_names: Sequence[str]) -> int:
    """A class index from a name (case-insensitive; a name matching one class with its case too wins, so
    "Cardigan" is the corgi and "cardigan" the sweater), an index (int or digits) or ``"#123"``.

    Raises:
        AmbiguousClassError: a name that several classes share, whatever the case ("crane"); the message
            lists them by number.
        SettingsError: unknown name (with "did you mean" suggestions) or index out of range.
    """
    n = len(class_names)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise SettingsError("Please type a class name.")
        lowered = text.lower()
        same = [i for i, name in enumerate(class_names) if name.lower() == lowered]
        if len(same) > 1:
            exact = [i for i in same if class_names[i] == text]
            if len(exact) == 1:
                return exact[0]
            listed = ", ".join(f"{i}: {class_names[i]}" for i in same)
            raise AmbiguousClassError(
                f"{len(same)} classes are named {text!r} ({listed}); give the number of the one you mean."
            )
        if same:
            return same[0]
        digits = text[1:] if text.startswith("#") else text
        if not _INT_TEXT.fullmatch(digits):  # a signed number is an index (range checked below)
            raise SettingsError(f"There is no class named {text!r}.{_did_you_mean(text, class_names)}")
        value = int(digits)
    index = _as_int(value, "The class")
    if not 0 <= index < n:
        raise SettingsError(f"Class numbers go from 0 to {n - 1}; got {index}.")
    return index


# ------------------------------------------------------------------------------------ checkpoints
#: Hard caps on a checkpoint's config, checked before any model is built from it (a hostile file's
#: metadata could otherwise ask for a network of billions of parameters: memory exhausted at once).
CONFIG_CAPS: Final[dict[str, int]] = {
    "stages": 8,
    "blocks": 128,
    "channels": 4096,
    "heads": 256,
    "in_chans": 64,
    "window": 64,
    "patch_size": 64,
    "classes": 100_000,
    "ref_img_size": 2048,
    "mlp_ratio": 16,
}


def estimate_parameters(config: SepViTConfig) -> int:
    """A lower bound on the parameter count of a SepViT built from ``config`` (about 95% of the true
    count for every named variant): patch embeddings, per block qkv + projection + MLP, the head.
    """
    n, prev = 0, config.in_chans
    for i, (c, depth) in enumerate(zip(config.embed_dims, config.depths)):
        k = config.patch_size if i == 0 else 3
        n += prev * c * k * k
        n += depth * (4 * c * c + 2 * c * int(c * config.mlp_ratio))
        prev = c
    return n + config.num_classes * config.embed_dims[-1]


def window_token_count(config: SepViTConfig) -> int:
    """Numbers held by the window tokens of a SepViT built from ``config``: one C-channel token per window
    of the reference grid, in every block whose reference grid has more than one window."""
    n = 0
    for s, c in enumerate(config.embed_dims):
        for w in config.stage_window_sizes(s):
            grid = config.ref_grid(s, w)
            if grid > 1:
                n += grid * grid * c
    return n


def checkpoint_config_problem(config: SepViTConfig, file_numel: int | None = None) -> str | None:
    """Why a model must not be built from ``config`` read from a checkpoint holding ``file_numel``
    numbers, or None when it may.

    Refuses configs over :data:`CONFIG_CAPS` and (given ``file_numel``; None checks the caps alone)
    configs whose model would need more parameters than the file holds (a model that cannot be filled
    from the file would fail anyway, after allocating). Call it between reading the file and
    ``SepViT(config)``.
    """
    caps = CONFIG_CAPS
    checks = [
        (config.num_stages <= caps["stages"], f"{config.num_stages} stages"),
        (sum(config.depths) <= caps["blocks"], f"{sum(config.depths)} blocks"),
        (max(config.embed_dims) <= caps["channels"], f"{max(config.embed_dims)} channels"),
        (max(config.num_heads) <= caps["heads"], f"{max(config.num_heads)} heads"),
        (config.in_chans <= caps["in_chans"], f"input channels over {caps['in_chans']}"),
        (max(w for p in config.window_patterns for w in p) <= caps["window"], "windows over 64"),
        (config.patch_size <= caps["patch_size"], f"patch size {config.patch_size}"),
        (config.num_classes <= caps["classes"], f"{config.num_classes} classes"),
        (config.ref_img_size <= caps["ref_img_size"], f"reference size {config.ref_img_size}"),
        (0 < config.mlp_ratio <= caps["mlp_ratio"], f"MLP ratio {config.mlp_ratio}"),
    ]
    over = [what for ok, what in checks if not ok]
    if over:
        return f"its config is outside the supported range ({', '.join(over)})"
    need = estimate_parameters(config)
    if file_numel is not None and need > file_numel:
        return (
            f"its config describes a model of at least {need / 1e6:.1f}M parameters but the file holds "
            f"only {file_numel / 1e6:.1f}M numbers"
        )
    return None
