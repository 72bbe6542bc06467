"""Mix of background sources: weighted picks, batching by child, option errors with key paths."""

import weakref

import cv2
import numpy as np
import pytest

from backgrounds.base import (
    BACKGROUND_SOURCES,
    BackgroundConfigError,
    BackgroundRequest,
    BackgroundSource,
    BackgroundSpec,
    background_source_class,
)
from backgrounds.images import FileAccess, ImageLibraryBackground
from backgrounds.mix import MixBackground, MixModels, MixOptions
from backgrounds.procedural import ProceduralBackground

HEIGHT, WIDTH, STEPS = 12, 20, 3


def make_request(seed):
    frames = np.full((STEPS, HEIGHT, WIDTH, 3), 7, np.uint8)
    return BackgroundRequest(
        "episode_0", "image_0", 0, seed, frames, np.zeros((STEPS, HEIGHT, WIDTH), bool), np.ones((HEIGHT, WIDTH), bool)
    )


def spec(source, weight=1.0, **options):
    """A mix entry the way the recipe loader builds it: the child's own Options dataclass."""
    return BackgroundSpec(source, background_source_class(source).Options(**options), weight)


def ready_mix(*sources):
    mix = MixBackground(MixOptions(sources=list(sources)))
    mix.check()
    return mix, mix.load_model()


def test_registry_resolves_mix():
    assert background_source_class("mix") is MixBackground


def test_children_are_drawn_by_weight_and_deterministically():
    mix, model = ready_mix(
        spec("procedural", weight=3, kinds=["noise", "checker"]),
        spec("original", weight=1),
    )
    assert isinstance(model, MixModels) and weakref.ref(model)() is model
    picks = []
    for seed in range(400):
        background = mix.generate(model, make_request(seed))
        np.testing.assert_array_equal(background, mix.generate(model, make_request(seed)))
        # original returns the (T, H, W, 3) frames, procedural one (H, W, 3) texture.
        picks.append(background.ndim == 3)
    share = np.mean(picks)
    # 3:1 weights; 400 draws put the share within 0.08 of 0.75 with overwhelming odds (~3.7 sigma).
    assert abs(share - 0.75) < 0.08


def test_child_gets_its_own_seed():
    mix, model = ready_mix(spec("procedural"))
    child = ProceduralBackground()
    textures = [mix.generate(model, make_request(seed)) for seed in range(10)]
    assert len({texture.tobytes() for texture in textures}) == 10
    # Derived, not passed through: the child's draws are not the ones that picked it.
    assert not any(np.array_equal(textures[s], child.generate(None, make_request(s))) for s in range(10))
    index, child_request = mix.pick(make_request(3))
    np.testing.assert_array_equal(textures[3], child.generate(None, child_request))
    assert index == 0


class RecordingSource(BackgroundSource):
    """A child that batches: remembers the seeds of every batch it is given."""

    name = "recording"

    def __init__(self, options=None):
        super().__init__(options)
        self.batches = []

    def generate(self, model, request):
        return np.full((HEIGHT, WIDTH, 3), request.seed % 251, np.uint8)

    def generate_batch(self, model, requests):
        self.batches.append([request.seed for request in requests])
        return super().generate_batch(model, requests)


def test_generate_batch_groups_requests_by_child_and_keeps_order(monkeypatch):
    monkeypatch.setitem(BACKGROUND_SOURCES, "recording", RecordingSource)
    mix, model = ready_mix(spec("recording", weight=1), spec("procedural", weight=1))
    requests = [make_request(seed) for seed in range(30)]
    batch = mix.generate_batch(model, requests)
    assert len(batch) == 30
    for request, background in zip(requests, batch):
        np.testing.assert_array_equal(background, mix.generate(model, request))
    # One batch call holding every request that drew the recording child, in request order.
    chosen = [mix.pick(request)[1].seed for request in requests if mix.pick(request)[0] == 0]
    assert 5 <= len(chosen) <= 25
    assert mix.children[0].batches == [chosen]


def test_images_child_gets_the_file_access():
    encoded = {"mem://lib/a.png": cv2.imencode(".png", np.full((16, 16, 3), (10, 20, 30), np.uint8))[1].tobytes()}
    files = FileAccess(list_paths=lambda pattern: list(encoded), read_bytes=encoded.__getitem__)
    mix = MixBackground(MixOptions(sources=[spec("images", path="mem://lib")]), files=files)
    mix.check()
    assert isinstance(mix.children[0], ImageLibraryBackground)
    background = mix.generate(mix.load_model(), make_request(0))
    assert background[0, 0].tolist() == [30, 20, 10]


@pytest.mark.parametrize(
    "sources, message",
    [
        ([], r"background\.sources is empty"),
        ([spec("procedural"), BackgroundSpec("marble")], r"background\.sources\[1\]\.source: unknown .*'marble'"),
        ([spec("original"), spec("procedural", kinds=["plaid"])], r"background\.sources\[1\]\.kinds: unknown kind.*'plaid'"),
        ([spec("procedural", weight=0)], r"background\.sources\[0\]\.weight must be > 0"),
        (
            [spec("mix", sources=[spec("original"), spec("procedural", palettes=["sepia"])])],
            r"background\.sources\[0\]\.sources\[1\]\.palettes: unknown palette",
        ),
    ],
)
def test_child_errors_name_the_key_path(sources, message):
    with pytest.raises(BackgroundConfigError, match=message):
        MixBackground(MixOptions(sources=sources)).check()


def test_child_check_errors_without_key_path_are_prefixed(monkeypatch):
    class Unready(RecordingSource):
        name = "unready"

        def check(self):
            raise BackgroundConfigError("model weights not found")

    monkeypatch.setitem(BACKGROUND_SOURCES, "unready", Unready)
    with pytest.raises(BackgroundConfigError, match=r"^background\.sources\[1\] \(unready\): model weights not found"):
        MixBackground(MixOptions(sources=[spec("original"), spec("unready")])).check()
