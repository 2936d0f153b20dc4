"""Typed config loading: unknown keys, wrong types, overrides, help text and the shipped configs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import yaml

from pretrain.config import ConfigError, PretrainConfig, config_to_dict, describe_config, load_config
from pretrain.methods import METHODS
from pretrain.typed_config import config_field, config_from_dict

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONFIGS = sorted((REPO / "configs" / "pretrain").glob("*.yaml"))


@dataclass(frozen=True)
class Inner:
    rate: float = config_field(0.5, help="a float")
    count: int = config_field(3, help="an int")
    flag: bool = config_field(False, help="a bool")


@dataclass(frozen=True)
class Outer:
    name: str = config_field(help="required text")
    mode: Literal["fast", "slow"] = config_field("fast", help="a choice")
    sizes: tuple[int, ...] = config_field((1, 2), help="ints")
    pair: tuple[float, float] = config_field((0.0, 1.0), help="two floats")
    tags: list[str] = config_field(default_factory=list, help="strings")
    limit: int | None = config_field(None, help="optional int")
    inner: Inner = config_field(default_factory=Inner, help="section")


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_nested_values_and_defaults() -> None:
    config = config_from_dict(Outer, {"name": "a", "sizes": [4, 5, 6], "inner": {"rate": 2}})
    assert config.sizes == (4, 5, 6)
    assert config.inner.rate == 2.0
    assert isinstance(config.inner.rate, float)
    assert config.inner.count == 3
    assert config.limit is None


def test_unknown_key_suggests_close_name() -> None:
    with pytest.raises(ConfigError) as error:
        config_from_dict(Outer, {"name": "a", "inner": {"rat": 1.0}})
    message = str(error.value)
    assert "unknown key 'inner.rat'" in message
    assert "did you mean 'inner.rate'" in message
    assert "rate, count, flag" in message


def test_unknown_section_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'optimm' \(did you mean 'optim'\?\)"):
        load_config(PretrainConfig, None, ["data.shards=x", "optimm.lr=1"])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"inner": {"count": True}}, "inner.count must be int, got bool True"),
        ({"inner": {"count": 2.5}}, "inner.count must be int, got float 2.5"),
        ({"inner": {"rate": "fast"}}, "inner.rate must be float, got str 'fast'"),
        ({"inner": {"flag": 1}}, "inner.flag must be bool, got int 1"),
        ({"mode": "medium"}, "mode must be one of 'fast' | 'slow', got 'medium'"),
        ({"sizes": [1, "x"]}, "sizes[1] must be int, got str 'x'"),
        ({"pair": [1.0]}, "pair must have 2 items"),
        ({"tags": "solo"}, "tags must be list of str, got str 'solo'"),
        ({"limit": "many"}, "limit must be int or null, got str 'many'"),
        ({"inner": 5}, "inner must be a mapping"),
    ],
)
def test_wrong_type_names_field_type_and_value(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_dict(Outer, {"name": "a", **data})
    assert expected in str(error.value)


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match="missing required key name"):
        config_from_dict(Outer, {})
    with pytest.raises(ConfigError, match="missing required key data.shards"):
        load_config(PretrainConfig, None, [])


def test_overrides_parse_yaml_values(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", {"data": {"shards": "s"}, "optim": {"lr": 0.1}})
    config = load_config(
        PretrainConfig, path, ["optim.lr=2e-4", "data.crop_scale=[0.5, 1]", "run.wandb_mode=disabled"]
    )
    assert config.optim.lr == pytest.approx(2e-4)
    assert config.data.crop_scale == (0.5, 1.0)
    assert config.run.wandb_mode == "disabled"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.lr", "expected section.key=value"),
        ("=3", "expected section.key=value"),
        ("optim..lr=3", "empty name"),
        ("data.shards.deep=1", "data.shards is a value, not a section"),
        ("optim.lr=[1", "not valid YAML"),
        ("optim.batch_size=true", "optim.batch_size must be int, got bool True"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("run.out_dir=2024", "quote the value"),
    ],
)
def test_bad_override(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(PretrainConfig, None, ["data.shards=s", override])
    assert expected in str(error.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(PretrainConfig, tmp_path / "missing.yaml", [])
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(PretrainConfig, broken, [])
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(PretrainConfig, listed, [])


def test_cross_field_check() -> None:
    with pytest.raises(ConfigError, match="cross_modal_weight > 0 needs data.modality 'audio_video'"):
        load_config(PretrainConfig, None, ["data.shards=s", "method.cross_modal_weight=1"])


def test_config_to_dict_round_trips_through_yaml(tmp_path: Path) -> None:
    config = load_config(PretrainConfig, None, ["data.shards=s", "data.crop_scale=[0.4, 0.9]", "run.seed=7"])
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(config)))
    assert load_config(PretrainConfig, path, []) == config


def test_every_field_has_help() -> None:
    rows = describe_config(PretrainConfig)
    assert len(rows) > 20
    for key, _type, _default, help_text in rows:
        assert help_text.strip(), f"{key} has no help text"


def test_sections_are_frozen() -> None:
    config = load_config(PretrainConfig, None, ["data.shards=s"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optim.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda path: path.name)
def test_shipped_configs_load(path: Path) -> None:
    config = load_config(PretrainConfig, path, [])
    assert config.method.name in METHODS


def test_shipped_configs_exist() -> None:
    assert {path.name for path in SHIPPED_CONFIGS} >= {"byol_tiny.yaml", "byol_av_full.yaml"}


def test_pretrain_help_lists_fields() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "pretrain.py"), "--help"], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert "optim.lr (float; default 0.001)" in result.stdout
    assert "data.shards (str; required)" in result.stdout


def test_pretrain_bad_config_exits_2(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", {"data": {"shards": "s", "crop_sise": 64}})
    result = subprocess.run(
        [sys.executable, str(REPO / "pretrain.py"), "--config", str(path)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("pretrain.py: error: unknown key 'data.crop_sise'")
    assert "Traceback" not in result.stderr
