"""Training every architecture with sparsify's Trainer on one shared token stream."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
import torch.distributed as dist
from sparsify import SparseCoder, TrainConfig

from .. import architectures
from ..atomic import write_json
from ..checkpoints import MANIFEST_FILE
from ..data import CorpusError, load_corpus, load_model, tokenize
from ..errors import UserError
from ..hookpoints import check_applicable, module_widths, resolve_hookpoints
from .allocator import keep_freed_memory
from .checkpoint import AtomicTrainer, recover
from .config import TrainingConfig
from .heldout import heldout_fvu
from .replay import REPLAY_BUDGET_BYTES, ActivationReplay, replay_bytes
from .truncate import truncated


class RunDirError(UserError, ValueError):
    """The output directory holds something this run must not overwrite."""


def _versions() -> dict[str, str]:
    found = {}
    for pkg in ("transcoders", "eai-sparsify", "eai-delphi", "torch", "transformers", "datasets"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = "not installed"
    return found


def _hardware(device: torch.device) -> dict[str, str | int]:
    info: dict[str, str | int] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count() or 0,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if dist.is_initialized():
        info["world_size"] = dist.get_world_size()
    return info


def prepare_run_dir(cfg: TrainingConfig, *, resume: bool, overwrite: bool) -> dict:
    """Check `cfg.out` is safe to write to; return the manifest to continue from."""
    out = Path(cfg.out)
    manifest_path = out / MANIFEST_FILE
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        same = old.get("identity") == cfg.identity()
        finished = all(
            old.get("architectures", {}).get(a, {}).get("status") == "complete"
            for a in cfg.architectures
        )
        if overwrite:
            shutil.rmtree(out)
        elif not same:
            diff = sorted(
                k for k, v in cfg.identity().items() if old.get("identity", {}).get(k) != v
            )
            raise RunDirError(
                f"{out} holds a different run (differs in: {', '.join(diff)}). "
                "Pass --overwrite to replace it, or choose another --out."
            )
        elif resume:
            return old
        elif finished:
            raise RunDirError(
                f"{out} already holds this run, complete. Pass --overwrite to retrain."
            )
        else:
            raise RunDirError(
                f"{out} holds an unfinished run of this config. Pass --resume to "
                "continue from its last checkpoint, or --overwrite to start again."
            )
    elif out.exists() and any(out.iterdir()):
        raise RunDirError(
            f"{out} is not empty and holds no {MANIFEST_FILE}: not a transcoders run. "
            "Choose an empty or new directory."
        )
    return {}


def _device(name: str) -> torch.device:
    if dist.is_initialized():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def init_distributed() -> bool:
    """Join the process group when launched by torchrun, as sparsify's CLI does."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None or dist.is_initialized():
        return dist.is_initialized()
    torch.cuda.set_device(int(local_rank))
    dist.init_process_group("nccl", timeout=timedelta(hours=12))
    return True


def train(
    cfg: TrainingConfig, *, resume: bool = False, overwrite: bool = False
) -> dict:
    """Train every architecture in `cfg` on the same tokens; return the manifest.

    Checkpoints land in sparsify's layout, `<out>/<arch>/<hookpoint>/`, and the
    manifest is rewritten after each architecture, so an interrupted run keeps the
    architectures it finished and `resume=True` continues the one it was on. On glibc
    it also keeps freed memory in the process heap for the rest of the process
    (`training/allocator.py`).
    """
    archs = [architectures.get(name) for name in cfg.architectures]
    rank_zero = not dist.is_initialized() or dist.get_rank() == 0
    manifest = prepare_run_dir(cfg, resume=resume, overwrite=overwrite) if rank_zero else {}
    if dist.is_initialized():
        dist.barrier()

    device = _device(cfg.device)
    model, tokenizer = load_model(cfg.model, device=device)
    hookpoints = resolve_hookpoints(model, cfg.hookpoints)
    widths = module_widths(model, hookpoints)
    num_latents = {
        hp: cfg.num_latents or d_out * cfg.expansion_factor
        for hp, (_, d_out) in widths.items()
    }
    for arch in archs:
        check_applicable(arch, widths, min(num_latents.values()), cfg.k)

    train_rows = tokenize(
        load_corpus(cfg.dataset, "train", hf_split=cfg.dataset_split),
        tokenizer, ctx_len=cfg.ctx_len, max_tokens=cfg.tokens, seed=cfg.seed,
    )
    eval_rows = tokenize(
        load_corpus(cfg.dataset, "eval", hf_split=cfg.eval_split),
        tokenizer, ctx_len=cfg.ctx_len, max_tokens=cfg.eval_tokens, seed=cfg.seed,
    )
    if dist.is_initialized():
        world = dist.get_world_size()
        train_rows = train_rows.select(range(len(train_rows) - len(train_rows) % world))
        train_rows = train_rows.shard(world, dist.get_rank())
    if len(train_rows) < cfg.batch_size:
        raise CorpusError(
            f"{len(train_rows)} training sequences is less than one batch "
            f"({cfg.batch_size}); raise --tokens or lower --batch-size"
        )

    manifest.update(
        format=1,
        identity=cfg.identity(),
        config={**cfg.to_dict(), "hookpoints": hookpoints},
        hookpoint_patterns=cfg.hookpoints,
        train_tokens=len(train_rows) * cfg.ctx_len,
        eval_tokens=len(eval_rows) * cfg.ctx_len,
        versions=_versions(),
        hardware=_hardware(device),
    )
    manifest.setdefault("architectures", {})
    out = Path(cfg.out)
    if rank_zero:
        write_json(out / MANIFEST_FILE, manifest)
    live_model = truncated(model, hookpoints) if cfg.truncate else model
    todo = [a for a in archs if manifest["architectures"].get(a.name, {}).get("status") != "complete"]
    itemsize = next(model.parameters()).element_size()
    if len(todo) > 1 and replay_bytes(len(train_rows), cfg.ctx_len, widths, itemsize) <= REPLAY_BUDGET_BYTES:
        start = time.perf_counter()
        train_model = ActivationReplay(live_model, hookpoints, train_rows, cfg.batch_size)
        manifest["activation_recording_s"] = time.perf_counter() - start
        forward = "replay"
    else:
        train_model = live_model
        forward = "truncated" if cfg.truncate else "full"

    keep_freed_memory()
    for arch in archs:
        if arch not in todo:
            print(f"{arch.name}: already complete, skipping")
            continue

        coder_cfg = arch.coder_config(
            k=cfg.k, expansion_factor=cfg.expansion_factor, num_latents=cfg.num_latents
        )
        train_cfg = TrainConfig(
            coder_cfg,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            hookpoints=hookpoints,
            init_seeds=[cfg.seed],
            save_dir=str(out),
            run_name=arch.name,
            save_every=cfg.save_every,
            log_to_wandb=False,
        )
        print(f"\n== {arch.name}: {arch.description}")
        trainer = AtomicTrainer(train_cfg, train_rows, train_model)
        previous = recover(out, arch.name) if resume else None
        if previous is not None:
            trainer.load_state(str(previous))
        resumed_step = trainer.global_step

        start = time.perf_counter()
        trainer.fit()
        wall = time.perf_counter() - start

        if rank_zero:
            coders = {
                hp: SparseCoder.load_from_disk(out / arch.name / hp, device=device)
                for hp in hookpoints
            }
            fvu = heldout_fvu(live_model, arch, coders, eval_rows, cfg.batch_size)
            manifest["architectures"][arch.name] = {
                "status": "complete",
                "description": arch.description,
                "reads": arch.reads,
                "coder_config": coder_cfg.to_dict(),
                "num_latents": num_latents,
                "wall_time_s": wall,
                "resumed_from_step": resumed_step,
                "forward": forward,
                "fvu": fvu,
            }
            write_json(out / MANIFEST_FILE, manifest)
            print(f"{arch.name}: held-out FVU {fvu} in {wall:.1f} s")
        if dist.is_initialized():
            dist.barrier()
    return manifest
