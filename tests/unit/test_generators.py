"""Generators start as ~identity on z; one generator step raises a fixed classifier's CE."""

import pytest
import torch
import torch.nn.functional as F

from generators.networks import create_generator
from generators.samplers import GaussianNoise, SpeckleNoise
from generators.training import generator_step, train_generator_from_scratch
from trainers.data import make_synthetic
from trainers.models import create_model


def test_fresh_generator_outputs_almost_its_input_noise():
    for kind, margin in (("1x1", 0), ("3x3", 1)):
        gen = create_generator(kind, channels=3)
        z = torch.randn(gen.latent_shape(8, 16, 16), generator=torch.Generator().manual_seed(0))
        out = gen(z)
        centre = z[:, :, margin : z.shape[2] - margin, margin : z.shape[3] - margin]
        rel = (out - centre).norm() / centre.norm()
        assert rel < 1e-3, (kind, float(rel))


def _fixed_classifier():
    """A classifier that fits the synthetic templates, so noise moves its CE."""
    torch.manual_seed(0)
    model = create_model("madry_cnn")
    x, y = make_synthetic(train=True, size=192).tensors
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(x[:128]), y[:128]).backward()
        opt.step()
    return model.eval(), x[128:], y[128:]


def test_generator_steps_raise_fixed_classifier_cross_entropy():
    model, x, y = _fixed_classifier()
    before = [p.detach().clone() for p in model.parameters()]
    gen = create_generator("1x1", channels=1)
    opt = torch.optim.Adam(gen.parameters(), lr=0.01)

    def ce_of(generator):
        torch.manual_seed(123)  # the same z before and after
        with torch.no_grad():
            return float(F.cross_entropy(model(generator.perturb(x, epsilon=6.0)), y))

    history = [ce_of(gen)]
    for _ in range(10):
        generator_step(gen, opt, model, x, y, epsilon=6.0)
        history.append(ce_of(gen))
    assert history[1] > history[0], history  # one step already raises it
    assert history[-1] > 1.05 * history[0], history
    for p, q in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, q), "the classifier must stay fixed"
        assert p.requires_grad, "requires_grad must be restored"


def test_train_generator_from_scratch_returns_history():
    model, x, y = _fixed_classifier()
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]  # cycled
    gen, history = train_generator_from_scratch(
        model, batches, kind="3x3", epsilon=6.0, iterations=30, lr=1e-2, seed=1
    )
    assert len(history) == 30
    assert sum(history[-5:]) / 5 > sum(history[:5]) / 5
    assert not gen.training


def test_gaussian_and_speckle_samplers():
    g = torch.Generator().manual_seed(0)
    x = torch.full((512, 1, 8, 8), 0.5)
    noisy = GaussianNoise([0.1])(x, rng=g)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert abs(float((noisy - x).std()) - 0.1) < 0.005
    per_image = GaussianNoise([0.01, 0.2])(x, rng=g)
    stds = (per_image - x).flatten(1).std(dim=1)
    assert ((stds < 0.02) | (stds > 0.15)).all()  # each image got one of the two sigmas
    speckle = SpeckleNoise([0.2])(x, rng=g)
    assert abs(float((speckle - x).std()) - 0.1) < 0.005  # x * c = 0.5 * 0.2
    zeros = torch.zeros(4, 1, 8, 8)
    assert torch.equal(SpeckleNoise([0.6])(zeros, rng=g), zeros)


def _output_and_grads(gen, forward, z):
    gen.zero_grad()
    out = forward(z)
    out.square().sum().backward()
    return out.detach(), [p.grad.clone() for p in gen.parameters()]


def _away_from_init(kind, channels):
    torch.manual_seed(0)
    gen = create_generator(kind, channels=channels).double()
    for p in gen.parameters():  # away from the near-identity init, so every layer matters
        p.data.normal_(0.0, 0.5)
    return gen


@pytest.mark.parametrize("kind", ["1x1", "3x3"])
def test_channel_padding_keeps_the_function_and_the_weight_gradients(kind):
    """The GPU path pads channel widths to a multiple of 8: same noise, same gradients."""
    gen = _away_from_init(kind, 3)
    z = torch.randn(gen.latent_shape(2, 6, 5), dtype=torch.float64)
    results = []
    for align in (1, 8):
        gen.channel_align = align
        results.append(_output_and_grads(gen, gen._pixels_last, z))
    (out1, grads1), (out8, grads8) = results
    assert out1.shape == (2, 3, 6, 5)
    torch.testing.assert_close(out8, out1, rtol=1e-12, atol=1e-12)
    for g8, g1 in zip(grads8, grads1, strict=True):
        assert g8.shape == g1.shape  # gradients land on the real weights only
        torch.testing.assert_close(g8, g1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_cpu_channels_first_path_matches_the_per_pixel_layers(channels):
    """The 1x1 generator's CPU path ([C, pixels] matrices) is the same function with the
    same gradients as the per-pixel (channels-last) layers and the convolutions of ``net``."""
    gen = _away_from_init("1x1", channels)
    z = torch.randn(gen.latent_shape(2, 6, 5), dtype=torch.float64)
    gen.channel_align = 1
    out_cf, grads_cf = _output_and_grads(gen, gen._channels_first, z)
    out_pl, grads_pl = _output_and_grads(gen, gen._pixels_last, z)
    out_net, grads_net = _output_and_grads(gen, gen.net, z)
    assert out_cf.shape == (2, channels, 6, 5)
    for out, grads in ((out_pl, grads_pl), (out_net, grads_net)):
        torch.testing.assert_close(out_cf, out, rtol=1e-12, atol=1e-12)
        for a, b in zip(grads_cf, grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    m = gen.margin
    torch.testing.assert_close(gen(z), z[:, :, m : z.shape[2] - m, m : z.shape[3] - m] + out_cf)
