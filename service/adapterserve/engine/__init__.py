"""From tokens to logits: backbone, tokenizer, batcher and post-processing."""
