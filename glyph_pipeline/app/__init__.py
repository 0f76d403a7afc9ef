"""The Gradio app: `core` checks requests and makes the glyphs (no Gradio needed), `nearest` finds the
closest training glyphs, `ui` is the page and the `glyffuser app` command."""
