"""The article's pictures and the dataset map: `layout` draws captioned grids for all of them; `diffusion`
(sampling grids), `animation` (denoising GIF), `noising` (forward process) and `dataset_map` make them;
`commands` is their `glyffuser` subcommands."""
