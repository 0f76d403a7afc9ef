"""Glyph data: Unihan definitions (`unihan`), font rendering (`render`), the 🤗 dataset (`dataset`, built by
`commands`: ``glyffuser build-dataset``), its images decoded once (`images`) and cached text embeddings
(`embeddings`)."""
