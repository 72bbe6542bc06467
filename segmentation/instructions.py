"""Object prompts from a language instruction: a small deterministic noun-phrase rule.

Text-prompted segmenters (``sam3``) need the names of the task's objects; robot datasets
carry them in the episode's instruction ("put the eggplant in the pot"). An NLP parser
would need downloaded models, so the rule is hand-written and fully predictable:

1. lower-case the instruction and split it into words; punctuation ends a phrase;
2. every word in the stop list (verbs, prepositions, determiners, pronouns,
   conjunctions, adverbs of manner or direction) ends a phrase and is dropped;
3. each maximal run of remaining words is one phrase, so adjectives stay with their
   noun ("blue cup", "drying rack");
4. a phrase made only of position words ("left", "front", "top side") is dropped:
   it names a place, not an object, while "left burner" is kept;
5. duplicates are removed, the first occurrence keeps its place.

The stop list is a parameter; a dataset with unusual verbs can pass a larger one
(``STOP_WORDS | {"scrub"}``).
"""

from __future__ import annotations

import re
from typing import AbstractSet

#: Verbs of manipulation instructions (imperative forms, the words robot datasets use).
VERBS = frozenset(
    """
    put place move pick lift take flip turn push pull open close slide fold unfold wipe sweep
    stack unstack knock rotate drop set grab grasp hold pour insert remove lay hang cover
    uncover twist press sort arrange transfer bring get use clean topple reorient straighten
    go reach touch stir scoop spread drag tip tilt shift relocate position return leave make
    fetch deliver throw toss shake swap unzip zip plug unplug screw unscrew tuck roll unroll
    bend stand hit tap poke point find try let keep be is are was were has have do does
    """.split()
)

#: Prepositions, determiners, pronouns, conjunctions and adverbs: never part of an object name.
FUNCTION_WORDS = frozenset(
    """
    a an the this that these those its it it's them they their his her my your our some any
    each every all both other another one which who what where when whose there here
    in into inside on onto upon at to toward towards from of off out outside over under
    underneath beneath below above across through between beside besides behind near next by
    with without within along around against beyond via for about than as until before after
    and or but then so also while if nor not no
    up down upright upside away back forward forwards backward backwards together apart
    vertical vertically horizontal horizontally clockwise counterclockwise anticlockwise
    slightly halfway fully completely gently carefully please just again once twice now
    """.split()
)

#: Words a robot instruction uses for the robot itself: it is prompted separately.
ROBOT_WORDS = frozenset("robot gripper arm hand claw effector end-effector fingers".split())

STOP_WORDS: frozenset[str] = VERBS | FUNCTION_WORDS | ROBOT_WORDS

#: Words that name a place rather than an object (dropped when a phrase has nothing else).
POSITION_WORDS: frozenset[str] = frozenset(
    """
    left right front back top bottom side sides middle center centre corner edge end
    rear far close closer nearest farthest upper lower
    """.split()
)

# Words (letters and digits, inner hyphens and apostrophes) and single punctuation marks.
_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[^\sa-z0-9]")


def object_phrases(
    instruction: str,
    stop_words: AbstractSet[str] = STOP_WORDS,
    position_words: AbstractSet[str] = POSITION_WORDS,
) -> list[str]:
    """Noun phrases of ``instruction``, in order of appearance, without duplicates.

    >>> object_phrases("put the eggplant in the pot")
    ['eggplant', 'pot']
    >>> object_phrases("Pick up the blue cup and place it on the towel.")
    ['blue cup', 'towel']
    """
    phrases: list[str] = []
    run: list[str] = []

    def close_run() -> None:
        if run and not all(word in position_words for word in run):
            phrase = " ".join(run)
            if phrase not in phrases:
                phrases.append(phrase)
        run.clear()

    for token in _TOKEN.findall(instruction.lower()):
        is_word = token[0].isalnum()
        if not is_word or token in stop_words or token.isdigit():
            close_run()
        else:
            run.append(token)
    close_run()
    return phrases
