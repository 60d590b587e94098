"""Training a pack: packs and run ids, the packed trainer, its steps, scratch tensors, matmul precision."""
