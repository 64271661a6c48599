"""Local validation of generation/edit requests, and the request bodies, against the docs.

All numbers below are copied from docs/dashscope.md (§Endpoints, §Bodies, §Models), not from
bot.dashscope.models, so a wrong table in the code makes these tests fail. Each § below names a
section of docs/dashscope.md.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.dashscope.models import MODELS
from bot.dashscope.requests import ImageRequest, build_body, validate
from bot.errors import InputRejected
from bot.presenter import describe, render, utc_time

IMAGE = "data:image/png;base64,iVBORw0KGgo="
URL_IMAGE = "https://img.alicdn.com/imgextra/i3/O1CN0157XGE51l6iL9441yX_!!6000000004770-49-tps-1104-1472.webp"

# --- docs/dashscope.md, restated -----------------------------------------------------------------

NEW_T2I = ["wan2.6-t2i", "wan2.5-t2i-preview"]  # total pixels in [1280², 1440²], ratio ≤ 4
LEGACY_T2I = [  # each side in [512, 1440]
    "wan2.2-t2i-plus",
    "wan2.2-t2i-flash",
    "wanx2.1-t2i-plus",
    "wanx2.1-t2i-turbo",
    "wan2.1-t2i-plus",
    "wan2.1-t2i-turbo",
    "wanx2.0-t2i-turbo",
]
EDIT = ["wan2.5-i2i-preview"]  # total pixels in [768², 1280²], ratio ≤ 4; 1–3 images
# The image tools (dashscope-more.md): one function model, one blend model; tests/test_image_tools.py
TOOLS = ["wanx2.1-imageedit", "wan2.6-image"]
# Video (dashscope-more.md §Video): image to video, text to video; tests/test_video_requests.py
I2V = [
    "wan2.5-i2v-preview",
    "wan2.6-i2v",
    "wan2.2-i2v-plus",
    "wanx2.1-i2v-turbo",
    "wanx2.1-i2v-plus",
]
T2V = [
    "wan2.5-t2v-preview",
    "wan2.6-t2v",
    "wan2.2-t2v-plus",
    "wanx2.1-t2v-turbo",
    "wanx2.1-t2v-plus",
]

PROMPT_LIMIT = {  # §Models (wan2.6-t2i 2,000/2,100: we take the stricter 2,000)
    "wan2.6-t2i": 2000,
    "wan2.5-t2i-preview": 2000,
    "wan2.2-t2i-plus": 500,
    "wan2.2-t2i-flash": 500,
    "wanx2.1-t2i-plus": 500,
    "wanx2.1-t2i-turbo": 500,
    "wan2.1-t2i-plus": 500,
    "wan2.1-t2i-turbo": 500,
    "wanx2.0-t2i-turbo": 800,
    "wan2.5-i2i-preview": 2000,
    "wanx2.1-imageedit": 800,
    "wan2.6-image": 2000,
    **{model: 1500 if model.startswith(("wan2.5", "wan2.6")) else 800 for model in I2V + T2V},
}
NEGATIVE_LIMIT = 500
NO_NEGATIVE = {"wanx2.1-imageedit"}
# imageedit's canvas follows its function; videos have sizes of their own (test_video_requests)
SIZED = [model for model in MODELS if model not in ["wanx2.1-imageedit", *I2V, *T2V]]
SEED_MAX = 2147483647
SIZE_KEYS = {
    "invalid.size_format",
    "invalid.size_pixels",
    "invalid.size_ratio",
    "invalid.size_sides",
}

T2I_RECOMMENDED = "1280*1280, 1104*1472, 1472*1104, 960*1696, 1696*960"
# §Models recommends these, though 1104*1472 (1,625,088 px) and 960*1696 (1,628,160 px) fall just
# short of its own 1280*1280 floor: a documented size must be accepted as it stands.
T2I_RECOMMENDED_SIZES = {(1104, 1472), (1472, 1104), (960, 1696), (1696, 960)}


def documented_size_ok(model: str, width: int, height: int) -> bool:
    """§Models, written out independently of the module."""
    ratio_ok = width <= 4 * height and height <= 4 * width
    if model in NEW_T2I:
        if (width, height) in T2I_RECOMMENDED_SIZES:
            return True
        return 1280 * 1280 <= width * height <= 1440 * 1440 and ratio_ok
    if model in EDIT or model == "wan2.6-image":
        return 768 * 768 <= width * height <= 1280 * 1280 and ratio_ok
    assert model in LEGACY_T2I
    return 512 <= width <= 1440 and 512 <= height <= 1440


def request(model: str = "wan2.6-t2i", **fields) -> ImageRequest:
    """A valid request for MODEL, changed by FIELDS (edits get one image unless told)."""
    if model in EDIT + TOOLS + I2V:
        fields.setdefault("images", (IMAGE,))
    if model == "wanx2.1-imageedit":
        fields.setdefault("function", "description_edit")
    fields.setdefault("prompt", "a red fox in the snow")
    return ImageRequest(model=model, **fields)


def rejected(req: ImageRequest) -> InputRejected:
    with pytest.raises(InputRejected) as caught:
        validate(req)
    return caught.value


def keys(req: ImageRequest) -> list[str]:
    return [problem.key for problem in rejected(req).problems]


def check_message(req: ImageRequest, key: str, en: str, zh: str) -> None:
    error = rejected(req)
    assert [problem.key for problem in error.problems] == [key]
    assert describe(error, "en", moment=utc_time) == en
    assert describe(error, "zh", moment=utc_time) == zh


def test_model_table_matches_the_docs():
    assert set(MODELS) == set(NEW_T2I + LEGACY_T2I + EDIT + TOOLS + I2V + T2V)
    assert set(PROMPT_LIMIT) == set(MODELS)


# --- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", NEW_T2I)
@pytest.mark.parametrize(
    "size",
    [
        "1280*1280",
        "1104*1472",
        "1472*1104",
        "960*1696",
        "1696*960",
        "768*2700",  # documented example: exactly 1440² px, ratio 3.5
        "2700*768",
        "1440*1440",
        "640*2560",  # exactly 1280² px and exactly 1:4
        "2560*640",
    ],
)
def test_new_t2i_sizes_accepted(model, size):
    assert validate(request(model, size=size)).size == size


@pytest.mark.parametrize("model", NEW_T2I)
@pytest.mark.parametrize(
    ("size", "key"),
    [
        ("1024*1024", "invalid.size_pixels"),  # too few pixels
        ("1279*1280", "invalid.size_pixels"),
        ("1104*1473", "invalid.size_pixels"),  # near a recommended size is not enough
        ("1100*1480", "invalid.size_pixels"),
        ("1500*1500", "invalid.size_pixels"),  # too many
        ("1441*1440", "invalid.size_pixels"),
        ("640*2600", "invalid.size_ratio"),  # pixels fine, ratio 4.06
        ("2600*640", "invalid.size_ratio"),
        ("0*0", "invalid.size_ratio"),
        ("abc", "invalid.size_format"),
        ("1280", "invalid.size_format"),
        ("1280*", "invalid.size_format"),
        ("1280*1280*1", "invalid.size_format"),
        ("1280.0*1280", "invalid.size_format"),
        ("-1280*1280", "invalid.size_format"),
        ("123456*1", "invalid.size_format"),
        ("", "invalid.size_format"),
    ],
)
def test_new_t2i_sizes_refused(model, size, key):
    assert keys(request(model, size=size)) == [key]


@pytest.mark.parametrize(
    "written", ["1280x1280", "1280X1280", "1280×1280", " 1280 * 1280 ", "1280 x 1280", "01280*1280"]
)
def test_size_spellings_are_normalised(written):
    assert validate(request("wan2.6-t2i", size=written)).size == "1280*1280"


@pytest.mark.parametrize(
    ("size", "ok"),
    [
        ("768*768", True),
        ("1280*1280", True),
        ("1344*576", True),  # a documented recommended size
        ("800*1200", True),
        ("384*1536", True),  # exactly 768² px at exactly 1:4
        ("700*700", False),
        ("1281*1280", False),
        ("3000*700", False),  # too many pixels, and ratio 4.3
        ("1680*400", False),  # 672,000 px but ratio 4.2
    ],
)
def test_edit_sizes(size, ok):
    req = request("wan2.5-i2i-preview", size=size)
    if ok:
        assert validate(req).size == size
    else:
        assert keys(req) in (["invalid.size_pixels"], ["invalid.size_ratio"])


def test_edit_size_is_optional():
    """Without size the output follows the last input image's aspect ratio (§Models)."""
    validated = validate(request("wan2.5-i2i-preview"))
    assert validated.size is None
    assert "size" not in build_body(validated)["parameters"]


@pytest.mark.parametrize("model", LEGACY_T2I)
@pytest.mark.parametrize(
    ("size", "ok"),
    [
        ("512*1440", True),
        ("1440*512", True),
        ("512*512", True),
        ("1440*1440", True),
        ("1024*1024", True),
        ("511*1024", False),
        ("1024*511", False),
        ("1440*1441", False),
        ("1500*1000", False),
        ("0*1024", False),
    ],
)
def test_legacy_sizes_per_side(model, size, ok):
    req = request(model, size=size)
    if ok:
        assert validate(req).size == size
    else:
        assert keys(req) == ["invalid.size_sides"]


@pytest.mark.parametrize(
    ("model", "default"),
    [("wan2.6-t2i", "1280*1280"), ("wan2.5-t2i-preview", "1280*1280")]
    + [(model, "1024*1024") for model in LEGACY_T2I],
)
def test_default_sizes(model, default):
    assert validate(request(model)).size == default


@pytest.mark.parametrize("model", SIZED)
def test_recommended_and_default_sizes_are_valid(model):
    spec = MODELS[model]
    for width, height in (*spec.recommended_sizes, spec.default_size):
        assert documented_size_ok(model, width, height), (model, width, height)
        validate(request(model, size=f"{width}*{height}"))


SIZE_EXAMPLES = [
    ("wan2.6-t2i", 1104, 1472),
    ("wan2.5-t2i-preview", 960, 1696),
    ("wan2.6-t2i", 640, 2560),
    ("wan2.6-t2i", 639, 2560),
    ("wan2.6-t2i", 640, 2561),
    ("wan2.6-t2i", 1440, 1440),
    ("wan2.6-t2i", 1440, 1441),
    ("wan2.5-t2i-preview", 768, 2700),
    ("wan2.5-i2i-preview", 384, 1536),
    ("wan2.5-i2i-preview", 384, 1537),
    ("wan2.5-i2i-preview", 1280, 1280),
    ("wan2.2-t2i-flash", 512, 1440),
    ("wan2.2-t2i-flash", 511, 1440),
    ("wanx2.0-t2i-turbo", 1440, 1441),
]


def _with_examples(test):
    for model, width, height in SIZE_EXAMPLES:
        test = example(model=model, width=width, height=height)(test)
    return test


@settings(max_examples=400, deadline=None)
@_with_examples
@given(
    model=st.sampled_from(sorted(SIZED)),
    width=st.integers(min_value=1, max_value=6000),
    height=st.integers(min_value=1, max_value=6000),
)
def test_size_rule_matches_the_docs(model, width, height):
    req = request(model, size=f"{width}*{height}")
    if documented_size_ok(model, width, height):
        assert validate(req).size == f"{width}*{height}"
    else:
        with pytest.raises(InputRejected) as caught:
            validate(req)
        assert len(caught.value.problems) == 1
        assert caught.value.problems[0].key in SIZE_KEYS


def test_size_messages():
    t2i_rule_en = (
        f"use one of its sizes ({T2I_RECOMMENDED}) or any size of 1,638,400–2,073,600 pixels "
        "with an aspect ratio between 1:4 and 4:1."
    )
    t2i_rule_zh = (
        f"请用它的尺寸之一（{T2I_RECOMMENDED}），或总像素在 1,638,400–2,073,600 之间、"
        "宽高比在 1:4 到 4:1 之间的任意尺寸。"
    )
    check_message(
        request("wan2.6-t2i", size="1024*1024"),
        "invalid.size_pixels",
        f"Size 1024*1024 (1,048,576 pixels) isn't accepted by wan2.6-t2i: {t2i_rule_en}",
        f"wan2.6-t2i 不接受尺寸 1024*1024（1,048,576 像素）：{t2i_rule_zh}",
    )
    check_message(
        request("wan2.6-t2i", size="640x2600"),
        "invalid.size_ratio",
        f"Size 640*2600 is too narrow or too wide for wan2.6-t2i: {t2i_rule_en}",
        f"尺寸 640*2600 对 wan2.6-t2i 来说过窄或过宽：{t2i_rule_zh}",
    )
    legacy = "1024*1024, 720*1280, 1280*720, 768*1152, 1152*768, 1440*1440"
    check_message(
        request("wan2.2-t2i-flash", size="511*1024"),
        "invalid.size_sides",
        f"Size 511*1024 isn't accepted by wan2.2-t2i-flash: use one of its sizes ({legacy}) "
        "or any size with each side between 512 and 1440 pixels.",
        f"wan2.2-t2i-flash 不接受尺寸 511*1024：请用它的尺寸之一（{legacy}），"
        "或每边在 512 到 1440 像素之间的任意尺寸。",
    )
    check_message(
        request("wan2.6-t2i", size="abc"),
        "invalid.size_format",
        "Size `abc` is not WIDTH*HEIGHT (for example 1280*1280).",
        "尺寸 `abc` 格式不对，应为 宽*高（例如 1280*1280）。",
    )
    error = rejected(request("wan2.5-i2i-preview", size="700*700"))
    assert "any size of 589,824–1,638,400 pixels" in describe(error, "en", moment=utc_time)
    assert "1344*576" in describe(error, "en", moment=utc_time)


# Sizes outside every model's rule, each way it can be broken: too few and too many pixels or
# too short and too long a side, too narrow and too wide.
REFUSED_SIZES = [
    "100*100",
    "511*1024",
    "1024*1024",
    "1441*1441",
    "3000*3000",
    "640*2600",
    "2600*640",
]


@pytest.mark.parametrize("model", SIZED)
def test_no_refusal_suggests_a_size_it_refuses(model):
    """Every size a refusal offers passes validation, and the refusal states the whole rule:
    the offered sizes beside the range, so the offers never contradict it (§Models)."""
    spec = MODELS[model]
    refusals = 0
    for size in REFUSED_SIZES:
        if documented_size_ok(model, *map(int, size.split("*"))):
            continue
        refusals += 1
        [problem] = rejected(request(model, size=size)).problems
        offered = problem.values["recommended"].split(", ")
        assert offered == [f"{w}*{h}" for w, h in spec.recommended_sizes]
        for offer in offered:
            assert validate(request(model, size=offer)).size == offer
        words = render(problem, "en", moment=utc_time)
        assert f"use one of its sizes ({problem.values['recommended']}) or any size" in words
        bounds = words.replace(",", "")
        assert f"{problem.values['low']}" in bounds and f"{problem.values['high']}" in bounds
    assert refusals >= 3, model


# --- n and seed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["wan2.6-t2i", "wan2.2-t2i-flash", "wan2.5-i2i-preview"])
@pytest.mark.parametrize(("n", "ok"), [(0, False), (1, True), (4, True), (5, False), (-1, False)])
def test_n(model, n, ok):
    req = request(model, n=n)
    if ok:
        assert validate(req).n == n
    else:
        assert keys(req) == ["invalid.n"]


@pytest.mark.parametrize("n", [True, False])
def test_n_refuses_booleans(n):
    assert keys(request(n=n)) == ["invalid.n"]


def test_n_message():
    check_message(
        request(n=5),
        "invalid.n",
        "Number of images must be between 1 and 4 (got 5).",
        "图片数量须在 1 到 4 之间（当前 5）。",
    )


@pytest.mark.parametrize(
    ("seed", "ok"),
    [(None, True), (0, True), (1, True), (SEED_MAX, True), (-1, False), (SEED_MAX + 1, False)],
)
def test_seed(seed, ok):
    req = request(seed=seed)
    if ok:
        assert validate(req).seed == seed
    else:
        assert keys(req) == ["invalid.seed"]


def test_seed_refuses_booleans_and_says_why():
    assert keys(request(seed=True)) == ["invalid.seed"]
    check_message(
        request(seed=-1),
        "invalid.seed",
        "Seed must be a whole number between 0 and 2147483647 (got -1).",
        "种子须为 0 到 2147483647 之间的整数（当前 -1）。",
    )


# --- prompts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(PROMPT_LIMIT))
def test_prompt_length_limit(model):
    limit = PROMPT_LIMIT[model]
    assert validate(request(model, prompt="a" * limit)).prompt == "a" * limit
    assert validate(request(model, prompt="图" * limit)).prompt == "图" * limit
    assert keys(request(model, prompt="a" * (limit + 1))) == ["invalid.prompt_long"]
    assert keys(request(model, prompt="图" * (limit + 1))) == ["invalid.prompt_long"]


def test_prompt_length_is_measured_after_trimming():
    assert validate(request(prompt="  " + "a" * 2000 + "\n\n")).prompt == "a" * 2000


def test_prompt_long_message():
    check_message(
        request("wan2.6-t2i", prompt="x" * 2001),
        "invalid.prompt_long",
        "The prompt is 2001 characters; wan2.6-t2i accepts at most 2000. Shorten it.",
        "提示词有 2001 个字符，wan2.6-t2i 最多接受 2000 个，请缩短。",
    )
    error = rejected(request("wan2.2-t2i-flash", prompt="x" * 501))
    assert describe(error, "en", moment=utc_time) == (
        "The prompt is 501 characters; wan2.2-t2i-flash accepts at most 500. Shorten it."
    )


@pytest.mark.parametrize("prompt", ["", " ", "\n\t  \r\n", "\u3000"])
def test_empty_prompt(prompt):
    check_message(
        request(prompt=prompt),
        "invalid.prompt_empty",
        "The prompt is empty. Describe the image you want.",
        "提示词为空，请描述你想要的图片。",
    )


@pytest.mark.parametrize("model", sorted(set(MODELS) - NO_NEGATIVE))
def test_negative_prompt_limit(model):
    ok = validate(request(model, negative_prompt="n" * NEGATIVE_LIMIT))
    assert ok.negative_prompt == "n" * NEGATIVE_LIMIT
    assert keys(request(model, negative_prompt="n" * (NEGATIVE_LIMIT + 1))) == [
        "invalid.negative_long"
    ]


def test_negative_prompt_message_and_trimming():
    check_message(
        request(negative_prompt="n" * 501),
        "invalid.negative_long",
        "The negative prompt is 501 characters; at most 500 are allowed. Shorten it.",
        "反向提示词有 501 个字符，最多 500 个，请缩短。",
    )
    assert validate(request(negative_prompt="   ")).negative_prompt is None
    assert validate(request(negative_prompt=" blurry ")).negative_prompt == "blurry"


@pytest.mark.parametrize("bad", ["\x00", "\x1b", "\x07", "\x7f", "\x85", "\x0b"])
def test_control_characters_are_refused(bad):
    check_message(
        request(prompt=f"a fox{bad}in the snow"),
        "invalid.control_chars.prompt",
        "The prompt contains control characters. Remove them.",
        "提示词中含有控制字符，请删除。",
    )
    check_message(
        request(negative_prompt=f"blurry{bad}dark"),
        "invalid.control_chars.negative_prompt",
        "The negative prompt contains control characters. Remove them.",
        "反向提示词中含有控制字符，请删除。",
    )


def test_newlines_and_tabs_are_fine():
    text = "line one\nline two\r\n\tindented"
    validated = validate(request(prompt=text, negative_prompt=text))
    assert validated.prompt == text
    assert validated.negative_prompt == text


# --- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "ok"), [(0, False), (1, True), (2, True), (3, True), (4, False)])
def test_edit_image_count(count, ok):
    req = request("wan2.5-i2i-preview", images=(IMAGE,) * count)
    if ok:
        assert validate(req).images == (IMAGE,) * count
    else:
        assert keys(req) == ["invalid.image_count"]


def test_edit_image_count_message():
    check_message(
        request("wan2.5-i2i-preview", images=(IMAGE,) * 4),
        "invalid.image_count",
        "wan2.5-i2i-preview takes 1 to 3 images (got 4).",
        "wan2.5-i2i-preview 需要 1 到 3 张图片（当前 4 张）。",
    )


@pytest.mark.parametrize("model", NEW_T2I + LEGACY_T2I)
def test_text_to_image_models_take_no_images(model):
    check_message(
        request(model, images=(IMAGE,)),
        "invalid.images_unexpected",
        f"{model} makes images from text only; use an edit model to change images.",
        f"{model} 只能根据文字生成图片；修改图片请使用编辑模型。",
    )


# --- several problems, unknown model -----------------------------------------------------------


def test_every_problem_is_reported():
    error = rejected(
        ImageRequest(
            model="wan2.6-t2i",
            prompt="  ",
            negative_prompt="n" * 501 + "\x00",
            size="huge",
            n=9,
            seed=-5,
            images=(IMAGE,),
        )
    )
    assert [problem.key for problem in error.problems] == [
        "invalid.prompt_empty",
        "invalid.negative_long",
        "invalid.control_chars.negative_prompt",
        "invalid.size_format",
        "invalid.n",
        "invalid.seed",
        "invalid.images_unexpected",
    ]
    for lang in ("en", "zh"):
        lines = describe(error, lang, moment=utc_time).split("\n")
        assert lines == [render(problem, lang, moment=utc_time) for problem in error.problems]
    assert "(got 9)" in describe(error, "en", moment=utc_time) and "(got -5)" in describe(
        error, "en", moment=utc_time
    )


def test_long_prompt_with_control_characters_reports_both():
    assert keys(request(prompt="\x00" + "a" * 2000)) == [
        "invalid.prompt_long",
        "invalid.control_chars.prompt",
    ]


@pytest.mark.parametrize("model", ["wan9-t2i", "", "WAN2.6-T2I", "wan2.6-t2i "])
def test_unknown_model(model):
    error = rejected(ImageRequest(model=model, prompt="a fox"))
    assert [problem.key for problem in error.problems] == ["invalid.model"]
    en = describe(error, "en", moment=utc_time)
    assert en.startswith(f"Unknown model `{model}`. Choose one of: wan2.6-t2i, ")
    assert all(name in en for name in MODELS)
    assert describe(error, "zh", moment=utc_time).startswith(
        f"未知模型 `{model}`。可选：wan2.6-t2i, "
    )
    with pytest.raises(InputRejected):
        build_body(ImageRequest(model=model, prompt="a fox"))


def test_validated_request_is_trimmed_and_filled_in():
    validated = validate(
        ImageRequest(model="wan2.6-t2i", prompt="  a fox \n", negative_prompt="", size=None)
    )
    assert validated.prompt == "a fox"
    assert validated.negative_prompt is None
    assert validated.size == "1280*1280"


# --- properties ----------------------------------------------------------------------------------

_sizes = st.none() | st.text(max_size=16) | st.from_regex(r"\A\s?\d{1,5}\s?[*xX×]\s?\d{1,5}\s?\Z")


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(sorted(MODELS)) | st.text(max_size=12),
    prompt=st.text(max_size=60) | st.text(min_size=495, max_size=505),
    negative=st.none() | st.text(max_size=40),
    size=_sizes,
    n=st.integers(-3, 8) | st.booleans(),
    seed=st.none() | st.booleans() | st.integers(-(2**33), 2**33),
    images=st.lists(st.text(max_size=8), max_size=5),
)
def test_validate_only_ever_raises_input_rejected(model, prompt, negative, size, n, seed, images):
    req = ImageRequest(
        model=model,
        prompt=prompt,
        negative_prompt=negative,
        size=size,
        n=n,
        seed=seed,
        images=tuple(images),
    )
    try:
        validated = validate(req)
    except InputRejected as error:
        assert error.problems
        for lang in ("en", "zh"):  # every problem renders (no missing format values)
            rendered = [render(problem, lang, moment=utc_time) for problem in error.problems]
            assert all(rendered) and describe(error, lang, moment=utc_time) == "\n".join(rendered)
        return
    assert validate(validated) == validated  # idempotent
    body = build_body(validated)
    json.dumps(body, ensure_ascii=False)
    assert body["parameters"]["n"] == n and 1 <= n <= 4 and n is not True
    assert validated.prompt == validated.prompt.strip() != ""


# --- request bodies (§Bodies) --------------------------------------------------------------------


def test_body_wan26_matches_the_messages_protocol():
    prompt = "A flower shop with exquisite windows, a beautiful wooden door, and flowers on display"
    body = build_body(
        validate(
            ImageRequest(
                model="wan2.6-t2i",
                prompt=prompt,
                negative_prompt="blurry",
                size="1280*1280",
                n=1,
                seed=12345,
                prompt_extend=True,
                watermark=False,
            )
        )
    )
    assert body == {
        "model": "wan2.6-t2i",
        "input": {"messages": [{"role": "user", "content": [{"text": prompt}]}]},
        "parameters": {
            "prompt_extend": True,
            "watermark": False,
            "n": 1,
            "negative_prompt": "blurry",  # in parameters for this protocol
            "size": "1280*1280",
            "seed": 12345,
        },
    }


def test_body_legacy_matches_the_prompt_protocol():
    body = build_body(
        validate(
            ImageRequest(
                model="wan2.5-t2i-preview",
                prompt="A flower shop…",
                negative_prompt="low resolution",
                size="1280*1280",
                n=1,
                seed=42,
                prompt_extend=True,
                watermark=False,
            )
        )
    )
    assert body == {
        "model": "wan2.5-t2i-preview",
        "input": {"prompt": "A flower shop…", "negative_prompt": "low resolution"},
        "parameters": {
            "size": "1280*1280",
            "n": 1,
            "prompt_extend": True,
            "watermark": False,
            "seed": 42,
        },
    }


@pytest.mark.parametrize("model", LEGACY_T2I)
def test_body_legacy_models_share_the_prompt_protocol(model):
    body = build_body(validate(request(model, negative_prompt="dark", size="1024x1024")))
    assert body == {
        "model": model,
        "input": {"prompt": "a red fox in the snow", "negative_prompt": "dark"},
        "parameters": {"n": 1, "size": "1024*1024"},
    }


def test_body_edit_matches_the_prompt_protocol_with_images():
    prompt = "将图1中的闹钟放置到图2的餐桌的花瓶旁边位置"
    images = (URL_IMAGE, "data:image/png;base64,iVBORw0KGgo...")
    body = build_body(
        validate(
            ImageRequest(
                model="wan2.5-i2i-preview",
                prompt=prompt,
                negative_prompt="低分辨率、模糊、比例失调",
                size="1280*1280",
                n=1,
                seed=12345,
                prompt_extend=True,
                watermark=False,
                images=images,
            )
        )
    )
    assert body == {
        "model": "wan2.5-i2i-preview",
        "input": {
            "prompt": prompt,
            "images": list(images),  # order kept: it defines 图1 / 图2
            "negative_prompt": "低分辨率、模糊、比例失调",
        },
        "parameters": {
            "prompt_extend": True,
            "n": 1,
            "size": "1280*1280",
            "watermark": False,
            "seed": 12345,
        },
    }


@pytest.mark.parametrize(
    ("model", "parameters"),
    [
        ("wan2.6-t2i", {"n": 1, "size": "1280*1280"}),
        ("wan2.2-t2i-flash", {"n": 1, "size": "1024*1024"}),
        ("wan2.5-i2i-preview", {"n": 1}),
    ],
)
def test_minimal_bodies_always_send_n(model, parameters):
    """The API's default n is 4 (billed per image), so n is always sent; nothing unset is."""
    body = build_body(validate(request(model)))
    assert body["parameters"] == parameters
    assert "negative_prompt" not in body["input"]
    assert "negative_prompt" not in body["parameters"]


def test_falsy_options_are_still_sent():
    body = build_body(validate(request(seed=0, prompt_extend=False, watermark=False, n=1)))
    assert body["parameters"]["seed"] == 0
    assert body["parameters"]["prompt_extend"] is False
    assert body["parameters"]["watermark"] is False


def test_wan26_body_has_exactly_one_text_item():
    body = build_body(validate(request("wan2.6-t2i", prompt="line one\nline two", n=3)))
    (message,) = body["input"]["messages"]
    assert message == {"role": "user", "content": [{"text": "line one\nline two"}]}
    assert body["parameters"]["n"] == 3
    assert "prompt" not in body["input"] and "images" not in body["input"]


# --- endpoints (§Endpoints) ----------------------------------------------------------------------

ASYNC_PATHS = {
    "wan2.6-t2i": "/services/aigc/image-generation/generation",
    "wan2.5-i2i-preview": "/services/aigc/image2image/image-synthesis",
    **{model: "/services/aigc/text2image/image-synthesis" for model in LEGACY_T2I},
    "wan2.5-t2i-preview": "/services/aigc/text2image/image-synthesis",
    "wanx2.1-imageedit": "/services/aigc/image2image/image-synthesis",
    "wan2.6-image": "/services/aigc/image-generation/generation",
    **{model: "/services/aigc/video-generation/video-synthesis" for model in I2V + T2V},
}
SYNC_PATHS = {
    "wan2.6-t2i": "/services/aigc/multimodal-generation/generation",
    "wan2.6-image": "/services/aigc/multimodal-generation/generation",
    "wan2.2-t2i-flash": "/services/aigc/text2image/image-synthesis",
    "wan2.2-t2i-plus": "/services/aigc/text2image/image-synthesis",
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_endpoints_match_the_docs(model):
    spec = MODELS[model]
    assert spec.async_path == ASYNC_PATHS[model]
    assert spec.sync_path == SYNC_PATHS.get(model)
    assert (spec.n_min, spec.n_max) == ((1, 1) if model in I2V + T2V else (1, 4))
    assert spec.negative_max == (0 if model in NO_NEGATIVE else NEGATIVE_LIMIT)
    assert spec.prompt_max == PROMPT_LIMIT[model]
