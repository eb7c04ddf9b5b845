"""Train entry point for `accelerate launch [--config_file accelerate_configs/X.yaml] scripts/train.py --recipe R ...`
(or torchrun); the same options as `ai2text train`, including the old system's flags (`--config --num_epochs
--batch_size --learning_rate --checkpoint_dir --resume --pretrained_model --d_model --multi_gpu`)."""

import sys

from ai2text_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
