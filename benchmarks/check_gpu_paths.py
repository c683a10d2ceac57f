"""The generator step's fast paths compute what the plain ones do (on a GPU, or on CPU).

    python3 benchmarks/check_gpu_paths.py                                     # on a GPU
    python3 benchmarks/check_gpu_paths.py --device cpu --images 4 --size 160  # bf16 scale

ResNet-50 with random batch-norm statistics, channels_last on CUDA: the folded eval view
(batch norm folded; on CUDA conv-bias-ReLU and the residual sum fused in cuDNN) against the
classifier itself in eval mode, output and input gradient, in fp32 (TF32 off) and under
bf16 autocast; for scale, plain bf16 and the view in bf16 against plain fp32; how many fused
calls cuDNN accepted; and the generators with their channel widths padded to 8 against
unpadded. Prints relative errors.
"""

import argparse

import torch

from generators.folding import FoldedConvBatchNorm, eval_view
from generators.networks import create_generator
from generators.training import frozen
from trainers.models import create_model


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(args.device)
    layout = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    torch.manual_seed(0)
    m = create_model("resnet50", num_classes=1000).to(dev).to(memory_format=layout)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.3, 0.3)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    x0 = torch.rand(args.images, 3, args.size, args.size, device=dev)
    x0 = x0.contiguous(memory_format=layout)
    view = eval_view(m)

    def run(model: torch.nn.Module, amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
        x = x0.clone().requires_grad_(True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x).float()
        (g,) = torch.autograd.grad(out.square().sum(), x)
        return out.detach(), g

    with frozen(m):
        results = {(name, amp): run(model, amp) for name, model in (("plain", m), ("view", view))
                   for amp in (False, True)}  # fmt: skip
    for a, b in [
        (("view", False), ("plain", False)),
        (("view", True), ("plain", True)),
        (("plain", True), ("plain", False)),
        (("view", True), ("plain", False)),
    ]:
        (oa, ga), (ob, gb) = results[a], results[b]
        label = f"{a[0]} {'bf16' if a[1] else 'fp32'} vs {b[0]} {'bf16' if b[1] else 'fp32'}"
        print(f"{label}: output rel err {rel(oa, ob):.2e}, input-grad rel err {rel(ga, gb):.2e}")
    if dev.type == "cuda":  # elsewhere the fused modules run their plain sequence
        fused = [f for f in view.modules() if isinstance(f, FoldedConvBatchNorm) and f.relu]
        print(f"fused modules still on cuDNN: {sum(f.fused for f in fused)} / {len(fused)}")
    for kind in ("1x1", "3x3"):
        gen = create_generator(kind, channels=3).to(dev)
        for param in gen.parameters():
            param.data.normal_(0, 0.3)
        z = torch.randn(gen.latent_shape(4, args.size, args.size), device=dev)
        outs = []
        for align in (1, 8):  # the channels-last path, which pads (the CPU 1x1 path does not)
            gen.channel_align = align
            outs.append(gen._pixels_last(z).detach())
        print(f"generator {kind}: padded vs plain rel err {rel(outs[1], outs[0]):.2e}")


if __name__ == "__main__":
    main()
