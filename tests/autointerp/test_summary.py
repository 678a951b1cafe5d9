"""The summary format: its typed form writes back exactly what it read, and the
intervals and warnings read from it."""

import json
from pathlib import Path

from transcoders.autointerp import summary

RESULTS = Path(__file__).parents[2] / "reproductions" / "results" / "embedded" / "results.json"


def test_committed_summary_round_trips():
    data = json.loads(RESULTS.read_text())["autointerp"]
    typed = summary.Summary.from_dict(data)
    assert json.dumps(typed.to_dict()) == json.dumps(data)
    group = typed.groups[0]
    assert group.intervals["real", group.headline] == summary.interval(data["groups"][0], group.headline)
    assert summary.interval(data["groups"][0], "f1", "shuffled") is None


def test_control_warning_names_only_unseparated_groups():
    def group(arch, low):
        return {"architecture": arch, "hookpoint": "layers.0.mlp", "scorer": "embedding",
                "headline": "auroc", "real_minus_shuffled_auroc": low,
                "real_minus_shuffled_auroc_low": low, "real_minus_shuffled_auroc_high": low}

    groups = [group("sae", -0.01), group("transcoder", 0.05), group("skip", None)]
    warnings = summary.control_warnings({"groups": groups})
    assert len(warnings) == 2
    assert warnings[0].startswith("sae at layers.0.mlp: embedding") and "-0.010" in warnings[0]
    assert warnings[1].startswith("skip at layers.0.mlp")
    assert summary.control_warnings(None) == []
