"""Labels that tell configurations of one model apart: the resolved-config keys in which they differ.

Each run stores its resolved config (``runs.config``: model / dataset / budget / train / eval / model_cfg
sections).  When one (protocol, model) appears with several configurations in the same table, plot or
gallery, each is labelled with the keys whose values differ between them, in the spelling of ``--set``
(``train.steps=600``, ``model.adv_weight=10``).  A model with one configuration gets no label.
"""
from __future__ import annotations

import hashlib
import json
from typing import Dict, Iterable, List, Optional, Tuple

from .tables import group_of

#: keys that change nothing that is trained or measured (protocols.config NOT_HASHED, the seed, provenance)
IGNORED = {"seed", "protocol", "sources", "train.log_every", "train.sample_every", "train.ckpt_every",
           "train.progress", "eval.inception_weights"}
SECTION_ORDER = ("recipe", "train.", "model.", "eval.")
MAX_KEYS = 3
MAX_VALUE = 24


def configs_by_group(runs: Iterable[dict]) -> Dict[str, Tuple[dict, str]]:
    """group -> (resolved config of its newest run that recorded one, config hash)."""
    out: Dict[str, Tuple[dict, str]] = {}
    for r in runs:   # ordered oldest first: the newest wins
        cfg = r.get("config") if isinstance(r.get("config"), dict) else {}
        g = group_of(r)
        if cfg or g not in out:
            out[g] = (cfg, r.get("config_hash") or "")
    return out


def flatten(cfg: dict, prefix: str = "") -> Dict[str, object]:
    """{"train": {"steps": 3}, "model_cfg": {"w": 1}} -> {"train.steps": 3, "model.w": 1}."""
    out: Dict[str, object] = {}
    for k, v in cfg.items():
        name = f"{prefix}{'model' if (k == 'model_cfg' and not prefix) else k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        elif isinstance(v, (list, tuple)):
            out[name] = json.dumps(v, default=str)
        else:
            out[name] = v
    return {k: v for k, v in out.items() if k not in IGNORED}


def _key_rank(key: str) -> tuple:
    rank = next((i for i, p in enumerate(SECTION_ORDER) if key.startswith(p)), len(SECTION_ORDER))
    return (rank, key)


def value_text(v: object) -> str:
    text = "none" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "\u2026"


def differing_keys(flats: List[Dict[str, object]]) -> List[str]:
    """Keys whose value (or presence) differs between the flattened configs."""
    def sig(f: Dict[str, object], k: str) -> str:
        return json.dumps(f[k], default=str, sort_keys=True) if k in f else "\x00absent"
    keys = {k for f in flats for k in f}
    return sorted((k for k in keys if len({sig(f, k) for f in flats}) > 1), key=_key_rank)


def diff_labels(members: Dict[str, Tuple[str, str]], configs: Dict[str, Tuple[dict, str]]
                ) -> Dict[str, Tuple[str, str]]:
    """members: group -> (protocol, model) of the groups shown together.  Returns group -> (label, title)
    for every group whose (protocol, model) has more than one configuration among ``members``."""
    by_model: Dict[Tuple[str, str], List[str]] = {}
    for g, pm in members.items():
        by_model.setdefault(pm, []).append(g)
    out: Dict[str, Tuple[str, str]] = {}
    for groups in by_model.values():
        if len(groups) > 1:
            out.update(_label_groups(sorted(groups), configs))
    return out


def _label_groups(groups: List[str], configs: Dict[str, Tuple[dict, str]]) -> Dict[str, Tuple[str, str]]:
    known = {g: configs.get(g, ({}, "")) for g in groups}
    flats = {g: flatten(cfg) for g, (cfg, _) in known.items()}
    diff = differing_keys([flats[g] for g in groups]) if all(flats.values()) else []
    out = {}
    for g in groups:
        cfg_hash = known[g][1]
        if diff:
            parts = [f"{k}={value_text(flats[g].get(k))}" for k in diff]
            label = ", ".join(parts[:MAX_KEYS]) + (f" +{len(parts) - MAX_KEYS} more" if len(parts) > MAX_KEYS else "")
            title = "differs from the other configurations of this model in: " + ", ".join(parts)
        else:   # same resolved config: the data, the extractor or the code told them apart
            label = f"cfg {cfg_hash}" if cfg_hash else f"group {_short(g)}"
            title = f"configuration {cfg_hash or 'not recorded'}; group {_short(g)} (dataset content or " \
                    f"extractor identity differ)"
        out[g] = (label, title)
    if len({v[0] for v in out.values()}) < len(out):   # still ambiguous: add the group's short id
        out = {g: (f"{label} [{_short(g)}]", title) for g, (label, title) in out.items()}
    return out


def _short(group: str) -> str:
    return hashlib.sha1(group.encode()).hexdigest()[:8] if "\x1f" in group else group[:8]


def label_for(group: str, labels: Dict[str, Tuple[str, str]], model: str) -> str:
    """'model' or 'model [label]' for figures and legends."""
    label: Optional[Tuple[str, str]] = labels.get(group)
    return f"{model} [{label[0]}]" if label else model
