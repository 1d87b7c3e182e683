"""Settings validation: each impossible value is refused with a message that says what would work."""

from __future__ import annotations

import re

import pytest

from sepvit_viz.validation import (
    MAX_RESOLUTION,
    MAX_STEPS,
    MIN_RESOLUTION,
    SettingsError,
    UserInputError,
    checkpoint_config_problem,
    choose,
    estimate_parameters,
    resolve_block,
    resolve_class,
    suggest,
    validate_head,
    validate_opacity,
    validate_resolution,
    validate_steps,
)

CLASSES = ["tench", "goldfish", "great white shark", "golden retriever", "Labrador retriever", "tabby"]
BLOCKS = ["stages.0.blocks.0", "stages.1.blocks.0", "stages.1.blocks.1", "stages.3.blocks.1"]


def test_settings_error_is_a_user_input_error():
    assert issubclass(SettingsError, UserInputError) and issubclass(SettingsError, ValueError)


@pytest.mark.parametrize("value", [224, 224.0, "448", MIN_RESOLUTION, MAX_RESOLUTION])
def test_resolution_accepted(value):
    assert validate_resolution(value) == int(float(value))


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (MAX_RESOLUTION + 32, "between"),
        (20_000, "between"),
        (-224, "between"),
        (0, "between"),
        (230, "multiple of 32"),
        (224.5, "whole number"),
        (float("nan"), "whole number"),
        (float("inf"), "whole number"),
        ("big", "whole number"),
        (True, "whole number"),
        (None, "whole number"),
    ],
)
def test_resolution_refused(value, match):
    with pytest.raises(SettingsError, match=match):
        validate_resolution(value)


def test_resolution_multiple_message_suggests_neighbours():
    with pytest.raises(SettingsError, match="for example 224 or 256"):
        validate_resolution(230)


@pytest.mark.parametrize("value", [1, 32, MAX_STEPS, "16", 8.0])
def test_steps_accepted(value):
    assert validate_steps(value) == int(float(value))


@pytest.mark.parametrize("value", [0, -5, MAX_STEPS + 1, 2.5, "many", "+-3", "²", "--8", "9" * 5000])
def test_steps_refused(value):
    with pytest.raises(SettingsError):
        validate_steps(value)


def test_head_indices_and_fusions():
    assert validate_head(0, 4) == 0 and validate_head("3", 4) == 3 and validate_head(2.0, 4) == 2
    assert validate_head("Mean", 4) == "mean" and validate_head("max", 4) == "max"
    # "+-1" and "²" passed the digit check, then int() raised a bare ValueError (the app's "unexpected error")
    for bad in (4, -1, "7", "head 1", "average", 1.5, "+-1", "²", "-+0"):
        with pytest.raises(SettingsError):
            validate_head(bad, 4)
    with pytest.raises(SettingsError, match=r"2 heads \(indices 0 to 1\)"):
        validate_head(2, 2)


def test_opacity():
    assert validate_opacity(0) == 0.0 and validate_opacity(1) == 1.0 and validate_opacity(0.25) == 0.25
    for bad in (-0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(SettingsError):
            validate_opacity(bad)


def test_block_names_and_labels():
    assert resolve_block("stages.1.blocks.1", BLOCKS) == "stages.1.blocks.1"
    assert resolve_block("stages.1.blocks.1 · GSA · window 14", BLOCKS) == "stages.1.blocks.1"
    with pytest.raises(SettingsError, match=re.escape("Did you mean 'stages.1.blocks.1'")):
        resolve_block("stages.1.block.1", BLOCKS)
    with pytest.raises(SettingsError, match="Unknown block"):
        resolve_block("stages.9.blocks.0", BLOCKS)
    with pytest.raises(SettingsError):
        resolve_block(3, BLOCKS)


def test_class_by_name_index_and_hash():
    assert resolve_class("golden retriever", CLASSES) == 3
    assert resolve_class("  Golden Retriever ", CLASSES) == 3
    assert resolve_class("2", CLASSES) == 2 and resolve_class(5, CLASSES) == 5 and resolve_class("#1", CLASSES) == 1


def test_a_name_several_classes_share_is_refused_with_their_numbers():
    """ImageNet has two "crane"s (134 bird, 517 machine) and "Cardigan" (corgi) / "cardigan" (sweater):
    a shared name was answered with the first class silently."""
    names = ["tench", "crane", "Cardigan", "cardigan", "crane", "goldfish"]
    with pytest.raises(SettingsError, match=r"2 classes are named 'crane' \(1: crane, 4: crane\)"):
        resolve_class("crane", names)
    with pytest.raises(SettingsError, match=r"\(2: Cardigan, 3: cardigan\)"):
        resolve_class("CARDIGAN", names)
    assert resolve_class("Cardigan", names) == 2 and resolve_class("cardigan", names) == 3  # the case decides
    assert resolve_class("4", names) == 4 and resolve_class("Goldfish", names) == 5


def test_a_negative_class_number_is_named_as_out_of_range():
    """ "-1" typed (or sent to /explain) was answered "There is no class named '-1'"."""
    for text in ("-1", " -3 ", "#-2"):
        with pytest.raises(SettingsError, match=r"Class numbers go from 0 to 5; got -\d"):
            resolve_class(text, CLASSES)
    assert resolve_class("+2", CLASSES) == 2


def test_unknown_class_suggests_close_names():
    with pytest.raises(SettingsError, match="Did you mean 'golden retriever'") as info:
        resolve_class("golden retreiver", CLASSES)
    assert "no class named 'golden retreiver'" in str(info.value)
    with pytest.raises(SettingsError, match="goldfish"):
        resolve_class("goldfsh", CLASSES)


def test_unknown_class_without_neighbours_and_bad_indices():
    with pytest.raises(SettingsError) as info:
        resolve_class("qwertyuiop", CLASSES)
    assert "Did you mean" not in str(info.value)
    for bad in (6, -1, "#99", "", "   ", "#" + "9" * 5000):  # past int()'s 4,300 digits: a ValueError
        with pytest.raises(SettingsError):
            resolve_class(bad, CLASSES)


def test_suggest_and_choose():
    assert suggest("retriever", CLASSES) == ["golden retriever", "Labrador retriever"]
    assert choose("Viridis", ["inferno", "viridis"], "Colormap") == "viridis"
    with pytest.raises(SettingsError, match="Choose one of: inferno, viridis"):
        choose("jett", ["inferno", "viridis"], "Colormap")


@pytest.mark.parametrize("name", ["sepvit_test", "sepvit_lite", "sepvit_tiny"])
def test_real_checkpoint_configs_pass_the_budget(name):
    import sepvit_viz

    model = sepvit_viz.create_model(name)
    numel = sum(t.numel() for t in model.state_dict().values())
    assert estimate_parameters(model.config) <= numel
    assert checkpoint_config_problem(model.config, numel) is None


def test_hostile_checkpoint_config_is_refused_before_building():
    from sepvit_viz.model.config import SepViTConfig

    huge = SepViTConfig(embed_dims=(1024, 2048, 4096, 4096), num_heads=(8, 16, 32, 32), depths=(1, 2, 24, 2))
    problem = checkpoint_config_problem(huge, file_numel=1_000)
    assert problem is not None and "describes a model of at least" in problem
    assert estimate_parameters(huge) > 5e9  # what the file's metadata would have made us allocate
    deep = SepViTConfig(depths=(1, 2, 500, 2))
    assert "blocks" in checkpoint_config_problem(deep, file_numel=10**12)
    wide = SepViTConfig(num_classes=10**7)
    assert "classes" in checkpoint_config_problem(wide, file_numel=10**12)
