"""kwtl export --format bioimageio: the package validates, runs its test tensors in
bioimageio.core, and predicts what kwtl predicts."""

import zipfile

import numpy as np
import pytest
import torch

from kwtl.cli import main
from kwtl.datasets import read_image
from kwtl.models import FCRNSegmenter, load_pretrained
from kwtl.workflow import export_bioimageio, load_model, predict, save_model
from kwtl.workflow._bioimageio_fcrn import KwtlFCRN

pytest.importorskip("bioimageio.core")  # in the tests extra: present wherever tests run


def _tiny(bn_mode="batch", affine=True):
    seg = FCRNSegmenter(
        module__width=4,
        patch_size=32,
        precision="fp32",
        bn_mode=bn_mode,
        module__init="default",
        random_state=0,
    ).initialize()
    if affine:
        seg.to_affine()
        with torch.no_grad():  # BatchNorm parameters and statistics away from their defaults
            gen = torch.Generator().manual_seed(0)
            for bn in (m for m in seg.module_.modules() if isinstance(m, torch.nn.BatchNorm2d)):
                bn.weight.copy_(0.5 + torch.rand(bn.num_features, generator=gen))
                bn.bias.copy_(torch.rand(bn.num_features, generator=gen) - 0.5)
                bn.running_mean.copy_(torch.rand(bn.num_features, generator=gen) - 0.5)
                bn.running_var.copy_(0.5 + torch.rand(bn.num_features, generator=gen))
    return seg


def _as_input(image):
    """kwtl's intensity rule for uint8, written out: x / 127.5 - 1 (float32)."""
    return torch.from_numpy(image.astype(np.float32) / np.float32(127.5) - 1)[None, None]


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
@pytest.mark.parametrize("shape", [(40, 48), (37, 53), (16, 16)])
def test_package_network_equals_kwtl_predict_proba(bn_mode, shape):
    seg = _tiny(bn_mode)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2)]
    net = KwtlFCRN(width=4, affine=True, bn_mode=bn_mode).eval()
    net.load_state_dict(seg.module_.state_dict())
    scripted = torch.jit.script(net)
    with torch.no_grad():  # a batch of two: each image gets its own statistics
        both = net(torch.cat([_as_input(im) for im in images]))[:, 0].numpy()
        both_scripted = scripted(torch.cat([_as_input(im) for im in images]))[:, 0].numpy()
    for k, image in enumerate(images):
        expected = seg.predict_proba([image])[0]  # kwtl predict: one image at a time
        np.testing.assert_allclose(both[k], expected, atol=2e-5, rtol=0)
        np.testing.assert_allclose(both_scripted[k], expected, atol=2e-5, rtol=0)


def test_batch_statistics_are_the_images_own_mean_and_biased_variance():
    # hand computation of one BatchNorm layer in the package's network
    from kwtl.workflow._bioimageio_fcrn import ImageBatchNorm2d

    bn = ImageBatchNorm2d(1, affine=True, eps=0.0).eval()
    with torch.no_grad():
        bn.weight.fill_(2.0)
        bn.bias.fill_(1.0)
    x = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]], [[[0.0, 0.0], [0.0, 4.0]]]])
    out = bn(x).detach().numpy()
    # image 1: mean 4, variance (9+1+1+9)/4 = 5; image 2: mean 1, variance (1+1+1+9)/4 = 3
    np.testing.assert_allclose(
        out[0, 0], 2 * (np.array([[1, 3], [5, 7]]) - 4) / np.sqrt(5) + 1, rtol=1e-6
    )
    np.testing.assert_allclose(
        out[1, 0], 2 * (np.array([[0, 0], [0, 4]]) - 1) / np.sqrt(3) + 1, rtol=1e-6
    )


def test_export_validates_and_passes_bioimageio_core_tests(tmp_path):
    from bioimageio.core import test_model
    from bioimageio.spec import load_model_description

    seg = _tiny("batch")
    model_file = tmp_path / "tuned.kwtl"
    save_model(seg, model_file)
    image = np.random.default_rng(2).integers(0, 256, (40, 56), dtype=np.uint8)
    out = export_bioimageio(model_file, tmp_path / "model.zip", image, authors=["A. Lab"])
    names = set(zipfile.ZipFile(out).namelist())
    assert {
        "rdf.yaml",
        "kwtl_fcrn.py",
        "weights.pt",
        "weights_torchscript.pt",
        "test_input.npy",
        "test_output.npy",
        "cover.png",
        "README.md",
    } <= names
    descr = load_model_description(out, perform_io_checks=True)
    assert descr.validation_summary.status == "valid-format"
    assert sorted(descr.weights.available_formats) == ["pytorch_state_dict", "torchscript"]
    assert descr.format_version.startswith("0.5")
    assert descr.authors[0].name == "A. Lab" and descr.cite[0].text.startswith("Dawoud")
    # the test output is kwtl's own prediction of the test input
    with zipfile.ZipFile(out) as z:
        z.extractall(tmp_path / "unpacked")
    test_in = np.load(tmp_path / "unpacked" / "test_input.npy")
    test_out = np.load(tmp_path / "unpacked" / "test_output.npy")
    assert test_in.dtype == np.uint8 and test_in.shape == (1, 1, 40, 56)
    np.testing.assert_array_equal(test_in[0, 0], image)
    np.testing.assert_allclose(
        test_out[0, 0],
        load_model(model_file).set_params(precision="fp32").predict_proba([image])[0],
        atol=1e-6,
    )
    summary = test_model(out)  # both weight formats, test tensors and sizes, offline
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed


def test_export_refuses_bad_input(tmp_path):
    seg = _tiny()
    with pytest.raises(ValueError, match="at least 16x16"):
        export_bioimageio(seg, tmp_path / "m.zip", np.zeros((8, 40), np.uint8))
    with pytest.raises(ValueError, match=r"\.zip"):
        export_bioimageio(seg, tmp_path / "m.tar", np.zeros((32, 32), np.uint8))
    (tmp_path / "taken.zip").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_bioimageio(seg, tmp_path / "taken.zip", np.zeros((32, 32), np.uint8))
    assert (tmp_path / "taken.zip").read_bytes() == b"mine"


def test_cli_export(tmp_path, capsys):
    seg = _tiny("running")
    save_model(seg, tmp_path / "m.kwtl")
    from kwtl.datasets import write_image

    write_image(
        tmp_path / "sample.png", np.random.default_rng(3).integers(0, 256, (32, 40), dtype=np.uint8)
    )
    args = [
        "export",
        str(tmp_path / "m.kwtl"),
        "--format",
        "bioimageio",
        "--image",
        str(tmp_path / "sample.png"),
        "--out",
        str(tmp_path / "m.zip"),
        "--author",
        "B",
    ]
    assert main(args) == 0
    assert (tmp_path / "m.zip").is_file()
    assert main(args) == 2  # exists: refused without --force
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


@pytest.mark.integration
def test_package_predicts_what_kwtl_predict_writes_on_a_real_image(shared_data, tmp_path):
    from bioimageio.core import predict as bio_predict
    from bioimageio.core import test_model

    weights = shared_data.parent / "weights"
    if not (weights / "authors_plft_EM.pth").is_file():
        pytest.skip("the authors' weights are not in ../shared/weights")
    seg = load_pretrained("authors:EM", source=weights, precision="fp32")
    model_file = tmp_path / "em.kwtl"
    save_model(seg, model_file)
    files = sorted((shared_data / "EM" / "images").iterdir())
    sample = read_image(files[0])[:200, :256]
    package = export_bioimageio(model_file, tmp_path / "em.zip", sample)
    assert test_model(package).status == "passed"

    # a whole real image of another size (not a multiple of 8 once cropped)
    image = read_image(files[1])[:517, :701]
    (tmp_path / "in").mkdir()
    from kwtl.datasets import write_image

    write_image(tmp_path / "in" / "em1.png", image)
    predict(
        tmp_path / "in",
        load_model(model_file, precision="fp32"),
        tmp_path / "kwtl",
        probabilities=True,
        overlay=False,
        progress=False,
    )
    import tifffile
    from PIL import Image

    from_kwtl = (
        tifffile.imread(tmp_path / "kwtl" / "probabilities" / "em1_prob.tif").astype(np.float64)
        / 65535
    )
    kwtl_mask = np.asarray(Image.open(tmp_path / "kwtl" / "masks" / "em1.png")) > 0
    sample_out = bio_predict(model=package, inputs=image[None, None])
    proba = np.asarray(next(iter(sample_out.members.values())).data)[0, 0]
    assert proba.shape == image.shape
    # float32 noise of a deep network (different kernels, summation orders): measured 1.2e-4
    # at most on this image; kwtl's probability file adds its 16-bit step (1/65535)
    np.testing.assert_allclose(proba, from_kwtl, atol=1e-3, rtol=0)
    assert np.mean(np.abs(proba - from_kwtl)) < 2e-5
    differ = (proba >= 0.5) != kwtl_mask
    assert not np.any(differ & (np.abs(proba - 0.5) > 1e-3))
    assert differ.sum() <= 10
