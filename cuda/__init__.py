"""CUDA kernel sources of gpuconv (installed as ``gpuconv.cuda``; no Python code)."""
