"""Judging samples: the radical classifier, the typeface classifier and the glyph metrics."""
