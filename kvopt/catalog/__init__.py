"""Catalog loaders: LLM cards, GPU cards, prices, engine profiles (data in models/)."""
