"""Every command-line default is the default of the config the command feeds (a
dataclass, or the function it calls), so a default is written once: change it in
the config, or write a different one in an option, and this fails."""

from __future__ import annotations

import inspect
import operator
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Callable
from pathlib import Path

import pytest

from transcoders.autointerp.config import AutointerpConfig
from transcoders.browse.site import build_site
from transcoders.cli import main
from transcoders.evaluation.evaluate import EvalConfig
from transcoders.export.api import export
from transcoders.training.config import TrainingConfig

REQUIRED = "<required>"
"""Stands for the default of a field or keyword that has none."""


@dataclass
class Target:
    """What a command hands its options to, and where options and fields do not pair
    up by name."""

    config: Callable | None
    """The dataclass or function; None for a command without options."""
    args: list[str] = field(default_factory=list)
    """The required arguments, `{dir}` standing for an existing folder."""
    renamed: dict[str, tuple[str, Callable[[Any], Any]]] = field(default_factory=dict)
    """Option -> (field, how the command converts the option's value for it)."""
    cli_only: dict[str, str] = field(default_factory=dict)
    """Option -> why it sets no field."""
    cli_less: dict[str, str] = field(default_factory=dict)
    """Field -> why no option sets it."""


TARGETS = {
    "architectures": Target(None),
    "train": Target(
        TrainingConfig, ["--out", "{dir}/run"],
        renamed={"no_truncate": ("truncate", operator.not_)},
        cli_only={"resume": "an argument of train(), not part of the run's config",
                  "overwrite": "an argument of train(), not part of the run's config"},
    ),
    "evaluate": Target(EvalConfig, ["{dir}"]),
    "autointerp": Target(
        AutointerpConfig, ["{dir}"],
        cli_only={"run_dir": "passed to run_autointerp beside the config, not in it"},
    ),
    "browse": Target(build_site, ["{dir}"]),
    "export": Target(
        export, ["{dir}", "--to", "saelens", "{dir}/out"],
        # A repeatable option gives () when absent; the command passes None for it.
        renamed={"architectures": ("architectures", lambda v: list(v) or None)},
        cli_only={"check": "--verify runs verify() on the written files after export()"},
    ),
}


def defaults(config: Callable) -> dict[str, Any]:
    """Each field of a dataclass, or keyword of a function, with its default."""
    if is_dataclass(config):
        return {
            f.name: f.default if f.default is not MISSING
            else f.default_factory() if f.default_factory is not MISSING
            else REQUIRED
            for f in fields(config)
        }
    return {name: REQUIRED if p.default is p.empty else p.default
            for name, p in inspect.signature(config).parameters.items()}


def test_every_command_is_checked():
    assert set(main.commands) == set(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_option_defaults_are_the_config_defaults(name, tmp_path):
    command, target = main.commands[name], TARGETS[name]
    if target.config is None:
        assert command.params == []
        return
    expected = defaults(target.config)
    # Parsed as the command sees them, callbacks included: a comma-joined default
    # such as --arch's arrives as the list the dataclass holds.
    args = [a.format(dir=tmp_path) for a in target.args]
    parsed = command.make_context(name, args).params
    for param in command.params:
        if param.name in target.cli_only:
            continue
        name_in_config, convert = target.renamed.get(param.name, (param.name, None))
        assert name_in_config in expected, f"{param.name} sets nothing in {target.config}"
        default = expected[name_in_config]
        if param.required:
            assert default is REQUIRED, f"{param.name} is required but has a default"
            continue
        value = parsed[param.name] if convert is None else convert(parsed[param.name])
        # The type too: an int default would make click reject `--timeout 2.5`.
        assert (type(value), value) == (type(default), default), (
            f"{name} {'/'.join(param.opts)}: the command line's default is {value!r}, "
            f"{target.config.__name__}.{name_in_config}'s is {default!r}"
        )


@pytest.mark.parametrize("name", sorted(n for n, t in TARGETS.items() if t.config))
def test_every_field_has_an_option_or_a_reason(name):
    command, target = main.commands[name], TARGETS[name]
    params = {p.name for p in command.params}
    assert set(target.cli_only) <= params, "cli_only names an option the command lacks"
    reached = {target.renamed.get(p, (p, None))[0] for p in params - set(target.cli_only)}
    unreached = set(defaults(target.config)) - reached
    assert unreached == set(target.cli_less), (
        f"fields without an option: {sorted(unreached - set(target.cli_less))}; "
        f"listed as CLI-less but reachable: {sorted(set(target.cli_less) - unreached)}"
    )


def test_evaluate_falls_back_to_the_train_defaults_its_help_quotes():
    """`evaluate --help` quotes TrainingConfig's defaults for a directory without a
    run manifest; resolve must fill in those same values."""
    train = TrainingConfig(out="")
    got = EvalConfig(run_dir="plain", model="m", device="cpu").resolve(None)
    assert (got.tokens, got.dataset, got.eval_split, got.ctx_len, got.seed) == (
        train.eval_tokens, train.dataset, train.eval_split, train.ctx_len, train.seed
    )


def test_autointerp_retries_help_quotes_the_http_clients_worst_case():
    from transcoders.autointerp.clients.http import HTTPClient

    cfg = AutointerpConfig()
    # As pipeline.py builds the client from the config.
    client = HTTPClient("m", "http://127.0.0.1:9/v1", timeout_s=cfg.timeout,
                        max_retries=cfg.retries)
    retries = next(p for p in main.commands["autointerp"].params if p.name == "retries")
    assert f"{client.worst_case_s():g} s by default" in retries.help


def test_clients_guide_quotes_the_default_worst_case():
    from transcoders.autointerp.clients.http import HTTPClient

    cfg = AutointerpConfig()
    client = HTTPClient("m", "http://127.0.0.1:9/v1", timeout_s=cfg.timeout,
                        max_retries=cfg.retries)
    guide = Path(__file__).parents[1] / "docs" / "guides" / "autointerp-clients.md"
    row = next(line for line in guide.read_text().splitlines() if "(default) |" in line)
    assert row.startswith(f"| {cfg.timeout:g} (default) | {cfg.retries} (default) |"), row
    assert row.endswith(f"= {client.worst_case_s():g} s |"), row
