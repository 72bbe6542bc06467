"""Recipes are validated before any Beam work starts; errors name the key (exit 2)."""

from __future__ import annotations

import dataclasses
from typing import Optional

import pytest
import yaml

from pipelines.recipe import RecipeError, dataclass_from_dict, load_recipe, recipe_from_dict
from tests.conftest import run_cli


def write_recipe(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_unknown_key_exits_2_and_names_it(tmp_path, bridge_dir, capsys):
    recipe = write_recipe(tmp_path, f"input: {{dir: {bridge_dir}}}\noutput: {{dir: {tmp_path}/o, varients_per_episode: 2}}\n")
    assert run_cli("run", recipe) == 2
    err = capsys.readouterr().err
    assert "output.varients_per_episode: unknown key" in err
    assert "variants_per_episode" in err  # the allowed keys are listed


def test_wrong_type_exits_2_and_names_it(tmp_path, bridge_dir, capsys):
    recipe = write_recipe(tmp_path, f"input: {{dir: {bridge_dir}, max_episodes: many}}\noutput: {{dir: {tmp_path}/o}}\n")
    assert run_cli("run", recipe) == 2
    assert "input.max_episodes: expected" in capsys.readouterr().err


def test_missing_input_exits_2_and_names_path(tmp_path, capsys):
    missing = tmp_path / "no_such_dataset" / "1.0.0"
    recipe = write_recipe(tmp_path, f"input: {{dir: {missing}}}\noutput: {{dir: {tmp_path}/o}}\n")
    assert run_cli("run", recipe) == 2
    err = capsys.readouterr().err
    assert "input.dir" in err and str(missing) in err
    assert not (tmp_path / "o").exists()  # nothing was started


def test_source_options_are_checked_against_the_source(tmp_path, bridge_dir, capsys):
    recipe = write_recipe(
        tmp_path,
        f"input: {{dir: {bridge_dir}}}\noutput: {{dir: {tmp_path}/o}}\nbackground: {{source: procedural, colour: red}}\n",
    )
    assert run_cli("run", recipe) == 2
    assert "background.colour: unknown key for background.source=procedural" in capsys.readouterr().err


def test_unknown_source_names_the_registry(tmp_path, bridge_dir):
    recipe = write_recipe(
        tmp_path, f"input: {{dir: {bridge_dir}}}\noutput: {{dir: {tmp_path}/o}}\nsegmentation: {{source: magic}}\n"
    )
    with pytest.raises(RecipeError, match=r"segmentation.source: unknown mask source 'magic'.*dataset.*robotseg"):
        load_recipe(str(recipe))


def test_dataset_masks_absent_is_an_error_naming_the_feature(tmp_path, bridge_dir, capsys):
    recipe = write_recipe(
        tmp_path,
        f"input: {{dir: {bridge_dir}, cameras: [image_0]}}\noutput: {{dir: {tmp_path}/o}}\n"
        "segmentation: {source: dataset}\nbackground: {source: procedural}\n",
    )
    assert run_cli("run", recipe) == 2
    assert "steps/observation/image_0_robot_mask" in capsys.readouterr().err


def test_set_overrides_any_key_and_changes_the_hash(tmp_path, bridge_dir):
    recipe = write_recipe(tmp_path, f"input: {{dir: {bridge_dir}}}\noutput: {{dir: {tmp_path}/o}}\n")
    base = load_recipe(str(recipe))
    changed = load_recipe(str(recipe), ["output.variants_per_episode=3", "composite.feather_px=1.5"])
    assert changed.output.variants_per_episode == 3
    assert changed.composite.feather_px == 1.5
    assert changed.sha256 != base.sha256
    # Where the output goes does not change its content, so not its hash either.
    assert load_recipe(str(recipe), [f"output.dir={tmp_path}/elsewhere"]).sha256 == base.sha256


def test_existing_output_needs_overwrite(tmp_path, bridge_dir, capsys):
    (tmp_path / "o" / "bridge_dataset" / "1.0.0").mkdir(parents=True)
    recipe = write_recipe(tmp_path, f"input: {{dir: {bridge_dir}}}\noutput: {{dir: {tmp_path}/o}}\n")
    assert run_cli("run", recipe) == 2
    assert "output.overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "path",
    [
        "configs/copy.yaml",
        "configs/demo.yaml",
        "configs/textures.yaml",
        "configs/image_library.yaml",
        "configs/segment_robotseg.yaml",
        "configs/diffusion_inpaint.yaml",
    ],
)
def test_shipped_recipes_are_valid(path):
    with open(path) as f:
        assert isinstance(yaml.safe_load(f), dict)
    recipe = load_recipe(path)
    assert recipe.output.dir


def test_check_validates_without_running(tmp_path, bridge_dir, capsys):
    recipe = write_recipe(tmp_path, f"input: {{dir: {bridge_dir}}}\noutput: {{dir: {tmp_path}/o}}\n")
    assert run_cli("run", recipe, "--check") == 0
    assert "ok (train, val; cameras image_0, image_1, image_2, image_3)" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["run", "inspect", "sample-data", "eval"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(command, "--help")
    assert exit_info.value.code == 0
    assert f"usage: oxe-augment {command}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "sources, message",
    [
        ([{"weight": 1}], r"background\.sources\[0\]: expected a mapping with a 'source' name"),
        (
            [{"source": "procedural"}, {"source": "procedural", "colour": "red"}],
            r"background\.sources\[1\]\.colour: unknown key for background\.sources\[1\]\.source=procedural",
        ),
        (
            [{"source": "original"}, {"source": "procedural", "kinds": "noise"}],
            r"background\.sources\[1\]\.kinds: expected a list",
        ),
        ([{"source": "procedural", "kinds": ["noise", 3]}], r"background\.sources\[0\]\.kinds\[1\]: expected str"),
        ([{"source": "procedural", "weight": "heavy"}], r"background\.sources\[0\]\.weight: expected float"),
        ([{"source": "images", "flip": True}], r"background\.sources\[0\]\.path: required key is missing"),
        ([{"source": "clean_plate", "dilate_px": 1.5}], r"background\.sources\[0\]\.dilate_px: expected int"),
        (
            [{"source": "mix", "sources": [{"source": "original"}, {"source": "procedural", "blur": 1}]}],
            r"background\.sources\[0\]\.sources\[1\]\.blur: unknown key",
        ),
    ],
)
def test_mix_children_are_validated_with_their_key_paths(sources, message):
    raw = {"input": {"dir": "in"}, "output": {"dir": "out"}, "background": {"source": "mix", "sources": sources}}
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict(raw)


def test_mix_children_become_typed_specs():
    raw = {
        "input": {"dir": "in"},
        "output": {"dir": "out"},
        "segmentation": {"source": "dataset"},
        "background": {"source": "mix", "sources": [{"source": "procedural", "weight": 2, "kinds": ["solid"]}]},
    }
    (child,) = recipe_from_dict(raw).background.options.sources
    assert (child.source, child.weight, child.options.kinds) == ("procedural", 2.0, ["solid"])


def test_optional_and_mapping_types_are_checked():
    @dataclasses.dataclass
    class Example:
        name: Optional[str] = None
        sizes: dict[str, int] = dataclasses.field(default_factory=dict)
        ratio: float | None = 0.5

    assert dataclass_from_dict(Example, {"name": None, "ratio": 1}, "s") == Example(None, {}, 1.0)
    assert dataclass_from_dict(Example, {"sizes": {"a": 2}}, "s").sizes == {"a": 2}
    with pytest.raises(RecipeError, match=r"s\.sizes\.a: expected int"):
        dataclass_from_dict(Example, {"sizes": {"a": "2"}}, "s")
    with pytest.raises(RecipeError, match=r"s\.name: expected"):
        dataclass_from_dict(Example, {"name": 3}, "s")
    with pytest.raises(RecipeError, match=r"s\.ratio: expected"):
        dataclass_from_dict(Example, {"ratio": True}, "s")
