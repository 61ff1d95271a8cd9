"""Image inputs of multimodal requests, checked as the input layer checks every number
(:mod:`kvopt.build` re-exports these): how many images every request carries and their size,
and the prompt lengths with the images' tokens (each model's own rule,
:mod:`kvopt.physics.vision`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kvopt import limits
from kvopt.errors import InputError

if TYPE_CHECKING:
    from kvopt.physics.vision import ImageInput
    from kvopt.serving.lengths import LengthDist


def images(model: str | None, images_per_request: int | None = None,
           image_size: str | Sequence[int] | None = None) -> ImageInput | None:
    """The images of every request (None: text only): ``images_per_request`` images of
    ``image_size`` (``"WxH"`` pixels, or ``(W, H)``). A text-only model given images, or a
    size without images, is an error."""
    from kvopt.physics.vision import ImageInput

    if images_per_request is None or images_per_request == 0:
        if image_size is not None and images_per_request is None:
            raise InputError("image_size", image_size, "is the size of the request's images",
                             "give images_per_request too (--images-per-request N)")
        return None
    n = limits.IMAGES.check("images_per_request", images_per_request)
    if image_size is None:
        raise InputError("images_per_request", n, "needs the image size",
                         "give image_size as WxH pixels (--image-size 1024x768)")
    if isinstance(image_size, str):
        parts = image_size.lower().replace(" ", "").split("x")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise InputError("image_size", image_size, "use WxH in pixels",
                             "e.g. --image-size 1024x768")
        size = [int(p) for p in parts]
    else:
        size = list(image_size)
        if len(size) != 2:
            raise InputError("image_size", image_size, "use (width, height) in pixels")
    w, h = (limits.IMAGE_PX.check("image_size", v) for v in size)
    if not isinstance(model, str) or not model.strip():
        raise InputError("model", model, "must be a catalog name or a config.json path")
    from kvopt.catalog.models import load_model
    from kvopt.physics.vision import image_work

    image_work(load_model(model), w, h)  # a text-only model, or a refused size: an error now
    return ImageInput(count=n, width=w, height=h)


def with_images(model: str | None, prompt: LengthDist, imgs: ImageInput | None
                ) -> LengthDist:
    """The prompt-length distribution with the tokens the images add to every prompt."""
    if imgs is None or model is None:
        return prompt
    from kvopt.catalog.models import load_model
    from kvopt.physics.vision import image_prompt_tokens
    from kvopt.serving.lengths import LengthDist

    k = image_prompt_tokens(load_model(model), imgs.count, imgs.width, imgs.height)
    return LengthDist(kind=prompt.kind, values=prompt.values + k, probs=prompt.probs,
                      label=f"{prompt.label}+{k} image tokens")


def prompt_with_images(model: str | None, prompt: LengthDist, images_per_request: int | None,
                       image_size: str | Sequence[int] | None
                       ) -> tuple[LengthDist, ImageInput | None]:
    """(:func:`with_images` of the checked :func:`images`, the images)."""
    imgs = images(model, images_per_request, image_size)
    return with_images(model, prompt, imgs), imgs


def refuse_images(imgs: ImageInput | None, what: str, fix: str) -> None:
    """An input error when a question kvopt cannot model for images is asked with them."""
    if imgs is not None:
        raise InputError("images_per_request", imgs.count, f"{what} of multimodal requests "
                         "is not modeled (where the encoder runs)", fix)
