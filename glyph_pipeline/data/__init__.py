"""Glyph data: Unihan definitions, font rendering, the 🤗 dataset and cached text embeddings."""
