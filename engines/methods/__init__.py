"""Quantization methods: one typed, versioned config per method, registered by name."""
