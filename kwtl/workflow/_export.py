"""``export_bioimageio``: a kwtl model as a bioimage.io model package (format 0.5).

Fiji (deepImageJ), QuPath and ilastik run models from bioimage.io packages: a zip holding
``rdf.yaml`` (the description), the weights, test tensors, a cover and documentation. The
package written here holds the same network twice: ``pytorch_state_dict`` weights with the
self-contained architecture file :mod:`kwtl.workflow._bioimageio_fcrn` (``kwtl_fcrn.py``),
and TorchScript weights (QuPath runs only TorchScript). Its description needs
``bioimageio.spec`` (the ``bioimageio`` extra); nothing else of bioimage.io is needed to
write it.
"""

import getpass
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .._version import __version__
from ..utils import as_uint8_image
from ._model import load_model, model_source, recorded_training
from ._step import say

__all__ = ["export_bioimageio", "EXPORT_FORMATS"]

#: Formats of :func:`export_bioimageio` (``kwtl export --format``).
EXPORT_FORMATS = ("bioimageio",)

#: The paper whose method trained the model (the package's citation).
PAPER = (
    "Dawoud, Y., Bouazizi, A., Ernst, K., Carneiro, G., Belagiannis, V.: Knowing What "
    "to Label for Few Shot Microscopy Image Cell Segmentation. WACV 2023."
)
PAPER_URL = "https://github.com/Yussef93/KnowWhatToLabel"
#: Smallest image side the network takes (the 1/8-scale layer needs 2x2 pixels).
MIN_SIZE = 16
_ARCH_FILE = "kwtl_fcrn.py"

_DOC = """\
# {name}

{description}

Made with kwtl {version} ("knowing what to label"), which implements Dawoud et al.,
*Knowing What to Label for Few Shot Microscopy Image Cell Segmentation* (WACV 2023).
The network is the paper's FCRN (encoder-decoder, width {width}); its output is the
foreground (cell) probability of every pixel; pixels at or above {threshold} are cells.

## Input

One grey 8-bit image (axes batch, channel, y, x), at least {min_size}x{min_size} pixels,
any size (the network pads to a multiple of 8 by reflection and crops back, as kwtl does).
The preprocessing maps 0..255 to [-1, 1] (`x / 127.5 - 1`), kwtl's own rule.

kwtl reads other images as follows before that; do the same before giving them to this
model, or the numbers differ from `kwtl predict`'s:

* colour: grey by ITU-R 601 luma (`0.299 R + 0.587 G + 0.114 B`, rounded);
* 16-bit or float data that are not 8-bit values: the 1st and 99.8th percentiles are mapped
  to 0 and 255 (rounded, clipped); Fiji's *Image > Type > 8-bit* maps the display range
  instead, which differs;
* float images in [0, 1]: times 255, rounded.

## BatchNorm

BatchNorm statistics: {bn_text}

## Differences from `kwtl predict`

The test output in this package was computed by kwtl (float32) and the package reproduces
it to float precision when it is given the whole image. What can differ:

* tiling: a tool that cuts the image into tiles (QuPath, deepImageJ on large images)
  gives each tile {tile_text};
* precision: on a GPU, or a CPU with native bfloat16, `kwtl predict` computes in bfloat16
  by default (the model's `precision="auto"`); this package computes in float32.

## Use it

* Fiji: install deepImageJ, *Plugins > DeepImageJ > DeepImageJ Install Model*, choose this
  zip, then *DeepImageJ Run* on an 8-bit image; threshold the output at {threshold}.
* QuPath: with the deep-java-library / bioimage.io extension, open the zip (TorchScript
  weights); threshold the output at {threshold}.
* ilastik: *Neural Network Classification (Local)*, load this zip (PyTorch weights).
* Python: `bioimageio.core.predict(model="{zip_name}", inputs=image[None, None])`.

## Training

{training_text}

## Citation

{paper}
"""


def _require_spec():
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise ImportError(
            "kwtl export --format bioimageio needs bioimageio.spec: pip install 'kwtl[bioimageio]'"
        ) from None


def _reference_network(segmenter):
    """The package's network (:class:`KwtlFCRN`) with ``segmenter``'s weights, in eval mode."""
    from torch import nn

    from ._bioimageio_fcrn import KwtlFCRN

    module = segmenter.module_
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    eps = {float(bn.eps) for bn in bns}
    if len(eps) != 1:
        raise ValueError(
            f"the model's BatchNorm layers have different eps {sorted(eps)}; "
            "the package's network has one"
        )
    affine = bool(bns[0].affine)
    kwargs = {
        "width": int(module.conv1[0].out_channels),
        "affine": affine,
        "bn_mode": str(segmenter.bn_mode),
        "eps": eps.pop(),
    }
    net = KwtlFCRN(**kwargs)
    state = {
        k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
        for k, v in module.state_dict().items()
    }
    net.load_state_dict(state, strict=True)
    return net.eval(), kwargs, state


def _cover(image, proba, threshold, path):
    """A 2:1 cover: the test image beside its probability map, cell outlines in the image."""
    from PIL import Image
    from skimage.segmentation import find_boundaries

    rgb = np.repeat(image[..., None], 3, axis=2)
    rgb[find_boundaries(proba >= threshold, mode="inner")] = (255, 60, 0)
    prob = np.repeat(np.clip(np.rint(proba * 255), 0, 255).astype(np.uint8)[..., None], 3, 2)
    side = 256
    tiles = [
        Image.fromarray(a).resize((side, side), Image.Resampling.BILINEAR) for a in (rgb, prob)
    ]
    cover = Image.new("RGB", (2 * side, side))
    for k, tile in enumerate(tiles):
        cover.paste(tile, (k * side, 0))
    cover.save(path)


def _training_text(record):
    if not record:
        return "No training record (a model file without a kwtl sidecar)."
    step = record.get("step", "?")
    lines = [f"Last step: `{step}`."]
    start = (record.get("start") or {}).get("name")
    if start:
        lines.append(f"Started from `{Path(str(start)).name}`.")
    sources = record.get("sources")
    if isinstance(sources, list):
        lines.append(f"Fine-tuned on {len(sources)} annotated item(s).")
    params = record.get("parameters")
    if isinstance(params, dict):
        lines.append("Parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())))
    return " ".join(lines)


def export_bioimageio(
    model,
    out,
    image,
    *,
    name=None,
    description=None,
    authors=None,
    license="MIT",
    channel=None,
    overwrite=False,
    verbose=False,
):
    """Write a kwtl model as a bioimage.io model package (a zip, format 0.5).

    The package holds ``pytorch_state_dict`` weights with a self-contained architecture
    file and TorchScript weights of the same network, an 8-bit grey input whose
    preprocessing is kwtl's intensity rule (``x / 127.5 - 1``), a float32 probability output
    of the same size, test tensors computed by kwtl from ``image``, a cover picture, a
    README (documentation: intensity rules, BatchNorm, what differs from ``kwtl predict``,
    how to run it in Fiji, QuPath and ilastik), authors, the paper as citation and a licence.

    The network normalises with each image's own BatchNorm statistics when the model's
    ``bn_mode`` is ``"batch"`` (kwtl's default; ``kwtl predict`` treats one image at a time)
    and with the running averages when it is ``"running"``. Computation is float32.

    Parameters
    ----------
    model : str, path-like or FCRNSegmenter
        A model file (``kwtl finetune`` / ``kwtl pretrain``) or a pretrained name.
    out : str or path-like
        The package to write, e.g. ``model.zip``; an existing file is refused unless
        ``overwrite``.
    image : str, path-like or 2-D array
        A typical image (at least 16x16): the package's test input and cover. It is
        converted to 8-bit grey by kwtl's rules (:func:`kwtl.utils.check_images`) first.
    name : str or None, default=None
        Model name; None uses the model file's name.
    description : str or None, default=None
    authors : list of str or None, default=None
        Author names; None uses the user name of this account.
    license : str, default="MIT"
        SPDX licence identifier of the weights.
    channel : int or None, default=None
        Channel of a multi-channel ``image`` file.
    overwrite : bool, default=False

    Returns
    -------
    path : pathlib.Path
        ``out``.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from kwtl.models import FCRNSegmenter
    >>> seg = FCRNSegmenter(module__width=4, patch_size=32, precision="fp32").initialize()
    >>> image = np.random.default_rng(0).integers(0, 256, (40, 48), dtype=np.uint8)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = export_bioimageio(seg, pathlib.Path(tmp) / "model.zip", image, verbose=True)
    ...     path.name
    wrote the bioimage.io model package .../model.zip (pytorch_state_dict + torchscript, ...)
    'model.zip'
    """
    _require_spec()
    import torch

    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise ValueError(f"out={out}: a bioimage.io package is a .zip file; name it e.g. model.zip")
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"{out} exists; choose another out, or pass overwrite=True to replace it"
        )
    segmenter = (
        load_model(model, device="cpu", precision="fp32")
        if not hasattr(model, "module_")
        else _fp32_copy(model)
    )
    if isinstance(image, (str, Path)):
        from ..datasets import read_image

        pixels = as_uint8_image(read_image(image, channel=channel), name=str(image))
    else:
        pixels = as_uint8_image(image, name="image")
    if min(pixels.shape) < MIN_SIZE:
        raise ValueError(
            f"the test image is {pixels.shape[0]}x{pixels.shape[1]}; the "
            f"package needs at least {MIN_SIZE}x{MIN_SIZE} pixels"
        )
    expected = segmenter.predict_proba([pixels])[0].astype(np.float32)
    net, kwargs, state = _reference_network(segmenter)
    x = torch.from_numpy(pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0))
    with torch.no_grad():
        mine = net(x[None, None])[0, 0].numpy()
        scripted = torch.jit.script(net)
        from_script = scripted(x[None, None])[0, 0].numpy()
    for what, values in (("the package's network", mine), ("its TorchScript", from_script)):
        gap = float(np.max(np.abs(values - expected)))
        # bioimage.io's default tolerance; float32 noise measured on real images: ~1e-4
        if gap > 1e-3:  # a bug, never a user error: refuse to write a package that lies
            raise RuntimeError(f"{what} differs from kwtl's prediction by {gap:.2g}")

    record = (
        recorded_training(model) if isinstance(model, (str, Path)) and Path(model).is_file() else {}
    )
    source = model_source(model) if not hasattr(model, "module_") else {"name": "<in-memory model>"}
    default_name = Path(source["name"]).stem if isinstance(model, (str, Path)) else "kwtl model"
    name = name or f"kwtl FCRN {default_name}"
    description = description or (
        "Foreground (cell) probability of a grey microscopy image; "
        "an FCRN fine-tuned with kwtl on a few annotated patches."
    )
    authors = list(authors) if authors else [getpass.getuser() or "kwtl user"]
    with tempfile.TemporaryDirectory(prefix="kwtl-bioimageio-") as tmp:
        tmp = Path(tmp)
        shutil.copyfile(Path(__file__).with_name("_bioimageio_fcrn.py"), tmp / _ARCH_FILE)
        torch.save(state, tmp / "weights.pt")
        scripted.save(str(tmp / "weights_torchscript.pt"))
        np.save(tmp / "test_input.npy", pixels[None, None])
        np.save(tmp / "test_output.npy", expected[None, None])
        _cover(pixels, expected, float(segmenter.threshold), tmp / "cover.png")
        bn_text = (
            "each image's own (the model's `bn_mode=\"batch\"`, kwtl's default): the "
            "output of a pixel depends a little on the whole image"
            if kwargs["bn_mode"] == "batch"
            else "the running averages learnt in training (the model's "
            '`bn_mode="running"`): each pixel depends only on its neighbourhood'
        )
        tile_text = (
            "its own BatchNorm statistics, so tiled and whole-image outputs "
            "differ a little; give the whole image where the tool allows"
            if kwargs["bn_mode"] == "batch"
            else "the same statistics; outputs differ only near tile borders, where the "
            "network sees less context"
        )
        (tmp / "README.md").write_text(
            _DOC.format(
                name=name,
                description=description,
                version=__version__,
                width=kwargs["width"],
                threshold=float(segmenter.threshold),
                min_size=MIN_SIZE,
                bn_text=bn_text,
                tile_text=tile_text,
                zip_name=out.name,
                training_text=_training_text(record),
                paper=PAPER,
            )
        )
        descr = _describe(
            tmp,
            name=name,
            description=description,
            authors=authors,
            license=license,
            kwargs=kwargs,
            segmenter=segmenter,
            source=source,
            shape=pixels.shape,
        )
        from bioimageio.spec import save_bioimageio_package

        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        save_bioimageio_package(descr, output_path=partial)
        partial.replace(out)
    say(
        verbose,
        f"wrote the bioimage.io model package {out} (pytorch_state_dict + "
        f"torchscript, bn_mode={kwargs['bn_mode']})",
    )
    return out


def _fp32_copy(segmenter):
    import copy

    segmenter.check_is_fitted()
    copied = copy.deepcopy(segmenter)
    copied.set_params(precision="fp32", device="cpu")
    copied.module_.to("cpu")
    return copied


def _describe(folder, *, name, description, authors, license, kwargs, segmenter, source, shape):
    """The bioimage.io model description of the files in ``folder`` (validated on build)."""
    import torch
    from bioimageio.spec.model import v0_5 as bio

    def axes(kind):
        space = (
            (
                lambda a: bio.SpaceInputAxis(
                    id=bio.AxisId(a), size=bio.ParameterizedSize(min=MIN_SIZE, step=1)
                )
            )
            if kind == "input"
            else (
                lambda a: bio.SpaceOutputAxis(
                    id=bio.AxisId(a),
                    size=bio.SizeReference(tensor_id=bio.TensorId("raw"), axis_id=bio.AxisId(a)),
                )
            )
        )
        channel = "grey" if kind == "input" else "foreground"
        return [
            bio.BatchAxis(),
            bio.ChannelAxis(channel_names=[bio.Identifier(channel)]),
            space("y"),
            space("x"),
        ]

    inputs = [
        bio.InputTensorDescr(
            id=bio.TensorId("raw"),
            axes=axes("input"),
            description="grey 8-bit image (kwtl converts others as the documentation says)",
            test_tensor=bio.FileDescr(source=folder / "test_input.npy"),
            data=bio.IntervalOrRatioDataDescr(type="uint8"),
            preprocessing=[
                bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32")),
                bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=1.0 / 127.5, offset=-1.0)),
                # the network takes float32 (else the spec appends a cast back to uint8)
                bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32")),
            ],
        )
    ]
    outputs = [
        bio.OutputTensorDescr(
            id=bio.TensorId("probability"),
            axes=axes("output"),
            description=f"foreground probability; cells at >= {float(segmenter.threshold)}",
            test_tensor=bio.FileDescr(source=folder / "test_output.npy"),
            data=bio.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        )
    ]
    torch_version = bio.Version(torch.__version__.split("+")[0])
    weights = bio.WeightsDescr(
        pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
            source=folder / "weights.pt",
            architecture=bio.ArchitectureFromFileDescr(
                source=folder / _ARCH_FILE, callable=bio.Identifier("KwtlFCRN"), kwargs=kwargs
            ),
            pytorch_version=torch_version,
        ),
        torchscript=bio.TorchscriptWeightsDescr(
            source=folder / "weights_torchscript.pt",
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
        ),
    )
    return bio.ModelDescr(
        name=name,
        description=description,
        authors=[bio.Author(name=a) for a in authors],
        cite=[bio.CiteEntry(text=PAPER, url=bio.HttpUrl(PAPER_URL))],
        license=bio.LicenseId(license),
        documentation=bio.FileDescr(source=folder / "README.md"),
        covers=[bio.FileDescr(source=folder / "cover.png")],
        tags=["segmentation", "cells", "2d", "fcrn", "few-shot", "kwtl", "pytorch"],
        inputs=inputs,
        outputs=outputs,
        weights=weights,
        config=bio.Config(
            kwtl={
                "version": __version__,
                "threshold": float(segmenter.threshold),
                "bn_mode": kwargs["bn_mode"],
                "model": json.loads(json.dumps(source, default=str)),
                "test_image_shape": list(shape),
            }
        ),
    )
