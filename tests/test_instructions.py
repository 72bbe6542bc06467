"""The instruction-to-prompts rule, on the Bridge sample's real instructions and on edge cases."""

from __future__ import annotations

import pytest

from segmentation.instructions import STOP_WORDS, object_phrases

#: Every instruction of the shared Bridge sample (both splits), with the objects written by hand.
BRIDGE_OBJECTS = {
    "put carrot on plate": ["carrot", "plate"],
    "flip pot upright which is in sink": ["pot", "sink"],
    "put cup from counter or drying rack into sink": ["cup", "counter", "drying rack", "sink"],
    "turn lever vertical to front": ["lever"],  # "front" is where it goes, not an object
}


@pytest.fixture(scope="module")
def bridge_instructions(bridge_dir) -> list[str]:
    """The first step's language_instruction of every Bridge episode (TFDS only here, never in segmentation/)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(bridge_dir))
    instructions = []
    for split in builder.info.splits:
        for episode in tfds.as_numpy(builder.as_dataset(split=split)):
            first = next(iter(episode["steps"]))
            instructions.append(first["language_instruction"].decode("utf-8"))
    return instructions


def test_bridge_instructions_give_the_hand_written_objects(bridge_instructions):
    assert len(bridge_instructions) == 50
    unexpected = sorted(set(bridge_instructions) - set(BRIDGE_OBJECTS))
    assert not unexpected, f"instructions without an expected answer: {unexpected}"
    for instruction in bridge_instructions:
        assert object_phrases(instruction) == BRIDGE_OBJECTS[instruction], instruction


@pytest.mark.parametrize(
    "instruction, objects",
    [
        ("put the eggplant in the pot", ["eggplant", "pot"]),
        ("pick up the blue cup and place it on the towel", ["blue cup", "towel"]),
        ("Pick up the blue cup, then place it on the towel.", ["blue cup", "towel"]),  # case, punctuation
        ("move the pot to the left burner", ["pot", "left burner"]),  # a position word as adjective stays
        ("put the spoon on the right side of the table", ["spoon", "table"]),  # "right side" is a place
        ("put the cup in the sink, then put the cup on the rack", ["cup", "sink", "rack"]),  # no duplicates
        ("move the gripper above the yellow sponge", ["yellow sponge"]),  # the robot is prompted separately
        ("open the drawer", ["drawer"]),
        ("stack 2 red blocks", ["red blocks"]),  # counts are not names
        ("", []),
    ],
)
def test_rule(instruction, objects):
    assert object_phrases(instruction) == objects


def test_stop_list_is_a_parameter():
    assert object_phrases("scrub the pan with the brush") == ["scrub", "pan", "brush"]
    assert object_phrases("scrub the pan with the brush", stop_words=STOP_WORDS | {"scrub"}) == ["pan", "brush"]
