"""edge_affectsr/config.py: YAML/TOML configs validated by pydantic schemas; errors name the key."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr import landmark_graph, protocol
from edge_affectsr.config import ConfigError, apply_overrides, load_config, parse_set, read_mapping, validate
from edge_affectsr.config_doc import commented_yaml

from schema_docs import undescribed_keys

CONFIG_DIR = Path(__file__).resolve().parents[2] / "distill" / "configs"
SCHEMAS = {  # config ``kind`` -> the schema its training command loads it with
    "teacher": "edge_affectsr.distill.train_teacher:TeacherTrainingConfig",
    "student": "edge_affectsr.distill.train_student:StudentTrainingConfig",
}


class Train(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = 1e-3
    steps: int = 10


class Tiny(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    train: Train = Field(default_factory=Train)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def schema_for(kind: str):
    module, cls = SCHEMAS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


# --- the tiny local schema ----------------------------------------------------------------------------


def test_yaml_loads_into_the_schema(tmp_path):
    cfg = load_config(write(tmp_path, "c.yaml", "name: run1\ntrain:\n  lr: 0.5\n"), Tiny)
    assert isinstance(cfg, Tiny)
    assert cfg.name == "run1" and cfg.train.lr == 0.5 and cfg.train.steps == 10  # default kept


def test_toml_works_too(tmp_path):
    cfg = load_config(write(tmp_path, "c.toml", 'name = "run2"\n[train]\nsteps = 3\n'), Tiny)
    assert cfg.name == "run2" and cfg.train.steps == 3 and cfg.train.lr == 1e-3


def test_unknown_key_is_named_with_its_dotted_path(tmp_path):
    path = write(tmp_path, "c.yaml", "name: x\ntrain:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, Tiny)
    msg = str(info.value)
    assert "train.lrr" in msg and "unknown key" in msg and str(path) in msg


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.steps") as info:
        load_config(write(tmp_path, "c.yaml", "name: x\ntrain:\n  steps: many\n"), Tiny)
    assert "integer" in str(info.value)


def test_every_offending_key_is_listed(tmp_path):
    path = write(tmp_path, "c.yaml", "train:\n  steps: many\n  lrr: 1\nextra: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, Tiny)
    msg = str(info.value)
    for key in ("name", "train.steps", "train.lrr", "extra"):
        assert f"  {key}:" in msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", Tiny)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path, Tiny)  # a folder is not a config file


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])  # an empty file is {}: test_config_hostile.py
def test_non_mapping_yaml(tmp_path, text):
    with pytest.raises(ConfigError, match="mapping"):
        read_mapping(write(tmp_path, "c.yaml", text))


def test_invalid_syntax(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_mapping(write(tmp_path, "c.yaml", "name: [unclosed\n"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_mapping(write(tmp_path, "c.toml", "name = \n"))


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        validate({"name": 1.5j}, Tiny, "inline")


def test_set_overrides_nested_values_keeping_their_types(tmp_path):
    path = write(tmp_path, "c.yaml", "name: run1\ntrain:\n  lr: 0.5\n")
    cfg = load_config(path, Tiny, ["train.lr=2e-4", "train.steps=7", "name=run 2"])
    assert cfg.train.lr == 2e-4 and cfg.train.steps == 7 and cfg.name == "run 2"
    assert read_mapping(path)["train"]["lr"] == 0.5  # the file itself is untouched


def test_set_of_an_unknown_key_is_named(tmp_path):
    path = write(tmp_path, "c.yaml", "name: x\n")
    with pytest.raises(ConfigError, match=r"(?s)--set train.lrr=1.*train\.lrr: unknown key"):
        load_config(path, Tiny, ["train.lrr=1"])


@pytest.mark.parametrize("item, why", [("train.lr", "KEY=VALUE"), ("=3", "KEY=VALUE"),
                                       ("name.first=x", "not a section"), ("train.lr=[1", "not valid YAML")])
def test_malformed_set_items_are_refused(tmp_path, item, why):
    with pytest.raises(ConfigError, match=why):
        load_config(write(tmp_path, "c.yaml", "name: x\n"), Tiny, [item])


def test_set_items_parse_as_yaml_values():
    assert parse_set(["a.b=1", "c=[1, 2]", "d=true", "e=2e-4", "f="]) == {
        "a.b": 1, "c": [1, 2], "d": True, "e": "2e-4", "f": None}


def test_overrides_create_sections_and_replace_a_section_given_whole():
    """The device's CLI flags: Python values, not text; ``capture.source`` from --source replaces the file's."""
    data = {"capture": {"source": {"kind": "folder", "path": "x"}, "fps": 5}, "empty": None}
    out = apply_overrides(data, {"capture.source": {"kind": "builtin"}, "http.port": 9100, "empty.key": 1})
    assert out == {"capture": {"source": {"kind": "builtin"}, "fps": 5}, "http": {"port": 9100}, "empty": {"key": 1}}
    assert data["capture"]["source"] == {"kind": "folder", "path": "x"}  # the input is untouched


def test_an_override_through_a_scalar_is_refused():
    with pytest.raises(ConfigError, match="cannot set name.first: 'name' is not a section"):
        apply_overrides({"name": "x"}, {"name.first": "y"})


class Documented(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("run", description="the run's name")
    path: Path | None = Field(None, description="where; null: nowhere")
    tiles: tuple[int, int] = Field((3, 2), description="a grid " + "and more words " * 10)
    train: Train = Field(default_factory=Train, description="the optimiser")


def test_commented_yaml_documents_every_key_and_loads_back():
    cfg = Documented(path=Path("/tmp/x"), train=Train(lr=2e-4))
    text = commented_yaml(cfg, "Header line one\nline two")
    assert text.startswith("# Header line one\n# line two\n# the run's name\nname: run\n")
    assert "tiles: [3, 2]\n" in text and "path: /tmp/x\n" in text
    assert "\n# the optimiser\ntrain:\n  lr: 0.0002\n  steps: 10\n" in text  # a section: indented, a blank line above
    assert all(len(line) <= 100 for line in text.splitlines())  # long descriptions are wrapped
    assert Documented.model_validate(yaml.safe_load(text)) == cfg


# --- the real teacher schema --------------------------------------------------------------------------


def test_teacher_schema_from_yaml(tmp_path):
    from edge_affectsr.distill.train_teacher import TeacherTrainingConfig

    text = "model:\n  nf: 8\n  landmark_subset: contours\ntrain:\n  iterations: 5\n  lr: 1.0e-3\n"
    cfg = load_config(write(tmp_path, "t.yaml", text), TeacherTrainingConfig)
    assert cfg.model.nf == 8 and cfg.model.landmark_subset == "contours"
    assert cfg.train.iterations == 5 and cfg.train.lr == 1e-3
    assert cfg.model.gc == TeacherTrainingConfig().model.gc  # untouched keys keep their defaults


@pytest.mark.parametrize("text, key", [
    ("train:\n  lrr: 0.1\n", "train.lrr"),
    ("model:\n  gcn_layers: three\n", "model.gcn_layers"),
    ("data:\n  degradation: fog\n", "data.degradation"),
    ("data:\n  degradation:\n    blur_pp: 0.5\n", "data.degradation.blur_pp"),
    ("data:\n  degradations:\n    blur: true\n", "data"),
    ("loss:\n  pixel: heavy\n", "loss.pixel"),
])
def test_teacher_schema_errors_name_the_key(tmp_path, text, key):
    from edge_affectsr.distill.train_teacher import TeacherTrainingConfig

    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "t.yaml", text), TeacherTrainingConfig)
    assert f"  {key}:" in str(info.value)


# --- the configs shipped with the project ---------------------------------------------------------------


def shipped_configs() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.yaml"))


def test_there_are_shipped_configs():
    assert any(p.name.startswith("teacher") for p in shipped_configs())


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_training_schemas_describe_every_key(kind):
    try:
        schema = schema_for(kind)
    except ImportError as e:  # the distill extra is not installed here
        pytest.skip(f"cannot import the {kind} schema: {e}")
    assert undescribed_keys(schema) == []


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.name)
def test_shipped_config_validates(path):
    raw = yaml.safe_load(path.read_text())
    kind = raw.get("kind")
    assert kind in SCHEMAS, f"{path.name}: kind {kind!r} has no known training schema"
    try:
        schema = schema_for(kind)
    except ImportError as e:  # the distill extra is not installed here
        pytest.skip(f"cannot import the {kind} schema: {e}")
    cfg = load_config(path, schema)
    assert cfg.kind == kind
    assert cfg.model.scale in protocol.SCALES
    subset = getattr(cfg.model, "landmark_subset", "full")
    assert subset in landmark_graph.SUBSETS
    # what the file says is what the schema holds (nothing silently dropped or renamed)
    dumped = cfg.model_dump(mode="json")
    for section in ("model", "loss", "train"):
        for key, value in (raw.get(section) or {}).items():
            assert dumped[section][key] == value, f"{path.name}: {section}.{key}"
