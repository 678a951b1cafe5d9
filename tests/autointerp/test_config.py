"""AutointerpConfig checks its values and names the flag the command line spells."""

import re

import pytest

from transcoders.autointerp.cli import autointerp_command
from transcoders.autointerp.config import AutointerpConfig
from transcoders.validation import ConfigError

FLAGS = {opt for param in autointerp_command.params for opt in param.opts}
NUMBERS = [name for name, value in vars(AutointerpConfig()).items()
           if isinstance(value, (int, float)) and not isinstance(value, bool)]


@pytest.mark.parametrize("field", NUMBERS)
def test_every_number_is_checked_and_named_by_its_flag(field):
    with pytest.raises(ConfigError) as err:
        AutointerpConfig(**{field: -1})
    flag = re.match(r"--[\w-]+", str(err.value)).group()
    assert flag in FLAGS, f"{field}: the error names {flag}, which the command does not have"


def test_device_auto_is_resolved_and_unknown_devices_are_named():
    assert AutointerpConfig(device="auto").device in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="--device"):
        AutointerpConfig(device="tpu")
