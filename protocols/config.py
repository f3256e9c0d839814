"""Typed configuration, resolved in one place, with the origin of every value.

Following nanoGPT's ``GPTConfig`` + ``configurator.py`` and EDM's ``training_options.json``: flat dataclasses
whose fields carry their defaults and valid ranges (:func:`common.fields.opt`), overrides that must name an
existing key and parse to its type, and the resolved config written into the run directory.

Keys are dotted: ``train.steps``, ``eval.n_samples``, ``model.width``.  :func:`resolve` is the only place a
cell's configuration is put together, in this order (later wins), recording where each value came from
(``RunConfig.sources``, shown by ``--dry-run``):

1. the dataclass defaults, then (``model.*``) the registered name's own defaults, i.e. the paper's sizes
   (``register_model(..., defaults=...)``);
2. the budget (``protocols/budgets.py: BUDGETS``);
3. the model's presets for that budget, then for ``budget@resolution`` (``register_model(..., presets=...)``;
   the names it extends through ``base=`` first);
4. the protocol (``Protocol.settings()``: which checkpoint its cells evaluate);
5. the user's overrides (each ``--set`` parsed once into an :class:`Override`): ``train.*`` / ``eval.*`` /
   ``model.*`` for every model (a ``model.*`` key reaches the models that have it and use it), then
   model-scoped ones, ``<model>.<key>`` or ``<model>.train.<key>``;
6. values resolved from the machine: ``train.threads=0`` and ``train.device=auto``.

Every value is then checked (ranges, choices, the device) before anything is loaded or trained.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterable, List, Optional

from common.fields import check, opt
from common.io import atomic_write

from .budgets import BUDGETS


class ConfigError(ValueError):
    """A bad override or value; ``str()`` is one line that says what to do."""


SELECT = ("val_bpd", "last")
OPTIMIZERS = ("adamax", "adam")
EXTRACTORS = ("domain", "inception", "selfsup")   # domain on data without labels is selfsup (protocols/evaluate.py)
AUTOCAST = ("off", "bf16", "auto")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass
class TrainConfig:
    steps: int = opt(2000, min=1)           # optimisation steps of the main stage; bounds every other stage too
    batch_size: int = opt(64, min=1)        # images per step (per process under torchrun)
    optimizer: str = opt("adamax", choices=OPTIMIZERS)  # adamax (paper, Appendix C) | adam
    lr: float = opt(2e-3, above=0)          # learning rate (paper: Adamax 2e-3)
    phase_lr: str = ""                      # per-phase learning rates, e.g. "gen=5e-4" (others keep lr): a
    #                                         slower generator than D is the two time-scale rule (Heusel et al. 2017)
    scalar_lr: float = opt(0.0, min=0)      # learning rate of 0-dim parameters (a decoder's global log sigma, VDM's
    #                                         schedule ends); 0 = the phase's lr. Adamax moves a parameter by at
    #                                         most ~lr per step, so a short run can rate-limit a global scale
    ema: float = opt(0.0, min=0, below=1)   # decay of an exponential moving average of the weights (Polyak
    #                                         averaging; 0 = off): checkpoints, validation, samples and every
    #                                         evaluation use the average, training the last iterate; the decay
    #                                         warms up as min(ema, (1 + t) / (10 + t)) at step t
    beta1: float = opt(0.9, min=0, below=1)
    beta2: float = opt(0.999, min=0, below=1)
    grad_clip: float = opt(0.0, min=0)      # global-norm clip per phase; 0 = off
    disc_steps: int = opt(1, min=1, max=50)  # discriminator updates per generator update (Appendix C: 1), each on
    #                                          the step's real batch with fresh fakes, noise and GP interpolants
    log_every: int = opt(50, min=1)         # steps between progress-bar / stats.jsonl entries
    sample_every: int = opt(500, min=0)     # steps between sample grids (0 = only at the end)
    ckpt_every: int = opt(500, min=0)       # steps between checkpoints (0 = only at the end)
    val_every: int = opt(0, min=0)          # steps between validation-BPD checks (0 = never; best.pt kept when > 0)
    val_images: int = opt(180, min=1)       # validation images used for the check
    threads: int = opt(0, min=0)            # torch CPU threads; 0 = $OMP_NUM_THREADS, else the CPUs this process
    #                                         may use (affinity); the resolved number is recorded and hashed
    device: str = "auto"                    # auto | cpu | cuda | cuda:N (auto: cuda when available)
    channels_last: bool = False             # NHWC memory format for conv nets (faster on CPU and tensor cores)
    autocast: str = opt("off", choices=AUTOCAST)  # training losses under torch.autocast(bfloat16): oneDNN bf16
    #                                         kernels on CPUs with AVX512-BF16/AMX, tensor cores on GPUs; parameters,
    #                                         optimiser and every evaluation stay fp32. auto = bf16 where the device
    #                                         has native bf16, else off (resolved per machine, recorded and hashed)
    progress: bool = True                   # tqdm progress bar (rank 0 only)
    plateau_patience: int = opt(0, min=0)   # stages that stop on a plateau (the GAN's inference stage): stop after
    #                                         this many checks without a better validation bound (0 = run the
    #                                         stage's full step budget); the bound's curve is recorded either way
    plateau_every: int = opt(100, min=1)    # steps of such a stage between two checks of the validation bound
    plateau_tol: float = opt(1e-3, min=0)   # an improvement smaller than this (bits/dim) does not count


@dataclass
class EvalConfig:
    n_samples: int = opt(5000, min=1)       # generated samples for FID/IS/PRD/prdc
    n_real: int = opt(0, min=0)             # real reference images (0 = the whole test split)
    extractor: str = opt("domain", choices=EXTRACTORS)  # feature extractor of the sample metrics
    inception_weights: str = ""             # local Inception file ('' = $AVADE_INCEPTION); identified by its hash
    dinov2_weights: str = ""                # a DINOv2 file: the sample metrics again in its space (FD_DINOv2); '' = none
    clip_weights: str = ""                  # a CLIP ViT-L/14@336 file: CMMD; '' = none (both identified by hash)
    iw_k: int = opt(0, min=0)               # importance samples for the IW bound (0 = skip)
    bpd_images: int = opt(0, min=0)         # held-out images for BPD (0 = the whole test split)
    batch_size: int = opt(250, min=1)       # evaluation batch size
    prd_clusters: int = opt(20, min=2)      # PRD: k-means clusters (Sajjadi et al.: 20)
    prd_runs: int = opt(10, min=1)          # PRD: clusterings averaged (Sajjadi et al.: 10)
    prdc_k: int = opt(5, min=1)             # precision/recall/density/coverage: nearest neighbours (Naeem et al.: 5)
    gan_seeds: int = opt(1, min=1)          # classifier seeds for GAN-train/GAN-test
    select: str = opt("last", choices=SELECT)  # checkpoint evaluated: last (the paper) | val_bpd (best validation
    #                                            BPD; needs train.val_every > 0); each protocol declares its own
    snapshots: int = opt(0, min=0, max=10_000)  # evaluations along the main stage, evenly spaced (8: every 1/8 of
    #                                         the steps, the last included; fewer when the stage has fewer steps;
    #                                         more than train.steps only from a budget or preset); 0 = only the final
    #                                         evaluation
    snapshot_samples: int = opt(2000, min=2)  # samples for a snapshot's FID and KID
    snapshot_bpd_images: int = opt(500, min=1)  # held-out images (the first of the test split) for its BPD


#: train keys that change nothing that is trained or measured (left out of the config hash)
NOT_HASHED = ("log_every", "sample_every", "ckpt_every", "progress")
#: (section, key that switches a feature off at this value, keys that only matter when it is on): when off, all
#: of them are left out of the hash, which is then the hash the configuration had before the feature existed
OPTIONAL = (("train", "autocast", "off", ()), ("train", "ema", 0.0, ()), ("train", "disc_steps", 1, ()),
            ("train", "plateau_patience", 0, ("plateau_every", "plateau_tol")),
            ("eval", "snapshots", 0, ("snapshot_samples", "snapshot_bpd_images")))


@dataclass
class RunConfig:
    model: str
    dataset: str = "digits"
    budget: str = "cpu"
    seed: int = 0
    protocol: str = ""
    recipe: str = ""               # the optimisation recipe layered over the presets (protocols/recipes.py; not
    #                                hashed: its values are)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    model_cfg: Any = None          # the model's own config dataclass (section name "model")
    world: int = 1                 # processes of a torchrun (the global batch is world x batch_size)
    sources: Dict[str, str] = field(default_factory=dict)   # key -> where its value came from (not hashed)
    applied: List[str] = field(default_factory=list)        # the --set keys that reached this cell (not hashed)

    def to_dict(self) -> Dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "budget": self.budget, "seed": self.seed,
                "protocol": self.protocol, "recipe": self.recipe, "world": self.world, "train": dataclasses.asdict(self.train),
                "eval": dataclasses.asdict(self.eval),
                "model_cfg": dataclasses.asdict(self.model_cfg) if self.model_cfg is not None else None}

    def hashed(self) -> Dict[str, Any]:
        """Everything that changes what is trained and measured, except the seed (the hash groups seeds).

        The thread count is part of it on CPU (torch's results depend on it), the device type always, the
        Inception weights by their content (in the cell identity), not by their path."""
        d = self.to_dict()
        for k in ("seed", "protocol", "recipe"):
            d.pop(k)
        d["train"]["device"] = _device_type(self.train.device)
        for k in NOT_HASHED:
            d["train"].pop(k)
        if d["train"]["device"] != "cpu":
            d["train"].pop("threads")
        for section, key, off, dependent in OPTIONAL:
            if d[section][key] == off:
                for k in (key, *dependent):
                    d[section].pop(k)
        for k in ("inception_weights", "dinov2_weights", "clip_weights"):
            d["eval"].pop(k)
        if self.world == 1:
            d.pop("world")
        return d

    def hash(self) -> str:
        blob = json.dumps(self.hashed(), sort_keys=True, default=str).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


# ---- parsing and setting one key ------------------------------------------------------------------
def _parse(value: str, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value.lower() in ("none", "null"):
            return None
        typ = args[0]
    try:
        if typ is bool:
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(value)
        if typ is float:
            return float(value)
        if typ is str:
            return value
        if origin in (tuple, list):
            inner = typing.get_args(typ)[0] if typing.get_args(typ) else str
            items = [s for s in value.strip("()[] ").split(",") if s.strip()]
            return tuple(_parse(s.strip(), inner, key) for s in items)
    except ValueError:
        pass
    else:
        raise ConfigError(f"cannot set {key}: unsupported type {typ!r}")
    tname = getattr(typ, "__name__", str(typ))
    raise ConfigError(f"bad value for {key}: {value!r} is not a valid {tname}")


def _section(cfg: RunConfig, name: str):
    obj = {"train": cfg.train, "eval": cfg.eval, "model": cfg.model_cfg}.get(name)
    if obj is None:
        raise ConfigError(f"unknown config section {name!r} in a key (use train.*, eval.*, model.* or "
                          f"<model>.<key>)")
    return obj


def has_key(cfg: RunConfig, key: str) -> bool:
    section, _, name = key.partition(".")
    obj = {"train": cfg.train, "eval": cfg.eval, "model": cfg.model_cfg}.get(section)
    return obj is not None and name in {f.name for f in fields(obj)}


def set_value(cfg: RunConfig, key: str, value: Any, source: str = "") -> None:
    """Set a dotted key; ``value`` may be a string (parsed, type-checked) or a typed value."""
    if "." not in key:
        raise ConfigError(f"unknown config key {key!r}: use train.<key>, eval.<key> or model.<key> "
                          f"(see --dry-run for every key)")
    section, _, name = key.partition(".")
    obj = _section(cfg, section)
    hints = typing.get_type_hints(type(obj))
    if name not in hints or name not in {f.name for f in fields(obj)}:
        valid = [f"{section}.{f.name}" for f in fields(obj)]
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.7)
        raise ConfigError(f"unknown config key {key!r}{f' (did you mean {close[0]}?)' if close else ''}; valid keys: "
                          f"{', '.join(valid)}")
    typ = hints[name]
    if isinstance(value, str) and typ is not str:
        value = _parse(value, typ, key)
    elif not isinstance(value, str) and typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(value, list):
        value = tuple(value)
    elif typ is str and not isinstance(value, str):
        raise ConfigError(f"bad value for {key}: {value!r} is not a valid str")
    setattr(obj, name, value)
    if source:
        cfg.sources[key] = source


# ---- overrides: global and model-scoped ------------------------------------------------------------
SECTIONS = ("train", "eval", "model")


@dataclass(frozen=True)
class Override:
    """One ``--set`` as parsed once: ``text`` as typed (``avade.adv_weight``), the model ``scope`` it is
    limited to (None: every model it applies to), the dotted ``key`` it sets (``model.adv_weight``), the value."""

    text: str
    scope: Optional[str]
    key: str
    value: Any

    @classmethod
    def of(cls, text: str, value: Any) -> "Override":
        scope, key = split_override(text)
        return cls(text, scope, key, value)

    def rescoped(self, scope: str) -> "Override":
        """The same override limited to ``scope`` (a protocol's alias mapped to the model it trains)."""
        return Override(f"{scope}.{self.text.partition('.')[2]}", scope, self.key, self.value)


def parse_overrides(items: Iterable[str]) -> List[Override]:
    """``--set key=value`` items, each parsed once (a key given twice: the last value wins)."""
    out: Dict[str, Override] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"bad --set {item!r}: use key=value, e.g. --set train.steps=100")
        k, _, v = item.partition("=")
        if not k.strip():
            raise ConfigError(f"bad --set {item!r}: the key is empty; use key=value, e.g. --set train.steps=100")
        out.pop(k.strip(), None)
        out[k.strip()] = Override.of(k.strip(), v.strip())
    return list(out.values())


def as_overrides(overrides: Any) -> List[Override]:
    """None, a ``{key: value}`` dict (the Python API) or a list of Override -> a list of Override."""
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return [Override.of(str(k), v) for k, v in overrides.items()]
    return list(overrides)


def split_override(key: str) -> tuple:
    """``(scope, dotted key)``: scope None for a global key, else the model name it is scoped to."""
    head, _, rest = key.partition(".")
    if head in SECTIONS or not rest:
        return None, key
    return head, rest if rest.partition(".")[0] in ("train", "eval") else f"model.{rest}"


def applies(cfg: RunConfig, key: str, model_cls=None) -> bool:
    """Whether a global override reaches this cell: train/eval keys always; a model key where the model's
    config has it and uses it (``GenerativeModel.inactive_keys``)."""
    if not key.startswith("model."):
        return True
    name = key.partition(".")[2]
    if cfg.model_cfg is None or not has_key(cfg, key):
        return False
    inactive = model_cls.inactive_keys(cfg.model_cfg) if model_cls is not None else ()
    return name not in inactive


# ---- machine-dependent values ------------------------------------------------------------------------
def available_cpus() -> int:
    """CPUs this process may run on (affinity), capped by $OMP_NUM_THREADS when set."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp)) if n else int(omp)
    return max(1, n)


def resolve_device(device: str) -> str:
    if not _DEVICE.match(device):
        raise ConfigError(f"train.device={device!r} is not valid: use auto, cpu, cuda or cuda:N")
    import torch
    cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if device.startswith("cuda"):
        if not cuda:
            raise ConfigError(f"train.device={device} but no CUDA device is available here; use "
                              f"--set train.device=cpu (or auto)")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"train.device={device} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def _device_type(device: str) -> str:
    return device.partition(":")[0]


def dataset_resolution(dataset: str) -> int:
    """Image side of a registered dataset (or ``folder:PATH@RES``), without loading it."""
    from .datasets import DATASETS, parse_folder_name
    if dataset.startswith("folder:"):
        return parse_folder_name(dataset)[1]
    return int(DATASETS.meta(dataset).get("resolution", 0))


# ---- resolution --------------------------------------------------------------------------------------
def preset_layers(model: str, budget: str, resolution: int) -> List[tuple]:
    """(source, keys) of a registered model's presets at a budget: each name of its ``base`` chain, most general
    first, with the budget's keys then its ``budget@resolution`` refinement."""
    from models import MODELS
    from models.base import preset_chain
    out = []
    for name in preset_chain(model):
        presets = MODELS.meta(name).get("presets", {})
        out.append((f"preset {name} ({budget})", presets.get(budget, {})))
        out.append((f"preset {name}@{resolution} ({budget})", presets.get(f"{budget}@{resolution}", {})))
    return out


def resolve(model: str, *, dataset: str = "digits", budget: str = "cpu", seed: int = 0, protocol: str = "",
            overrides: Optional[Any] = None, protocol_settings: Optional[Dict[str, Any]] = None,
            resolution: Optional[int] = None, world: int = 1, machine: bool = True,
            registered: bool = True, recipe: Optional[str] = None) -> RunConfig:
    """One cell's configuration (see the module docstring for the order); checked before it is returned.

    ``overrides``: a list of :class:`Override` (or a ``{key: value}`` dict, parsed here).
    ``registered=False`` resolves a cell that trains no model (Table 7's real subsets): train/eval keys only.
    ``machine=False`` leaves ``threads=0`` / ``device=auto`` unresolved (for tests of the layering).
    ``recipe``: an optimisation recipe (:mod:`models.recipes`) layered over the presets; None = the budget's default
    for this model (``paper`` at the paper budget for the paper's models, else ``preset``)."""
    from models import MODELS, default_config  # local import: config is importable without building models

    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; valid budgets: {', '.join(BUDGETS)}")
    model_cls = MODELS.get(model) if registered else None
    cfg = RunConfig(model=model, dataset=dataset, budget=budget, seed=seed, protocol=protocol,
                    model_cfg=default_config(model) if registered else None, world=world)
    if registered:
        for key in MODELS.meta(model)["defaults"]:
            cfg.sources[f"model.{key}"] = f"registration of {model}"
    res = dataset_resolution(dataset) if resolution is None else resolution
    layers = [(f"budget {budget}", BUDGETS[budget])]
    layers += preset_layers(model, budget, res) if registered else []
    if registered:
        from models.recipes import recipe_for
        chosen = recipe_for(recipe, model_cls, budget)
        cfg.recipe = chosen.name
        layers += [(f"recipe {chosen.name} ({chosen.source})", chosen.keys)]
    elif recipe is not None:
        from models.recipes import RECIPES
        RECIPES.get(recipe)          # an unknown name is an error for every cell
    layers += [(f"protocol {protocol}", protocol_settings or {})]
    for source, layer in layers:
        for key, value in layer.items():
            key = key if "." in key else f"model.{key}"
            if source.startswith("recipe ") and not applies(cfg, key, model_cls):
                continue             # a model key the model lacks or does not use (the GAN has no lc_scale)
            set_value(cfg, key, value, source)
    _apply_overrides(cfg, model_cls, as_overrides(overrides))
    if machine:
        _resolve_machine(cfg)
    validate(cfg, model_cls)
    return cfg


def _apply_overrides(cfg: RunConfig, model_cls, overrides: List["Override"]) -> None:
    for o in overrides:                       # global keys first, then the model-scoped ones (they win)
        if o.scope is None and applies(cfg, o.key, model_cls):
            set_value(cfg, o.key, o.value, f"--set {o.text}")   # an unknown train/eval key: the error names it
            cfg.applied.append(o.text)
    for o in overrides:
        if o.scope == cfg.model:
            set_value(cfg, o.key, o.value, f"--set {o.text}")
            cfg.applied.append(o.text)


def _resolve_machine(cfg: RunConfig) -> None:
    if cfg.train.threads == 0:
        cfg.train.threads = available_cpus()
        cfg.sources["train.threads"] = "machine (affinity / $OMP_NUM_THREADS)"
    resolved = resolve_device(cfg.train.device)
    if resolved != cfg.train.device:
        cfg.sources["train.device"] = f"machine ({cfg.train.device})"
        cfg.train.device = resolved
    if cfg.train.autocast == "auto":
        cfg.train.autocast = "bf16" if native_bf16(cfg.train.device) else "off"
        cfg.sources["train.autocast"] = f"machine (auto: {'native' if cfg.train.autocast == 'bf16' else 'no'} bf16)"


def native_bf16(device: str) -> bool:
    """Whether ``device`` runs bfloat16 convolutions and matmuls natively (CPU: oneDNN with AVX512-BF16 or AMX;
    CUDA: compute capability 8.0+). Without it torch emulates bf16, slower than fp32."""
    import torch
    if _device_type(device) == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def parse_phase_lr(text: str) -> Dict[str, float]:
    """``train.phase_lr`` as a mapping: ``"gen=5e-4, disc=2e-3"`` -> {"gen": 5e-4, "disc": 2e-3}."""
    out: Dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        phase, sep, value = item.partition("=")
        try:
            lr = float(value) if sep and phase.strip() else float("nan")
        except ValueError:
            lr = float("nan")
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"train.phase_lr: bad entry {item!r}; use phase=lr with lr > 0, e.g. gen=5e-4")
        out[phase.strip()] = lr
    return out


def _phase_lr_errors(cfg: RunConfig, model_cls) -> List[str]:
    try:
        lrs = parse_phase_lr(cfg.train.phase_lr)
    except ConfigError as e:
        return [str(e)]
    if not lrs or model_cls is None or cfg.model_cfg is None:
        return []
    phases = {ph for st in model_cls.stage_plan(cfg.model_cfg, cfg.train.steps) for ph in st.phases}
    unknown = sorted(set(lrs) - phases)
    return [f"train.phase_lr names phase(s) {', '.join(unknown)} that {cfg.model} does not train; its phases: "
            f"{', '.join(sorted(phases))}"] if unknown else []


def validate(cfg: RunConfig, model_cls=None) -> None:
    """Ranges and choices of every section, and the checks across keys; one line naming every bad key."""
    errors = check(cfg.train, "train") + check(cfg.eval, "eval") + _phase_lr_errors(cfg, model_cls)
    if cfg.model_cfg is not None and dataclasses.is_dataclass(cfg.model_cfg):
        errors += check(cfg.model_cfg, "model")
    if not _DEVICE.match(cfg.train.device):
        errors.append(f"train.device={cfg.train.device!r} must be auto, cpu, cuda or cuda:N")
    e = cfg.eval
    if e.select == "val_bpd" and cfg.train.val_every <= 0:
        errors.append("eval.select=val_bpd needs train.val_every > 0 (validation BPD is what selects the checkpoint)")
    if e.n_samples < e.prd_clusters:
        errors.append(f"eval.n_samples={e.n_samples} must be >= eval.prd_clusters={e.prd_clusters}")
    if e.n_samples <= e.prdc_k:
        errors.append(f"eval.n_samples={e.n_samples} must be > eval.prdc_k={e.prdc_k}")
    if e.snapshots > cfg.train.steps and cfg.sources.get("eval.snapshots", "").startswith("--set"):
        errors.append(f"eval.snapshots={e.snapshots} is more than train.steps={cfg.train.steps} (at most one "
                      f"snapshot per step)")
    if errors:
        raise ConfigError(f"{cfg.model}: " + "; ".join(errors))


def snapshot_steps(steps: int, n: int) -> List[int]:
    """The steps of the main stage after which a snapshot is evaluated: ``n`` evenly spaced, the last at ``steps``
    (every step when ``n >= steps``: the rounded spacing then takes every value, so it is not enumerated)."""
    if n <= 0:
        return []
    if n >= steps:
        return list(range(1, steps + 1))
    return sorted({max(1, round(i * steps / n)) for i in range(1, n + 1)})


def stage_plan(cfg: RunConfig) -> List[dict]:
    """The stages this cell will train, each bounded by ``train.steps`` (shown by the dry run)."""
    from models import MODELS
    cls = MODELS.get(cfg.model)
    plan = [dataclasses.replace(s, steps=min(int(s.steps), cfg.train.steps))
            for s in cls.stage_plan(cfg.model_cfg, cfg.train.steps)]
    return [{"stage": s.name, "phases": list(s.phases), "steps": s.steps,
             **({"until": f"validation bound stops improving ({cfg.train.plateau_patience} checks of "
                          f"{cfg.train.plateau_every} steps), at most {s.steps} steps"}
                if s.plateau and cfg.train.plateau_patience > 0 else {})} for s in plan]


def provenance(cfg: RunConfig) -> Dict[str, Dict[str, Any]]:
    """{dotted key: {"value", "from"}} for every key of the three sections (``default of <Config>`` where no
    layer set it)."""
    out: Dict[str, Dict[str, Any]] = {}
    for section in SECTIONS:
        obj = _section(cfg, section) if section != "model" or cfg.model_cfg is not None else None
        if obj is None:
            continue
        for f in fields(obj):
            key = f"{section}.{f.name}"
            out[key] = {"value": getattr(obj, f.name), "from": cfg.sources.get(key, f"default of {type(obj).__name__}")}
    return out


def save_config(cfg: RunConfig, path) -> None:
    atomic_write(path, json.dumps({**cfg.to_dict(), "config_hash": cfg.hash(), "sources": cfg.sources},
                                  indent=2, sort_keys=True, default=str))
