"""Diffusion-inpainted backgrounds: a new scene painted into the episode's clean plate.

For each (episode, camera, variant) request the source builds the episode's clean plate
(the scene with the robot and the kept objects removed, ``backgrounds.clean_plate``), and
asks a diffusers inpainting pipeline (Stable Diffusion, SDXL or Flux Fill) to repaint the
part the recipe replaces plus every pixel the robot or a kept object ever covers. The result
is one ``(H, W, 3)`` image that the augmentation reuses for every frame, so the painted
scene cannot flicker; pixels outside the inpaint mask are the clean plate's, exactly.

The noise comes from a ``torch.Generator`` seeded by the request's seed and the prompt's
slots (``{material}``, ``{lighting}``...) from the request's numpy generator. Each request
is painted in a pipeline call of its own: a request's background is then the same bytes
whichever other requests Beam batched it with (see ``generate_batch`` for why batching
images in one call cannot promise that).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import string
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from backgrounds.base import BackgroundConfigError, BackgroundRequest, BackgroundSource
from backgrounds.clean_plate import CleanPlateOptions, clean_plate


@dataclasses.dataclass(frozen=True)
class PipelineKind:
    """What differs between the supported diffusers inpainting pipelines."""

    name: str  # the recipe's ``pipeline`` value
    class_name: str  # the diffusers class, as written in model_index.json
    denoiser: str  # "unet" or "transformer": the component whose config tells an inpainting model
    half_dtype: torch.dtype  # the reduced precision the model is published in
    default_guidance: float
    takes_negative_prompt: bool


PIPELINE_KINDS: dict[str, PipelineKind] = {
    "sd": PipelineKind("sd", "StableDiffusionInpaintPipeline", "unet", torch.float16, 7.5, True),
    "sdxl": PipelineKind("sdxl", "StableDiffusionXLInpaintPipeline", "unet", torch.float16, 7.5, True),
    # Flux overflows in float16; Flux Fill is distilled for a guidance of about 30 and has no negative prompt.
    "flux": PipelineKind("flux", "FluxFillPipeline", "transformer", torch.bfloat16, 30.0, False),
}

#: A UNet that inpaints takes the noisy latents (4), the mask (1) and the masked image's latents (4).
SD_INPAINT_UNET_CHANNELS = 9

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# "org/name" or "name": what a Hugging Face hub id looks like (a relative path may too; then
# the hub cache decides).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _default_slots() -> dict[str, list[str]]:
    return {
        "material": [
            "light oak wood",
            "dark walnut wood",
            "white marble",
            "black granite",
            "brushed stainless steel",
            "grey concrete",
            "blue ceramic tile",
            "white laminate",
        ],
        "lighting": [
            "soft daylight",
            "warm evening light",
            "bright overhead light",
            "cool fluorescent light",
        ],
    }


@dataclasses.dataclass
class DiffusionOptions:
    """The ``background:`` keys of a recipe with ``source: diffusion``."""

    model: str  # local pipeline folder (save_pretrained layout) or a hub id already in the local cache
    pipeline: str = "auto"  # auto (from model_index.json) | sd | sdxl | flux
    dtype: str = "auto"  # auto (float16, bfloat16 for Flux, on cuda; float32 on cpu) | float32 | float16 | bfloat16
    device: str = "auto"  # auto (cuda when present) | cpu | cuda | cuda:N
    steps: int = 30
    guidance: float | None = None  # None: 7.5 for SD/SDXL, 30 for Flux Fill
    strength: float = 1.0  # 1.0 paints from pure noise; lower keeps some of the clean plate's layout
    prompt: str = "a {material} kitchen counter, {lighting}"
    slots: dict[str, list[str]] = dataclasses.field(default_factory=_default_slots)
    negative_prompt: str = "robot, robot arm, person, hands, text, watermark, blurry"  # ignored by Flux Fill
    resolution: int | None = None  # side of the square whose area the generation keeps; None: the model's native
    dilate_px: int = 3  # grows the inpaint mask so the model blends across its edge
    attention_slicing: bool = False
    cpu_offload: bool = False  # needs the accelerate package and a GPU
    allow_download: bool = False  # let diffusers fetch a hub id that is not in the local cache


@dataclasses.dataclass
class InpaintJob:
    """One request turned into what the pipeline paints: the plate, where, with which prompt and seed."""

    plate: np.ndarray  # (H, W, 3) uint8, the clean plate at the camera's size
    mask: np.ndarray  # (H, W) bool, the inpaint mask at the camera's size
    prompt: str
    seed: int
    generation_size: tuple[int, int]  # (height, width) the pipeline paints at


def inpaint_mask(request: BackgroundRequest, dilate_px: int) -> np.ndarray:
    """``(H, W)`` bool, the pixels to paint: the replaced area and every pixel the robot or a
    kept object ever covers (``request.foreground``), dilated.

    Those pixels are painted too because the robot and the kept objects are composited on
    top of this background in every frame: wherever they are, the background behind them
    must belong to the new scene, not to the clean plate's guess of the old one. The model
    never sees their pixels (they are inside the mask), so it cannot copy them into the scene.
    """
    mask = np.asarray(request.replace, bool) | request.foreground_union()
    if dilate_px > 0:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        mask = cv2.dilate(mask.astype(np.uint8), disk).astype(bool)
    return mask


def fill_prompt(template: str, slots: dict[str, list[str]], rng: np.random.Generator) -> str:
    """``template`` with each ``{slot}`` replaced by one of its values, drawn from ``rng`` in template order."""
    chosen: dict[str, str] = {}
    for name in template_slots(template):
        if name not in chosen:
            values = slots[name]
            chosen[name] = values[int(rng.integers(len(values)))]
    return template.format(**chosen)


def template_slots(template: str) -> list[str]:
    """The ``{names}`` a prompt template uses, in order."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def generation_size(camera_size: tuple[int, int], side: int, multiple: int) -> tuple[int, int]:
    """(height, width) with the camera's aspect and about ``side * side`` pixels, each a multiple of ``multiple``.

    Diffusion models paint best near the pixel count they were trained at; keeping the
    camera's aspect means the painted scene is not stretched when resized back.
    """
    height, width = camera_size
    scale = side / math.sqrt(height * width)
    return (
        max(multiple, round(height * scale / multiple) * multiple),
        max(multiple, round(width * scale / multiple) * multiple),
    )


def native_resolution(pipeline: Any) -> int:
    """The side, in pixels, that the pipeline's model was trained at (512 for SD 1.5, 1024 for SDXL and Flux)."""
    unet = getattr(pipeline, "unet", None)
    if unet is not None:
        return int(unet.config.sample_size) * pipeline.vae_scale_factor
    return int(pipeline.default_sample_size) * pipeline.vae_scale_factor


def pipeline_kind_of(pipeline: Any) -> PipelineKind:
    """The :class:`PipelineKind` of a loaded diffusers pipeline object."""
    class_name = type(pipeline).__name__
    for kind in PIPELINE_KINDS.values():
        if kind.class_name == class_name:
            return kind
    raise TypeError(f"{class_name} is not a supported inpainting pipeline ({_supported_classes()})")


def resize(image: np.ndarray, size: tuple[int, int], enlarge: int = cv2.INTER_CUBIC) -> np.ndarray:
    """``image`` resized to (height, width): area averaging to shrink, ``enlarge`` interpolation to enlarge."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else enlarge)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` at (height, width), keeping every pixel that a mask pixel touches (never shrinks the area)."""
    # Area averaging (shrinking) and bilinear sampling (enlarging) leave a weight above 0
    # wherever a mask pixel contributes.
    return resize(mask.astype(np.float32), size, enlarge=cv2.INTER_LINEAR) > 0


def blend_into_plate(painted: np.ndarray, plate: np.ndarray, mask: np.ndarray, dilate_px: int) -> np.ndarray:
    """The painted image inside ``mask``, the plate outside it, exactly; feathered across the dilation band.

    Inside the mask the weight of the painted image rises from the mask's edge to 1 at
    ``dilate_px + 1`` pixels in, so the band that dilation added hides the seam between the
    VAE's reconstruction and the untouched plate.
    """
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    alpha = np.clip(inside / (dilate_px + 1), 0.0, 1.0)[..., None]
    mixed = np.rint(alpha * painted.astype(np.float32) + (1.0 - alpha) * plate.astype(np.float32))
    return np.where(mask[..., None], np.clip(mixed, 0, 255).astype(np.uint8), plate)


class DiffusionInpaintBackground(BackgroundSource):
    """Backgrounds painted by a diffusers inpainting pipeline into each episode's clean plate."""

    name = "diffusion"
    Options = DiffusionOptions

    # -- checking the recipe -------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`BackgroundConfigError` if the model or an option cannot work (before any Beam work)."""
        o = self.options
        if o.pipeline != "auto" and o.pipeline not in PIPELINE_KINDS:
            raise BackgroundConfigError(
                f"{self.key_path}.pipeline: {o.pipeline!r} is not one of auto, {', '.join(PIPELINE_KINDS)}"
            )
        if o.dtype != "auto" and o.dtype not in DTYPES:
            raise BackgroundConfigError(f"{self.key_path}.dtype: {o.dtype!r} is not one of auto, {', '.join(DTYPES)}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", o.device):
            raise BackgroundConfigError(f"{self.key_path}.device: {o.device!r} is not auto, cpu, cuda or cuda:N")
        lowest_values = {"steps": 1, "dilate_px": 0}
        for key, lowest in lowest_values.items():
            value = getattr(o, key)
            if value < lowest:
                raise BackgroundConfigError(f"{self.key_path}.{key}: {value} must be at least {lowest}")
        if not 0.0 < o.strength <= 1.0:
            raise BackgroundConfigError(f"{self.key_path}.strength: {o.strength} must be in (0, 1]")
        if o.resolution is not None and o.resolution < 8:
            raise BackgroundConfigError(f"{self.key_path}.resolution: {o.resolution} is not an image side in pixels")
        for name in template_slots(o.prompt):
            if not name.isidentifier():
                raise BackgroundConfigError(f"{self.key_path}.prompt: {{{name}}} is not a slot name")
            if not o.slots.get(name):
                raise BackgroundConfigError(
                    f"{self.key_path}.prompt uses {{{name}}} but {self.key_path}.slots.{name} lists no values"
                )
        if o.cpu_offload:
            try:
                import accelerate  # noqa: F401
            except ImportError:
                raise BackgroundConfigError(
                    f"{self.key_path}.cpu_offload needs the accelerate package (pip install accelerate)"
                ) from None
        self.pipeline_kind()

    def pipeline_kind(self) -> PipelineKind:
        """The kind of pipeline ``model`` holds; raises :class:`BackgroundConfigError` naming the path if none."""
        model = self.options.model
        index = self._read_model_json("model_index.json")
        class_name = index.get("_class_name")
        if self.options.pipeline == "auto":
            kind = next((k for k in PIPELINE_KINDS.values() if k.class_name == class_name), None)
            if kind is None:
                raise BackgroundConfigError(
                    f"{self.key_path}.model: {model} holds a {class_name}, not an inpainting pipeline "
                    f"(expected {_supported_classes()}; set {self.key_path}.pipeline if its class name is wrong)"
                )
        else:
            kind = PIPELINE_KINDS[self.options.pipeline]
        _check_components(index, f"{self.key_path}.model: {model}")
        if kind.denoiser not in index:
            raise BackgroundConfigError(
                f"{self.key_path}.model: {model} has no {kind.denoiser} component, which a {kind.class_name} needs"
            )
        self._check_inpainting_denoiser(kind)
        return kind

    def _check_inpainting_denoiser(self, kind: PipelineKind) -> None:
        """A text-to-image checkpoint under an inpainting class name would paint without seeing the plate."""
        model = self.options.model
        config = self._read_model_json(f"{kind.denoiser}/config.json")
        in_channels = config.get("in_channels")
        if kind.denoiser == "unet":
            expected = SD_INPAINT_UNET_CHANNELS
        else:
            # Flux Fill's transformer takes the packed (2x2) noisy latents and masked-image latents,
            # and the mask packed at full resolution: 8 * latent channels + 4 * scale factor**2.
            vae = self._read_model_json("vae/config.json")
            vae_scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
            expected = 8 * int(vae.get("latent_channels", 16)) + 4 * vae_scale**2
        if in_channels != expected:
            raise BackgroundConfigError(
                f"{self.key_path}.model: {model}/{kind.denoiser}/config.json has in_channels={in_channels}, "
                f"but an inpainting {kind.class_name} needs {expected}: this is a text-to-image checkpoint, "
                f"not an inpainting one"
            )

    def _read_model_json(self, relative_path: str) -> dict:
        """A JSON file of the model: from the folder, or for a hub id from the hub cache (or the hub if allowed)."""
        model = self.options.model
        folder = Path(model).expanduser()
        if folder.exists():
            if not folder.is_dir():
                raise BackgroundConfigError(
                    f"{self.key_path}.model: {model} is a file; expected a diffusers pipeline folder (save_pretrained layout)"
                )
            path = folder / relative_path
            if not path.is_file():
                raise BackgroundConfigError(
                    f"{self.key_path}.model: {path} is missing; expected a diffusers inpainting pipeline folder "
                    f"({_supported_classes()}, saved with save_pretrained)"
                )
            return json.loads(path.read_text())
        if not _HUB_ID.match(model):
            raise BackgroundConfigError(f"{self.key_path}.model: {model} does not exist; expected an inpainting pipeline folder")
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(model, relative_path, local_files_only=not self.options.allow_download)
        except Exception as error:  # the hub client raises a different class for each way of not finding it
            raise BackgroundConfigError(
                f"{self.key_path}.model: {model} is neither a folder nor a hub model with {relative_path} in the "
                f"local cache ({type(error).__name__}); give the path of an inpainting pipeline folder"
                + ("" if self.options.allow_download else f", or set {self.key_path}.allow_download: true to fetch it")
            ) from error
        return json.loads(Path(path).read_text())

    # -- the model -----------------------------------------------------------------------

    def load_model(self) -> Any:
        """The diffusers pipeline on its device and dtype, progress bars off."""
        import diffusers

        kind = self.pipeline_kind()
        device = self._device()
        dtype = self._dtype(kind, device)
        pipeline = getattr(diffusers, kind.class_name).from_pretrained(
            self.options.model, local_files_only=not self.options.allow_download, **{_dtype_keyword(): dtype}
        )
        if self.options.attention_slicing:
            pipeline.enable_attention_slicing()
        if self.options.cpu_offload and device.type == "cuda":
            # Keeps one component at a time on the GPU: slower, but fits SDXL/Flux on small cards.
            pipeline.enable_model_cpu_offload(device=device)
        else:
            pipeline.to(device)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def _device(self) -> torch.device:
        if self.options.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.options.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BackgroundConfigError(f"{self.key_path}.device: {self.options.device} but this worker has no CUDA device")
        return device

    def _dtype(self, kind: PipelineKind, device: torch.device) -> torch.dtype:
        if self.options.dtype != "auto":
            return DTYPES[self.options.dtype]
        # Half precision on a CPU is slow or unsupported for several ops.
        return kind.half_dtype if device.type == "cuda" else torch.float32

    # -- painting ------------------------------------------------------------------------

    def generate(self, model: Any, request: BackgroundRequest) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 background for one request."""
        return self.generate_batch(model, [request])[0]

    def generate_batch(self, model: Any, requests: list[BackgroundRequest]) -> list[np.ndarray]:
        """Backgrounds for ``requests``, in order, each painted by a pipeline call of its own.

        Only what is deterministic is shared across the batch: the clean plate of an
        episode's camera, which its variants reuse. The denoising itself runs one image per
        call because a batched call is not the same arithmetic: oneDNN (CPU) and cuDNN/cuBLAS
        (GPU) pick kernels and reduction orders by batch shape, and a pixel can come out one
        level off. Beam decides the batches per run, so batching images would make the output
        bytes depend on the run; one image per call keeps reruns byte-identical.
        """
        side = self.options.resolution or native_resolution(model)
        # Latent sides divisible by 8 keep every UNet downsampling exact and Flux's 2x2 packing whole.
        multiple = model.vae_scale_factor * 8
        # The variants of one episode's camera share its frames: one clean plate for all of them.
        plates: dict[tuple[str, str, int], np.ndarray] = {}
        backgrounds = []
        for request in requests:
            key = (request.episode_key, request.camera, id(request.frames))  # the requests keep the frames alive
            if key not in plates:
                plates[key] = clean_plate(*request.sample(CleanPlateOptions.sample_frames))
            job = self.inpaint_job(request, plates[key], generation_size(request.size, side, multiple))
            if not job.mask.any():
                # Nothing to paint (no replaced area, nothing in front): the plate is the answer.
                backgrounds.append(job.plate)
                continue
            (painted,) = self.paint(model, [job], job.generation_size)
            camera_image = resize(painted, job.plate.shape[:2])
            backgrounds.append(blend_into_plate(camera_image, job.plate, job.mask, self.options.dilate_px))
        return backgrounds

    def inpaint_job(self, request: BackgroundRequest, plate: np.ndarray, size: tuple[int, int]) -> InpaintJob:
        """What to paint for one request whose clean plate is ``plate``, at generation ``size``."""
        return InpaintJob(
            plate=plate,
            mask=inpaint_mask(request, self.options.dilate_px),
            prompt=fill_prompt(self.options.prompt, self.options.slots, request.rng()),
            seed=request.seed,
            generation_size=size,
        )

    def paint(self, model: Any, jobs: list[InpaintJob], size: tuple[int, int]) -> list[np.ndarray]:
        """One pipeline call: ``(h, w, 3)`` uint8 images at ``size``, one per job."""
        kind = pipeline_kind_of(model)
        height, width = size
        images = [Image.fromarray(resize(job.plate, size)) for job in jobs]
        # Any pixel the camera-size mask touches is painted, so no plate content survives where
        # the blend will take the painted image.
        masks = [Image.fromarray(np.where(resize_mask(job.mask, size), 255, 0).astype(np.uint8)) for job in jobs]
        arguments: dict[str, Any] = dict(
            prompt=[job.prompt for job in jobs],
            image=images,
            mask_image=masks,
            height=height,
            width=width,
            num_inference_steps=self.options.steps,
            guidance_scale=self.options.guidance if self.options.guidance is not None else kind.default_guidance,
            strength=self.options.strength,
            # One CPU generator per image: its noise depends on its own seed only, not on the batch
            # or the device.
            generator=[torch.Generator("cpu").manual_seed(job.seed) for job in jobs],
            output_type="np",
        )
        if kind.takes_negative_prompt and self.options.negative_prompt:
            arguments["negative_prompt"] = [self.options.negative_prompt] * len(jobs)
        with torch.inference_mode():
            painted = model(**arguments).images
        return [np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8) for image in painted]


# A model folder may come from a stranger: diffusers imports the library each component of
# model_index.json names (and runs a component's own .py file if asked to trust it, which we
# never do), so only the libraries an inpainting pipeline is built from are accepted.
_COMPONENT_LIBRARIES = ("diffusers", "transformers")


def _check_components(index: dict, where: str) -> None:
    """Every ``"name": [library, ClassName]`` of ``model_index.json`` names diffusers or transformers."""
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry == [None, None]:
            continue
        library = entry[0] if entry else None
        class_name = entry[1] if len(entry) > 1 else None
        if not _known_library(library) or not (isinstance(class_name, str) and re.fullmatch(r"[A-Z][A-Za-z0-9_]*", class_name)):
            raise BackgroundConfigError(
                f"{where}: model_index.json component {name!r} is {str(entry)[:200]}; only classes of "
                f"{' or '.join(_COMPONENT_LIBRARIES)} are loaded"
            )


def _known_library(library: object) -> bool:
    """diffusers, transformers, or one of diffusers' own pipeline modules (``stable_diffusion`` for a safety checker)."""
    if library in _COMPONENT_LIBRARIES:
        return True
    if not isinstance(library, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", library):
        return False
    import diffusers.pipelines

    return hasattr(diffusers.pipelines, library)


def _dtype_keyword() -> str:
    """``from_pretrained``'s name for the dtype: diffusers renamed ``torch_dtype`` to ``dtype`` (0.42)."""
    from diffusers.utils import deprecation_utils

    # The helper that resolves the old name arrived with the new one; older releases know only torch_dtype.
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _supported_classes() -> str:
    return ", ".join(kind.class_name for kind in PIPELINE_KINDS.values())
