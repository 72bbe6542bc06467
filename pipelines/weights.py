"""Model weights in one command: ``oxe-augment weights get NAME`` and ``weights list``.

    oxe-augment weights list                 what is in the Hugging Face cache, and where
    oxe-augment weights get sam2.1-tiny      download into that cache, print the path to use

:data:`KNOWN_MODELS` is the registry of the models the recipes use: their Hugging Face
repository, the files a recipe needs, and the recipe key that takes the path. Downloads go
through ``huggingface_hub`` into its cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
``~/.cache/huggingface/hub``), so ``transformers``/``diffusers`` find them too.

Offline (``HF_HUB_OFFLINE=1``, or the Hub cannot be reached) ``weights get`` stops at once
with exit status 2 and says what to download from where, and which path to give the
recipe instead. ``huggingface_hub`` itself would retry for about half a minute first.

Recipes take either a local path or a hub reference: :func:`resolve_weights` turns
``/models/sd-inpainting``, ``org/name`` (a snapshot folder), ``org/name/file.pt`` (one
file) or a registry name (``sam2.1-tiny``) into a local path, from the cache only unless
downloads are allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

EXIT_OK, EXIT_CONFIG = 0, 2

# Values huggingface_hub accepts as "true" for its boolean environment variables.
_TRUE = {"1", "on", "yes", "true"}


class WeightsError(ValueError):
    """Weights cannot be found or fetched; the message says what to download and where to."""


@dataclasses.dataclass(frozen=True)
class KnownModel:
    """One entry of :data:`KNOWN_MODELS`."""

    name: str
    description: str
    repo_id: str | None  # None: not on the Hugging Face Hub (see ``homepage``)
    # "files": the files below, the recipe takes the first; "diffusers" / "transformers":
    # a model folder (the recipe takes the folder), recognised by the file below.
    layout: str
    files: tuple[str, ...]
    recipe_key: str  # where the path goes in a recipe
    homepage: str
    gated: bool = False  # the repository asks you to accept a licence and log in
    ignore: tuple[str, ...] = ()  # "transformers" layout: repository files a folder does not need

    @property
    def is_folder(self) -> bool:
        """The recipe takes a folder (a diffusers pipeline, a transformers model), not one file."""
        return self.layout != "files"

    def hub_url(self, filename: str | None = None) -> str:
        url = f"https://huggingface.co/{self.repo_id}"
        return f"{url}/resolve/main/{filename}" if filename else url


#: The models the recipes can use, by the name ``weights get`` takes. Repository ids and
#: file names are the publishers' own (checked on huggingface.co, 2026).
KNOWN_MODELS: dict[str, KnownModel] = {
    model.name: model
    for model in (
        KnownModel(
            name="robotseg",
            description="RobotSeg (robot arm / gripper / whole-robot video segmentation, SAM 2.1 Hiera-T based)",
            repo_id=None,
            layout="files",
            files=("robotseg.pt",),
            recipe_key="segmentation.checkpoint",
            homepage="https://github.com/showlab/RobotSeg#72-download",
        ),
        KnownModel(
            name="sam2.1-tiny",
            description="SAM 2.1 Hiera-Tiny (38.9 M parameters; also the base RobotSeg starts from)",
            repo_id="facebook/sam2.1-hiera-tiny",
            layout="files",
            files=("sam2.1_hiera_tiny.pt", "sam2.1_hiera_t.yaml"),
            recipe_key="segmentation.checkpoint",
            homepage="https://huggingface.co/facebook/sam2.1-hiera-tiny",
        ),
        KnownModel(
            name="sam2.1-small",
            description="SAM 2.1 Hiera-Small (46 M parameters)",
            repo_id="facebook/sam2.1-hiera-small",
            layout="files",
            files=("sam2.1_hiera_small.pt", "sam2.1_hiera_s.yaml"),
            recipe_key="segmentation.checkpoint",
            homepage="https://huggingface.co/facebook/sam2.1-hiera-small",
        ),
        KnownModel(
            name="sam3",
            description="SAM 3 (text-prompted robot and object segmentation and tracking; transformers format)",
            repo_id="facebook/sam3",
            layout="transformers",
            files=("config.json",),
            recipe_key="segmentation.model",
            homepage="https://huggingface.co/facebook/sam3",
            gated=True,
            ignore=("*.pt",),  # the official sam3 package's checkpoint; transformers reads the safetensors
        ),
        KnownModel(
            name="sd-inpainting",
            description="Stable Diffusion 1.5 inpainting (diffusers pipeline, 512 px)",
            repo_id="stable-diffusion-v1-5/stable-diffusion-inpainting",
            layout="diffusers",
            files=("model_index.json",),
            recipe_key="background.model",
            homepage="https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-inpainting",
        ),
        KnownModel(
            name="sdxl-inpainting",
            description="Stable Diffusion XL 1.0 inpainting 0.1 (diffusers pipeline, 1024 px)",
            repo_id="diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
            layout="diffusers",
            files=("model_index.json",),
            recipe_key="background.model",
            homepage="https://huggingface.co/diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
        ),
    )
}

# ---------------------------------------------------------------------------------------
# Where the cache is, whether we are offline


def hub_cache_dir() -> str:
    """The Hugging Face hub cache folder, read from the environment now.

    ``huggingface_hub.constants`` freezes these variables when it is first imported; a
    command (or test) that sets them afterwards must still be obeyed.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def hub_endpoint() -> str:
    """The Hub's address (``HF_ENDPOINT``, read now; default https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_reason(probe_repo: str | None = None, timeout: float = 5.0) -> str | None:
    """Why the Hub cannot be used now, or ``None`` if it answered.

    One request without retries: ``huggingface_hub`` retries a refused connection for
    about half a minute, and a command without network should say so at once.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import get_session

    url = f"{hub_endpoint()}/api/models/{probe_repo}" if probe_repo else hub_endpoint()
    try:
        get_session().head(url, timeout=timeout)
    except Exception as e:  # any transport error (DNS, refused, timeout, proxy) means offline
        return f"{hub_endpoint()} cannot be reached ({type(e).__name__}: {e})"
    return None


# ---------------------------------------------------------------------------------------
# What is in the cache


@dataclasses.dataclass
class CachedModel:
    """What the cache holds of one known model."""

    model: KnownModel
    path: str | None  # what to give the recipe: the main file, or the pipeline folder
    missing: list[str]  # files (for a folder: its marker file) not in the cache
    size_bytes: int = 0

    @property
    def present(self) -> bool:
        return self.path is not None and not self.missing


def cached_model(model: KnownModel, cache_dir: str | None = None) -> CachedModel:
    """Look ``model`` up in the cache (no network)."""
    cache_dir = cache_dir or hub_cache_dir()
    if model.repo_id is None:
        return CachedModel(model, None, list(model.files))
    found = {name: _cached_file(model.repo_id, name, cache_dir) for name in model.files}
    missing = [name for name, path in found.items() if path is None]
    first = found[model.files[0]]
    path = (os.path.dirname(first) if model.is_folder else first) if first else None
    return CachedModel(model, path, missing, _repo_size(model.repo_id, cache_dir))


def _cached_file(repo_id: str, filename: str, cache_dir: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
    return path if isinstance(path, str) and os.path.exists(path) else None


def _repo_size(repo_id: str, cache_dir: str) -> int:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return 0
    return sum(repo.size_on_disk for repo in info.repos if repo.repo_id == repo_id and repo.repo_type == "model")


# ---------------------------------------------------------------------------------------
# Downloading


def download(model: KnownModel, cache_dir: str | None = None, repo_id: str | None = None) -> str:
    """Fetch ``model`` into the cache and return the path a recipe takes.

    Raises :class:`WeightsError` (with what to download by hand) when offline, when the
    model is not on the Hub, or when the Hub refuses (gated, missing).
    """
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    cache_dir = cache_dir or hub_cache_dir()
    repo_id = repo_id or model.repo_id
    if repo_id is None:
        raise WeightsError(manual_instructions(model, "it is not published on the Hugging Face Hub"))
    if repo_id != model.repo_id:
        model = dataclasses.replace(model, repo_id=repo_id)
    reason = offline_reason(repo_id)
    if reason:
        raise WeightsError(manual_instructions(model, f"offline: {reason}; nothing was downloaded"))
    try:
        if model.layout == "diffusers":
            # diffusers knows which of a pipeline repository's files a pipeline loads
            # (safetensors over pickles, no fp16 or single-file duplicates).
            from diffusers import DiffusionPipeline

            return str(DiffusionPipeline.download(repo_id, cache_dir=cache_dir))
        if model.layout == "transformers":
            return snapshot_download(repo_id, cache_dir=cache_dir, endpoint=hub_endpoint(), ignore_patterns=list(model.ignore))
        paths = [hf_hub_download(repo_id, name, cache_dir=cache_dir, endpoint=hub_endpoint()) for name in model.files]
        return paths[0]
    except GatedRepoError:
        raise WeightsError(
            manual_instructions(
                model,
                f"{model.hub_url()} is gated: accept its licence on that page, then log in "
                "(`hf auth login` or HF_TOKEN) and run this again",
            )
        ) from None
    except RepositoryNotFoundError:
        raise WeightsError(manual_instructions(model, f"the Hub has no repository {repo_id}")) from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        raise WeightsError(manual_instructions(model, f"the download failed ({type(e).__name__}: {e})")) from None


def manual_instructions(model: KnownModel, reason: str) -> str:
    """The message for a download that cannot happen here: what, from where, which path to give."""
    lines = [f"{model.name}: {reason}."]
    example = f"/models/{model.name}"
    if model.repo_id is None:
        lines.append(f"  Download {', '.join(model.files)} by hand from {model.homepage}")
        given = f"{example}/{model.files[0]}"
    elif model.is_folder:
        exclude = "".join(f" --exclude '{pattern}'" for pattern in model.ignore)
        lines.append(f"  On a machine with network: oxe-augment weights get {model.name}")
        lines.append(f"  or: hf download {model.repo_id}{exclude} --local-dir {example}  (from {model.hub_url()})")
        lines.append("  then copy the folder here.")
        given = example
    else:
        lines.append(f"  On a machine with network: oxe-augment weights get {model.name}")
        lines.append(f"  or download {', '.join(model.files)} from {model.hub_url()}:")
        lines.extend(f"    {model.hub_url(name)}" for name in model.files)
        given = f"{example}/{model.files[0]}"
    lines.append(f"  Then give the path instead: --set {model.recipe_key}={given}")
    if model.gated:
        lines.append(f"  ({model.hub_url()} is gated: accept its licence there and log in first.)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Paths or hub ids in recipes


def resolve_weights(path_or_hub_id: str, allow_download: bool = False, cache_dir: str | None = None) -> str:
    """A local path for a recipe value that names weights.

    Accepts, in this order:

    - an existing local file or folder (returned as an absolute path);
    - a :data:`KNOWN_MODELS` name (``sam2.1-tiny``): its main file, or its pipeline folder;
    - ``org/name``: the repository's snapshot folder (a diffusers pipeline, say);
    - ``org/name/path/in/repo.pt``: that one file.

    Hub references come from the local cache; they are downloaded only with
    ``allow_download`` (and a network). Raises :class:`WeightsError` naming the value
    and what to do otherwise. Remote URLs (``gs://...``) are returned unchanged.
    """
    value = path_or_hub_id.strip()
    if "://" in value:
        return value
    local = os.path.abspath(os.path.expanduser(value))
    if os.path.exists(local):
        return local
    cache_dir = cache_dir or hub_cache_dir()
    if value in KNOWN_MODELS:
        model = KNOWN_MODELS[value]
        cached = cached_model(model, cache_dir)
        if cached.present:
            return cached.path
        if allow_download:
            return download(model, cache_dir)
        raise WeightsError(manual_instructions(model, f"{value!r} is not in the Hugging Face cache ({cache_dir})"))

    parts = value.split("/")
    if len(parts) < 2 or value.startswith(("/", ".", "~")) or not all(parts):
        raise WeightsError(f"{value}: no such file or folder, and not a hub id (org/name or org/name/file)")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if allow_download:
        reason = offline_reason(repo_id)
        if reason:
            raise WeightsError(
                f"{value}: not a local path, and the Hub cannot be used ({reason}). Download "
                f"https://huggingface.co/{repo_id} on a machine with network and give its local path instead."
            )
    try:
        if filename:
            return hf_hub_download(
                repo_id, filename, cache_dir=cache_dir, local_files_only=not allow_download, endpoint=hub_endpoint()
            )
        return snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=not allow_download, endpoint=hub_endpoint())
    except (LocalEntryNotFoundError, OSError) as e:
        hint = "" if allow_download else " (downloads are off: run `oxe-augment weights get` or `hf download` first)"
        raise WeightsError(
            f"{value}: not a local path, and {repo_id} {'file ' + filename if filename else 'snapshot'} is not in "
            f"the Hugging Face cache ({cache_dir}){hint}; or give a local path instead. ({type(e).__name__})"
        ) from None


# ---------------------------------------------------------------------------------------
# Command line


def add_parser(subparsers) -> None:
    """Register ``weights get`` and ``weights list`` with the ``oxe-augment`` parser."""
    parser = subparsers.add_parser(
        "weights",
        help="download model weights, or list what is in the cache",
        description="Model weights through the Hugging Face cache "
        f"(HF_HUB_CACHE / HF_HOME). Known models: {', '.join(KNOWN_MODELS)}.",
    )
    commands = parser.add_subparsers(title="weights commands", metavar="WHAT")
    get = commands.add_parser(
        "get",
        help="download a known model into the Hugging Face cache",
        description="Download a known model; prints the path to give the recipe.",
    )
    get.add_argument("name", choices=sorted(KNOWN_MODELS), metavar="NAME", help=", ".join(KNOWN_MODELS))
    get.add_argument("--repo", help="another Hub repository with the same files (a mirror or a fine-tune)")
    get.add_argument("--cache-dir", help="cache folder (default: HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub)")
    get.set_defaults(handler=get_command)
    listing = commands.add_parser(
        "list",
        help="show which known models are in the cache, and where",
        description="Known models, whether the cache holds them, and the path to give recipes.",
    )
    listing.add_argument("--cache-dir", help="cache folder (default: as for get)")
    listing.set_defaults(handler=list_command)
    parser.set_defaults(handler=lambda args: (parser.print_help(), EXIT_CONFIG)[1])


def get_command(args: argparse.Namespace) -> int:
    model = KNOWN_MODELS[args.name]
    print(f"getting {model.name} ({model.repo_id or model.homepage}) into {args.cache_dir or hub_cache_dir()}", flush=True)
    try:
        path = download(model, args.cache_dir, args.repo)
    except WeightsError as e:
        print(f"error: weights get {e}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{model.name}: {path}")
    print(f"use it with: --set {model.recipe_key}={path}")
    return EXIT_OK


def list_command(args: argparse.Namespace) -> int:
    cache_dir = args.cache_dir or hub_cache_dir()
    print(f"Hugging Face cache: {cache_dir}")
    for model in KNOWN_MODELS.values():
        cached = cached_model(model, cache_dir)
        if cached.present:
            state = f"present ({cached.size_bytes / 1e6:,.1f} MB)  {cached.path}"
        elif cached.path or (model.repo_id and len(cached.missing) < len(model.files)):
            state = f"incomplete: missing {', '.join(cached.missing)}"
        elif model.repo_id is None:
            state = f"not on the Hub: download by hand from {model.homepage}"
        else:
            state = f"absent (oxe-augment weights get {model.name})"
        print(f"  {model.name:<16} {state}")
        print(f"  {'':<16} {model.description}; recipe key {model.recipe_key}")
    return EXIT_OK
