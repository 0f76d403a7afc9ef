"""Sharing: the Hub repo and token (`repo`), pushing with the glyph model card (`push`), and the shipped model with
the loader every command uses (`pretrained`)."""
