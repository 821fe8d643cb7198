"""Pretrain (phase 1) or fine-tune (phase 2) a vision model; see ``python train.py --help``.

    python train.py --model resnet --dataset synthetic --epochs 1 --max_steps_per_epoch 20 --device cpu
    torchrun --nproc_per_node 2 train.py --model vit_tiny --phase 2 --dataset cifar100
"""

import sys

from lvmharness.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
