#!/usr/bin/env bash
# Train PiCIE on COCO-Stuff-27 on top of a frozen DINO ViT-S/8: only a head on the ViT's patch
# tokens trains, under PiCIE's k-means, pseudo-labels, invariance/equivariance losses and
# evaluation. Every other setting is sh_files/train_picie.sh's (it runs it, --preset paper:
# K_train = K_test = 27, 10 epochs, batch sizes 256 / 128 / 128, the paper's transforms, and
# --pretrain, which here fetches Meta's dino_deitsmall8_300ep_pretrain.pth, the 300-epoch file
# STEGO and HP use, into torch's hub cache). What changes, and why:
#   --arch dino_vits8 --freeze_backbone  the backbone of STEGO / HP (and CAUSE's ViT-S/8 runs), kept as
#                                      DINO trained it; only the head learns, so the comparison with
#                                      those methods is about the objective, not the features
#   --vit_head nonlinear --in_dim 70   STEGO's COCO-Stuff head: 1x1 conv + (1x1 conv, ReLU, 1x1 conv)
#                                      branch to 70 channels
#   --res1 224 --res2 448              training views at 224 px as STEGO and HP (a 28x28 grid of 8-px
#                                      patches; 320 px would be 40x40 = 2x the tokens and ~4x the
#                                      attention cost), cut from a 448 px base image (2 x res1, as
#                                      the paper's 320 / 640)
#   --res 320 (the preset's)           evaluation crop as STEGO / HP / PiCIE evaluate (40x40 patches,
#                                      logits upsampled to the labels)
#   LR 5e-4                            STEGO's Adam rate for its head: a small head on fixed features
#                                      takes a larger step than the paper's 1e-4 for a whole ResNet
# Frozen features cost no backward through the backbone (docs/vit_backbones.md measures it), so the
# paper's batch sizes fit where PiCIE's ResNet-18 FPN fits.
#   nohup ./sh_files/train_picie_dino.sh > logs/picie_dino_train.out &
#   PRETRAIN="--pretrain_path dino_deitsmall8_300ep_pretrain.pth" ./sh_files/train_picie_dino.sh  # offline
#   DRY_RUN=1 ./sh_files/train_picie_dino.sh   # print the command
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=sh_files/script_env.sh
source sh_files/script_env.sh
check_script_env sh_files/train_picie_dino.sh ${TRAIN_SCRIPT_VARS}
export RUN_NAME=${RUN_NAME:-picie_dino_vits8}
export LR=${LR:-5e-4}
exec ./sh_files/train_picie.sh --arch dino_vits8 --freeze_backbone --vit_head nonlinear --in_dim 70 \
  --res1 224 --res2 448 "$@"
