"""HTTP routers, one per concern. They validate and translate; they never touch tensors."""
