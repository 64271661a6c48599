"""The Wan image models as data: where each is served, what it accepts, and the account limits.

Sources: docs/dashscope.md §Regions, §Endpoints, §Models, §Input images and §Rate limits. Where
the docs disagree we take the stricter reading, so a request we send is valid under every reading
(for example the wan2.6-t2i prompt limit is 2,100 in some mirrors and 2,000 in others: we allow
2,000).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

IMAGE_GENERATION = "/services/aigc/image-generation/generation"
MULTIMODAL_GENERATION = "/services/aigc/multimodal-generation/generation"
TEXT2IMAGE = "/services/aigc/text2image/image-synthesis"
IMAGE2IMAGE = "/services/aigc/image2image/image-synthesis"
VIDEO_SYNTHESIS = "/services/aigc/video-generation/video-synthesis"

SEED_MAX = 2_147_483_647

BEIJING, SINGAPORE, VIRGINIA = "cn-beijing", "ap-southeast-1", "us-east-1"


class Kind(StrEnum):
    """What a job does. A model does one kind, or several through its functions
    (`FUNCTION_KINDS`); a request may name its kind when it differs from its model's."""

    TEXT_TO_IMAGE = "text-to-image"
    EDIT = "edit"
    UPSCALE = "upscale"  # a chosen image made larger
    VARY = "vary"  # new images close to a chosen one, with its prompt
    EXPAND = "expand"  # zoom out or pan: a larger canvas with the chosen image at its place
    BLEND = "blend"  # several images and an instruction
    ANIMATE = "animate"  # an image made into a video
    VIDEO = "video"  # a video from text

    @property
    def takes_images(self) -> bool:
        """Whether the job's input images are part of its request (kept in job_inputs)."""
        return self not in (Kind.TEXT_TO_IMAGE, Kind.VIDEO)

    @property
    def makes_video(self) -> bool:
        return self in (Kind.ANIMATE, Kind.VIDEO)


class Protocol(StrEnum):
    """How the body is laid out and how results come back."""

    MESSAGES = (
        "messages"  # input.messages[0].content[0].text; negative_prompt in parameters; choices[]
    )
    PROMPT = "prompt"  # input.prompt (+ input.images, input.negative_prompt); results[]
    # wanx2.1-imageedit: input.function, input.prompt, input.base_image_url; results[]
    IMAGEEDIT = "imageedit"
    # video-synthesis: input.prompt (+ img_url, negative_prompt); parameters duration and
    # resolution (image to video) or size (text to video); output.video_url
    VIDEO = "video"


@dataclass(frozen=True)
class PixelRange:
    """Total pixels within [min_pixels, max_pixels] and aspect ratio within [1:4, 4:1]."""

    min_pixels: int
    max_pixels: int
    max_ratio: float = 4.0


@dataclass(frozen=True)
class SideRange:
    """Each side within [min_side, max_side]."""

    min_side: int
    max_side: int


SizeRule = PixelRange | SideRange


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: Kind
    protocol: Protocol
    async_path: str
    sync_path: str | None
    prompt_max: int
    negative_max: int
    size_rule: SizeRule
    default_size: tuple[int, int]
    recommended_sizes: tuple[tuple[int, int], ...]
    n_min: int = 1
    n_max: int = 4
    images_min: int = 0
    images_max: int = 0
    submit_rps: int = 5
    max_in_flight: int = 5
    regions: tuple[str, ...] = (BEIJING,)
    # Without `size`, an edit keeps its last input image's aspect ratio (docs/dashscope.md §Models).
    size_optional: bool = False
    # The functions of a one-model-many-functions API (wanx2.1-imageedit); empty: none.
    functions: tuple[str, ...] = ()
    # Each side of an input image (docs/dashscope.md §Input images; imageedit is narrower).
    input_sides: SideRange = SideRange(384, 5000)
    # Parameters sent with every request to the model (wan2.6-image's edit mode).
    fixed_parameters: tuple[tuple[str, object], ...] = ()
    # Video models: the lengths in seconds and the resolutions they make ("480P", "720P",
    # "1080P"), the first of each the default; whether they can add sound (`audio`).
    durations: tuple[int, ...] = ()
    resolutions: tuple[str, ...] = ()
    audio: bool = False

    @property
    def supports_sync(self) -> bool:
        return self.sync_path is not None

    @property
    def default_size_text(self) -> str:
        return format_size(*self.default_size)

    def kind_of(self, function: str | None) -> Kind:
        """The kind of a request to this model with this function."""
        return FUNCTION_KINDS.get(function or "", self.kind)

    def offered_in(self, region: str | None) -> bool:
        """Whether a key of `region` can use the model; None (a gateway we do not recognise,
        such as the simulator or a proxy) offers every model."""
        return region is None or region in self.regions

    @property
    def video_sizes(self) -> tuple[tuple[int, int], ...]:
        """The sizes a text-to-video model makes, across its resolutions."""
        return tuple(size for res in self.resolutions for size in VIDEO_SIZES.get(res, ()))

    def recommended_text(self) -> str:
        return ", ".join(format_size(w, h) for w, h in self.recommended_sizes)


def format_size(width: int, height: int) -> str:
    return f"{width}*{height}"


# wanx2.1-imageedit's functions this bot uses, and the kind of job each makes.
SUPER_RESOLUTION, EXPAND_FUNCTION, DESCRIPTION_EDIT = (
    "super_resolution",
    "expand",
    "description_edit",
)
FUNCTION_KINDS: dict[str, Kind] = {
    SUPER_RESOLUTION: Kind.UPSCALE,
    EXPAND_FUNCTION: Kind.EXPAND,
    DESCRIPTION_EDIT: Kind.VARY,
}
UPSCALE_FACTORS = (1, 4)  # upscale_factor's range (super_resolution)
EXPAND_SCALES = (1.0, 2.0)  # top/bottom/left/right_scale's range (expand)
STRENGTH_RANGE = (0.0, 1.0)  # strength's range (description_edit)

# Text-to-video sizes by resolution (docs/dashscope.md §Video, UNCONFIRMED: tolerate more).
VIDEO_SIZES: dict[str, tuple[tuple[int, int], ...]] = {
    "480P": ((832, 480), (480, 832), (624, 624)),
    "720P": ((1280, 720), (720, 1280), (960, 960), (1088, 832), (832, 1088)),
    "1080P": ((1920, 1080), (1080, 1920), (1440, 1440), (1632, 1248), (1248, 1632)),
}


def resolution_of(width: int, height: int) -> str | None:
    """The resolution a text-to-video size belongs to."""
    return next((res for res, sizes in VIDEO_SIZES.items() if (width, height) in sizes), None)


_T2I_SIZES = ((1280, 1280), (1104, 1472), (1472, 1104), (960, 1696), (1696, 960))
_T2I_PIXELS = PixelRange(1280 * 1280, 1440 * 1440)
_LEGACY_SIDES = SideRange(512, 1440)
_LEGACY_SIZES = ((1024, 1024), (720, 1280), (1280, 720), (768, 1152), (1152, 768), (1440, 1440))


def _video(
    name: str,
    kind: Kind,
    durations: tuple[int, ...],
    resolutions: tuple[str, ...],
    *,
    prompt_max: int = 800,
    audio: bool = False,
    regions: tuple[str, ...] = (BEIJING, SINGAPORE),
) -> ModelSpec:
    """A Wan video model (docs/dashscope.md §Video): one video per task, asynchronous only."""
    image = kind is Kind.ANIMATE
    sizes = tuple(size for res in resolutions for size in VIDEO_SIZES[res])
    return ModelSpec(
        name=name,
        kind=kind,
        protocol=Protocol.VIDEO,
        async_path=VIDEO_SYNTHESIS,
        sync_path=None,
        prompt_max=prompt_max,
        negative_max=500,
        size_rule=SideRange(360, 2000),
        default_size=(1280, 720) if (1280, 720) in sizes else sizes[0],
        recommended_sizes=() if image else sizes,
        n_max=1,
        images_min=1 if image else 0,
        images_max=1 if image else 0,
        submit_rps=2,
        max_in_flight=2,  # lower than for images on several video models (UNCONFIRMED)
        regions=regions,
        size_optional=image,  # an image-to-video clip takes its image's shape at `resolution`
        input_sides=SideRange(360, 2000),
        durations=durations,
        resolutions=resolutions,
        audio=audio,
    )


_HD = ("720P", "1080P")
_ALL_RES = ("480P", "720P", "1080P")


def _legacy(name: str, prompt_max: int, regions: tuple[str, ...], sync: bool) -> ModelSpec:
    return ModelSpec(
        name=name,
        kind=Kind.TEXT_TO_IMAGE,
        protocol=Protocol.PROMPT,
        async_path=TEXT2IMAGE,
        sync_path=TEXT2IMAGE if sync else None,
        prompt_max=prompt_max,
        negative_max=500,
        size_rule=_LEGACY_SIDES,
        default_size=(1024, 1024),
        recommended_sizes=_LEGACY_SIZES,
        submit_rps=2,
        max_in_flight=2,
        regions=regions,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="wan2.6-t2i",
            kind=Kind.TEXT_TO_IMAGE,
            protocol=Protocol.MESSAGES,
            async_path=IMAGE_GENERATION,
            sync_path=MULTIMODAL_GENERATION,
            prompt_max=2000,
            negative_max=500,
            size_rule=_T2I_PIXELS,
            default_size=(1280, 1280),
            recommended_sizes=_T2I_SIZES,
            regions=(BEIJING, SINGAPORE, VIRGINIA),
        ),
        ModelSpec(
            name="wan2.5-t2i-preview",
            kind=Kind.TEXT_TO_IMAGE,
            protocol=Protocol.PROMPT,
            async_path=TEXT2IMAGE,
            sync_path=None,
            prompt_max=2000,
            negative_max=500,
            size_rule=_T2I_PIXELS,
            default_size=(1280, 1280),
            recommended_sizes=_T2I_SIZES,
            regions=(BEIJING, SINGAPORE),
        ),
        _legacy("wan2.2-t2i-plus", 500, (BEIJING, SINGAPORE), sync=True),
        _legacy("wan2.2-t2i-flash", 500, (BEIJING, SINGAPORE), sync=True),
        _legacy("wanx2.1-t2i-plus", 500, (BEIJING,), sync=False),
        _legacy("wanx2.1-t2i-turbo", 500, (BEIJING,), sync=False),
        _legacy("wan2.1-t2i-plus", 500, (SINGAPORE,), sync=False),
        _legacy("wan2.1-t2i-turbo", 500, (SINGAPORE,), sync=False),
        _legacy("wanx2.0-t2i-turbo", 800, (BEIJING,), sync=False),
        ModelSpec(
            name="wan2.5-i2i-preview",
            kind=Kind.EDIT,
            protocol=Protocol.PROMPT,
            async_path=IMAGE2IMAGE,
            sync_path=None,
            prompt_max=2000,
            negative_max=500,
            size_rule=PixelRange(768 * 768, 1280 * 1280),
            default_size=(1280, 1280),
            recommended_sizes=(
                (1280, 1280),
                (1024, 1024),
                (800, 1200),
                (1200, 800),
                (960, 1280),
                (1280, 960),
                (720, 1280),
                (1280, 720),
                (1344, 576),
            ),
            images_min=1,
            images_max=3,
            regions=(BEIJING, SINGAPORE),
            size_optional=True,
        ),
        # One model, many functions; Beijing only (docs/dashscope.md §Image tools). The result
        # has the input's size times upscale_factor (super_resolution) or its scales (expand).
        ModelSpec(
            name="wanx2.1-imageedit",
            kind=Kind.EDIT,
            protocol=Protocol.IMAGEEDIT,
            async_path=IMAGE2IMAGE,
            sync_path=None,
            prompt_max=800,
            negative_max=0,
            size_rule=SideRange(512, 4096),
            default_size=(1024, 1024),
            recommended_sizes=(),
            images_min=1,
            images_max=1,
            submit_rps=2,
            max_in_flight=2,
            size_optional=True,
            functions=(DESCRIPTION_EDIT, EXPAND_FUNCTION, SUPER_RESOLUTION),
            input_sides=SideRange(512, 4096),
        ),
        # Edit or blend one to four images with one instruction (edit mode); all three regions.
        ModelSpec(
            name="wan2.6-image",
            kind=Kind.BLEND,
            protocol=Protocol.MESSAGES,
            async_path=IMAGE_GENERATION,
            sync_path=MULTIMODAL_GENERATION,
            prompt_max=2000,
            negative_max=500,
            size_rule=PixelRange(768 * 768, 1280 * 1280),
            default_size=(1280, 1280),
            recommended_sizes=((1280, 1280), (1024, 1024), (960, 1280), (1280, 960)),
            images_min=1,
            images_max=4,
            regions=(BEIJING, SINGAPORE, VIRGINIA),
            size_optional=True,
            fixed_parameters=(("enable_interleave", False),),
        ),
        _video("wan2.5-i2v-preview", Kind.ANIMATE, (5, 10), _ALL_RES, prompt_max=1500, audio=True),
        _video("wan2.6-i2v", Kind.ANIMATE, (5, 10, 15), _HD, prompt_max=1500, audio=True),
        _video("wan2.2-i2v-plus", Kind.ANIMATE, (5,), ("480P", "1080P")),
        _video("wanx2.1-i2v-turbo", Kind.ANIMATE, (5, 3, 4), ("720P", "480P"), regions=(BEIJING,)),
        _video("wanx2.1-i2v-plus", Kind.ANIMATE, (5,), ("720P",), regions=(BEIJING,)),
        _video("wan2.5-t2v-preview", Kind.VIDEO, (5, 10), _ALL_RES, prompt_max=1500, audio=True),
        _video("wan2.6-t2v", Kind.VIDEO, (5, 10, 15), _HD, prompt_max=1500, audio=True),
        _video("wan2.2-t2v-plus", Kind.VIDEO, (5,), ("480P", "1080P")),
        _video("wanx2.1-t2v-turbo", Kind.VIDEO, (5,), ("720P", "480P"), regions=(BEIJING,)),
        _video("wanx2.1-t2v-plus", Kind.VIDEO, (5,), ("720P",), regions=(BEIJING,)),
    )
}

# Price of one image in CNY, Beijing list prices as we read them in 2026; an operator sets the
# account's real prices with PRICES (see README). Used for budgets and reports, never billing.
DEFAULT_PRICES: dict[str, float] = {
    "wan2.6-t2i": 0.20,
    "wan2.5-t2i-preview": 0.20,
    "wan2.2-t2i-plus": 0.20,
    "wan2.2-t2i-flash": 0.14,
    "wanx2.1-t2i-plus": 0.20,
    "wanx2.1-t2i-turbo": 0.14,
    "wan2.1-t2i-plus": 0.20,
    "wan2.1-t2i-turbo": 0.14,
    "wanx2.0-t2i-turbo": 0.04,
    "wan2.5-i2i-preview": 0.20,
    "wanx2.1-imageedit": 0.14,
    "wan2.6-image": 0.20,
    # Video: the price of one second, by model and resolution (`model:720P`), list prices as we
    # read them (UNCONFIRMED: set the account's with PRICES); a model's own key covers the rest.
    **{
        f"{model}:{res}": price
        for model, prices in {
            "wan2.5-i2v-preview": (0.3, 0.6, 1.0),
            "wan2.6-i2v": (0.3, 0.6, 1.0),
            "wan2.2-i2v-plus": (0.14, 0.7, 0.7),
            "wanx2.1-i2v-turbo": (0.24, 0.24, 0.24),
            "wanx2.1-i2v-plus": (0.7, 0.7, 0.7),
            "wan2.5-t2v-preview": (0.3, 0.6, 1.0),
            "wan2.6-t2v": (0.3, 0.6, 1.0),
            "wan2.2-t2v-plus": (0.14, 0.7, 0.7),
            "wanx2.1-t2v-turbo": (0.24, 0.24, 0.24),
            "wanx2.1-t2v-plus": (0.7, 0.7, 0.7),
        }.items()
        for res, price in zip(("480P", "720P", "1080P"), prices, strict=True)
        if res in MODELS[model].resolutions
    },
}

DEFAULT_TEXT_TO_IMAGE_MODEL = "wan2.6-t2i"
DEFAULT_EDIT_MODEL = "wan2.5-i2i-preview"
DEFAULT_BLEND_MODEL = "wan2.6-image"
IMAGE_TOOLS_MODEL = "wanx2.1-imageedit"  # Upscale, Vary, Zoom out, Pan
DEFAULT_ANIMATE_MODEL = "wan2.5-i2v-preview"
DEFAULT_VIDEO_MODEL = "wan2.5-t2v-preview"

# Input images for edits (docs/dashscope.md §Input images): each side 384–5000 px, at most 10 MB.
# Whether the 10 MB counts raw or base64 bytes is unconfirmed, so we keep raw bytes under 7.5 MB:
# under 10 MB either way.
INPUT_MIN_SIDE = 384
INPUT_MAX_SIDE = 5000
INPUT_MAX_BYTES = 7_500_000


def get_model(name: str) -> ModelSpec | None:
    return MODELS.get(name)


def price_key(model: str, detail: str | None) -> str:
    """The PRICES key of a request: `model:function` for a function's own price, or
    `model:720P` for a video resolution's, which fall back to the model's (`Quota.price`)."""
    return f"{model}:{detail}" if detail else model


def models_of(kind: Kind) -> list[ModelSpec]:
    return [spec for spec in MODELS.values() if spec.kind is kind]


def region_of_base_url(base_url: str) -> str | None:
    """The region a DashScope gateway URL serves, or None for hosts we do not recognise."""
    host = base_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    if host == "dashscope.aliyuncs.com" or host.endswith(".cn-beijing.maas.aliyuncs.com"):
        return BEIJING
    if host == "dashscope-intl.aliyuncs.com" or host.endswith(".ap-southeast-1.maas.aliyuncs.com"):
        return SINGAPORE
    if host == "dashscope-us.aliyuncs.com" or host.endswith(".us-east-1.maas.aliyuncs.com"):
        return VIRGINIA
    return None
