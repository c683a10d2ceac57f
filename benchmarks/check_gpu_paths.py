"""On a GPU: the generator step's fast paths compute what the plain ones do.

    python3 benchmarks/check_gpu_paths.py

ResNet-50 with random batch-norm statistics, 16 images at 224 px, channels_last: the folded
eval view (batch norm folded, conv-bias-ReLU and the residual sum fused in cuDNN) against the
classifier itself in eval mode, output and input gradient, in fp32 (TF32 off) and under bf16
autocast; how many fused calls cuDNN accepted; and the generators with their channel widths
padded to 8 against unpadded. Prints relative errors (for scale: on CPU, plain bf16 is
~0.3 away from fp32 on this input gradient; see docs/PERFORMANCE.md).
"""

import torch

from generators.folding import FoldedConvBatchNorm, eval_view
from generators.networks import create_generator
from generators.training import frozen
from trainers.models import create_model

torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
dev = torch.device("cuda")
torch.manual_seed(0)
m = create_model("resnet50", num_classes=1000).to(dev).to(memory_format=torch.channels_last)
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.uniform_(-0.3, 0.3)
        mod.running_var.uniform_(0.5, 2.0)
        mod.weight.data.uniform_(0.5, 1.5)
        mod.bias.data.uniform_(-0.2, 0.2)
x0 = torch.rand(16, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)
view = eval_view(m)


def run(model, amp):
    x = x0.clone().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        out = model(x).float()
    (g,) = torch.autograd.grad(out.square().sum(), x)
    return out.detach(), g


def rel(a, b):
    return float((a - b).norm() / b.norm())


with frozen(m):
    for amp in (False, True):
        (o1, g1), (o2, g2) = run(m, amp), run(view, amp)
        print(f"amp={amp}: output rel err {rel(o2, o1):.2e}, input-grad rel err {rel(g2, g1):.2e}")
fused = [f for f in view.modules() if isinstance(f, FoldedConvBatchNorm) and f.relu]
print(f"fused modules still on cuDNN: {sum(f.fused for f in fused)} / {len(fused)}")
for kind in ("1x1", "3x3"):
    gen = create_generator(kind, channels=3).to(dev)
    for p in gen.parameters():
        p.data.normal_(0, 0.3)
    z = torch.randn(gen.latent_shape(4, 224, 224), device=dev)
    outs = []
    for align in (1, 8):
        gen.channel_align = align
        outs.append(gen(z).detach())
    print(f"generator {kind}: padded vs plain rel err {rel(outs[1], outs[0]):.2e}")
