#!/usr/bin/env bash
set -u
cd "$(dirname "$0")/../.."
# DDP on 2 GPUs vs 1 GPU: rank sync, loss curves, resume on another GPU count, small and release sizes
# (the numbers in docs/BENCHMARKS.md). Keep NVLink multicast off on shared hosts.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python scripts/make_dataset.py --out /tmp/d --num-objects 256 --views 12 --resolution 128 --format chunks --seed 0 --device cuda --workers 16 2>&1 | tail -1
python scripts/extract_latents.py --ckpt checkpoints/procedural/vae --data /tmp/d --out /tmp/lat --device cuda --batch-size 32 --workers 8 2>&1 | tail -1
P=scripts/multi_gpu_check.py
one() { CUDA_VISIBLE_DEVICES=0 torchrun --standalone --nproc_per_node 1 "$@" 2>&1 | grep '^{"stage' ; }
two() { torchrun --standalone --nproc_per_node 2 "$@" 2>&1 | grep -E '^\{"stage|Error' ; }
one $P vae /tmp/d /tmp/v1 120 16 small
two $P vae /tmp/d /tmp/v2 120 8 small
one $P vae /tmp/d /tmp/v2 150 8 small resume
one $P dit /tmp/lat /tmp/t1 400 64 t23d-small
two $P dit /tmp/lat /tmp/t2 400 32 t23d-small
two $P dit /tmp/lat /tmp/t2 450 32 t23d-small resume
one $P vae /tmp/d /tmp/V1 30 1 objaverse
two $P vae /tmp/d /tmp/V2 30 1 objaverse
one $P dit /tmp/lat /tmp/T1 60 16 t23d
two $P dit /tmp/lat /tmp/T2 60 8 t23d
